data "google_project" "this" {
  project_id = var.project_id
}

# The Cloud Storage service agent publishes the object notifications Eventarc listens to, and
# encrypts objects when a CMEK key is set.
data "google_storage_project_service_account" "gcs" {
  project = var.project_id
}

locals {
  bucket_prefix   = coalesce(var.bucket_prefix, "${var.project_id}-${var.name_prefix}")
  dataform_region = coalesce(var.dataform_region, var.region)
  repository_url  = "${var.region}-docker.pkg.dev/${var.project_id}/${google_artifact_registry_repository.images.repository_id}"
  image           = var.image != null ? var.image : "${local.repository_url}/sigma:${coalesce(var.image_tag, "unset")}"
  events_topic    = google_pubsub_topic.events.id
  pipelines_uri   = "gs://${google_storage_bucket.data["config"].name}/pipelines.yaml"
  cmek            = var.kms_key_name == null ? [] : [var.kms_key_name]
}

resource "google_project_service" "enabled" {
  for_each = toset([
    "artifactregistry.googleapis.com",
    "bigquery.googleapis.com",
    "cloudbuild.googleapis.com",
    "dataflow.googleapis.com",
    "dataform.googleapis.com",
    "eventarc.googleapis.com",
    "iam.googleapis.com",
    "logging.googleapis.com",
    "pubsub.googleapis.com",
    "run.googleapis.com",
    "secretmanager.googleapis.com",
    "storage.googleapis.com",
    "workflowexecutions.googleapis.com",
    "workflows.googleapis.com",
  ])

  project            = var.project_id
  service            = each.value
  disable_on_destroy = false
}
