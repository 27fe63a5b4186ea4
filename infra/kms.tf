# With a CMEK key, the Google service agents that encrypt on sigma's behalf must be able to use it.
locals {
  cmek_service_agents = var.kms_key_name == null ? {} : {
    storage          = "serviceAccount:${data.google_storage_project_service_account.gcs.email_address}"
    pubsub           = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-pubsub.iam.gserviceaccount.com"
    artifactregistry = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-artifactregistry.iam.gserviceaccount.com"
    workflows        = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-workflows.iam.gserviceaccount.com"
  }
}

resource "google_kms_crypto_key_iam_member" "service_agents" {
  for_each = local.cmek_service_agents

  crypto_key_id = var.kms_key_name
  role          = "roles/cloudkms.cryptoKeyEncrypterDecrypter"
  member        = each.value
}
