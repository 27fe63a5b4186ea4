# With a CMEK key, the Google service agents that encrypt on sigma's behalf must be able to use it.
#
# Pub/Sub, Artifact Registry and Workflows create their service agents lazily, on first use, so
# in a fresh project a grant to service-<number>@gcp-sa-<api>.iam.gserviceaccount.com fails: the
# principal does not exist yet. They are created here, once their APIs are enabled, and the key
# is granted to the agent each call returns. The Cloud Storage agent is created by the data
# source that reads it (main.tf).
locals {
  cmek_services = var.kms_key_name == null ? toset([]) : toset([
    "artifactregistry.googleapis.com",
    "pubsub.googleapis.com",
    "workflows.googleapis.com",
  ])

  cmek_service_agents = var.kms_key_name == null ? {} : merge(
    { "storage.googleapis.com" = "serviceAccount:${data.google_storage_project_service_account.gcs.email_address}" },
    { for service, identity in google_project_service_identity.cmek : service => identity.member },
  )
}

resource "google_project_service_identity" "cmek" {
  # Beta-only in the google provider.
  provider = google-beta
  for_each = local.cmek_services

  project = var.project_id
  service = each.value

  depends_on = [google_project_service.enabled]
}

resource "google_kms_crypto_key_iam_member" "service_agents" {
  for_each = local.cmek_service_agents

  crypto_key_id = var.kms_key_name
  role          = "roles/cloudkms.cryptoKeyEncrypterDecrypter"
  member        = each.value
}
