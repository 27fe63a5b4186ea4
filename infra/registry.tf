resource "google_artifact_registry_repository" "images" {
  project       = var.project_id
  location      = var.region
  repository_id = var.name_prefix
  format        = "DOCKER"
  description   = "sigma service images (one image, every service binary and the sigma CLI)."
  kms_key_name  = var.kms_key_name

  # A tag always names the same image, so a deployed revision is reproducible.
  docker_config {
    immutable_tags = true
  }

  depends_on = [google_project_service.enabled, google_kms_crypto_key_iam_member.service_agents]
}

# The image build pushes new tags (infra/cloudbuild.yaml); tags are immutable, so it cannot
# replace a deployed image.
resource "google_artifact_registry_repository_iam_member" "build_pushes" {
  project    = var.project_id
  location   = google_artifact_registry_repository.images.location
  repository = google_artifact_registry_repository.images.name
  role       = "roles/artifactregistry.writer"
  member     = local.members.build
}

# The Dataflow workers pull Flex Template launcher images from this repository.
resource "google_artifact_registry_repository_iam_member" "dataflow_worker_pulls" {
  project    = var.project_id
  location   = google_artifact_registry_repository.images.location
  repository = google_artifact_registry_repository.images.name
  role       = "roles/artifactregistry.reader"
  member     = local.members.dataflow_worker
}
