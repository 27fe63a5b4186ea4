locals {
  dataform_repository_id = "projects/${var.project_id}/locations/${local.dataform_region}/repositories/${var.dataform_repository}"
}

# Creating workflow invocations and reading compilation results of this one repository.
resource "google_dataform_repository_iam_member" "dataform_invokes" {
  project    = var.project_id
  region     = local.dataform_region
  repository = var.dataform_repository
  role       = "roles/dataform.editor"
  member     = local.members.dataform
}

# Strict act-as, which Dataform enforces for every repository: an invocation runs as the service
# account it names, and its creator must be allowed to act as that account.
resource "google_service_account_iam_member" "dataform_acts_as_runner" {
  service_account_id = "projects/${var.project_id}/serviceAccounts/${var.dataform_service_account}"
  role               = "roles/iam.serviceAccountUser"
  member             = local.members.dataform
}
