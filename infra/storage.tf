# trigger:        encrypted uploads from on-premise, deleted after trigger_retention_days.
# output:         decrypted gzip files the Dataflow pipelines read.
# config:         the pipeline registry, and the job configs and launch records sigma-dataflow
#                 writes.
# dataform-state: the idempotency records and the schedule sigma-dataform keeps under dataform/. A bucket of its
#                 own, so that sigma-dataform cannot write the registry, which decides the Flex
#                 Template that runs as the Dataflow worker account.
locals {
  data_buckets = {
    trigger          = { expire_after_days = var.trigger_retention_days }
    output           = { expire_after_days = null }
    config           = { expire_after_days = null }
    "dataform-state" = { expire_after_days = null }
  }
}

resource "google_storage_bucket" "data" {
  #checkov:skip=CKV_GCP_62:Access is audited with Cloud Audit Logs (Data Access logs for storage.googleapis.com), which supersede legacy usage logs; enabling them is an organisation-level logging decision.
  for_each = local.data_buckets

  name                        = "${local.bucket_prefix}-${each.key}"
  project                     = var.project_id
  location                    = var.region
  storage_class               = "STANDARD"
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = var.force_destroy_buckets

  versioning {
    enabled = true
  }

  dynamic "encryption" {
    for_each = local.cmek
    content {
      default_kms_key_name = encryption.value
    }
  }

  dynamic "lifecycle_rule" {
    for_each = each.value.expire_after_days == null ? [] : [each.value.expire_after_days]
    content {
      condition {
        age = lifecycle_rule.value
      }
      action {
        type = "Delete"
      }
    }
  }

  lifecycle_rule {
    condition {
      days_since_noncurrent_time = var.noncurrent_retention_days
      with_state                 = "ARCHIVED"
    }
    action {
      type = "Delete"
    }
  }

  depends_on = [google_project_service.enabled, google_kms_crypto_key_iam_member.service_agents]
}

# Scratch space, every object deleted after a week:
#   dataflow-temp: staging and temporary files of the Dataflow jobs, written and removed by the
#                  workers themselves;
#   build:         the source archives gcloud builds submit uploads for the image build.
resource "google_storage_bucket" "scratch" {
  #checkov:skip=CKV_GCP_62:Access is audited with Cloud Audit Logs (Data Access logs for storage.googleapis.com), which supersede legacy usage logs; enabling them is an organisation-level logging decision.
  #checkov:skip=CKV_GCP_78:Scratch space (Dataflow temporary files, build source archives): old versions have no value and every object expires after a week.
  for_each = toset(["dataflow-temp", "build"])

  name                        = "${local.bucket_prefix}-${each.key}"
  project                     = var.project_id
  location                    = var.region
  storage_class               = "STANDARD"
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = true

  dynamic "encryption" {
    for_each = local.cmek
    content {
      default_kms_key_name = encryption.value
    }
  }

  lifecycle_rule {
    condition {
      age = 7
    }
    action {
      type = "Delete"
    }
  }

  depends_on = [google_project_service.enabled, google_kms_crypto_key_iam_member.service_agents]
}

moved {
  from = google_storage_bucket.dataflow_temp
  to   = google_storage_bucket.scratch["dataflow-temp"]
}
