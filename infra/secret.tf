# The Fernet key(s) sigma-decrypt verifies and decrypts with. Terraform creates the secret only:
# key material never enters Terraform state. Add it with
#   gcloud secrets versions add <name_prefix>-fernet-keys --data-file=keys.txt
resource "google_secret_manager_secret" "fernet_keys" {
  secret_id = "${var.name_prefix}-fernet-keys"
  project   = var.project_id

  replication {
    auto {}
  }

  depends_on = [google_project_service.enabled]
}

resource "google_secret_manager_secret_iam_member" "decrypt_reads_keys" {
  project   = var.project_id
  secret_id = google_secret_manager_secret.fernet_keys.secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = local.members.decrypt
}
