# Operating the chain (issue 12 §5): the dead-letter list of failed chains, run history in SQL,
# and an alert on every failed workflow execution.
#
# Eventarc does not retry a failed execution, so without these a failed file is silently stuck:
#   - the `failed` subscription keeps every sigma.chain.failed event for 7 days, whoever else
#     reads the topic (the list `sigma runs --failed` / `sigma replay --failed` work from);
#   - the `history` BigQuery subscription writes every pipeline event to <ops dataset>.events,
#     one row per event, in the README's "Pipeline events" shape (infra/README.md, "Run history");
#   - the `executions_failed` alert fires on every FAILED execution, also the ones that fail
#     before the chain starts (invalid settings, a malformed replay argument) and so publish no
#     sigma.chain.failed event for the `chain_failed` alert (monitoring.tf) to see.
locals {
  # BigQuery dataset ids take letters, digits and underscores only.
  ops_dataset = "${replace(var.name_prefix, "-", "_")}_ops"
  # The Pub/Sub service agent writes the BigQuery subscription's rows.
  pubsub_agent = google_project_service_identity.pubsub.member
}

resource "google_project_service_identity" "pubsub" {
  # Beta-only in the google provider. Created here so the grant below never names an agent that
  # Pub/Sub has not created yet (kms.tf does the same for CMEK).
  provider = google-beta

  project = var.project_id
  service = "pubsub.googleapis.com"

  depends_on = [google_project_service.enabled]
}

# --- the dead-letter list ------------------------------------------------------------------------

resource "google_pubsub_subscription" "failed" {
  name    = "${var.name_prefix}-chain-failed"
  project = var.project_id
  topic   = google_pubsub_topic.events.id

  filter = "attributes.event_type = \"sigma.chain.failed\""

  # 7 days, acknowledged or not: a seek to a time brings back failures already read.
  message_retention_duration = "604800s"
  retain_acked_messages      = true
  ack_deadline_seconds       = 60

  # Never deleted for lack of readers: failures may go unread for weeks.
  expiration_policy {
    ttl = ""
  }
}

# --- run history in SQL --------------------------------------------------------------------------

resource "google_bigquery_dataset" "ops" {
  project     = var.project_id
  dataset_id  = local.ops_dataset
  location    = var.region
  description = "sigma operations: every pipeline event (table events), written by a Pub/Sub BigQuery subscription."

  delete_contents_on_destroy = !var.deletion_protection

  dynamic "default_encryption_configuration" {
    for_each = local.cmek
    content {
      kms_key_name = default_encryption_configuration.value
    }
  }

  depends_on = [google_project_service.enabled, google_kms_crypto_key_iam_member.bigquery_agent]
}

resource "google_bigquery_table" "events" {
  project     = var.project_id
  dataset_id  = google_bigquery_dataset.ops.dataset_id
  table_id    = "events"
  description = "One row per sigma pipeline event (README, \"Pipeline events\"), written by the ${var.name_prefix}-events-to-bigquery subscription."

  deletion_protection = var.deletion_protection

  time_partitioning {
    type          = "DAY"
    field         = "publish_time"
    expiration_ms = var.events_history_days * 24 * 60 * 60 * 1000
  }
  clustering = ["event_type", "entity"]

  dynamic "encryption_configuration" {
    for_each = local.cmek
    content {
      kms_key_name = encryption_configuration.value
    }
  }

  # The event's fields (use_table_schema), then the columns write_metadata fills. An event
  # field the table lacks is dropped (drop_unknown_fields), so a new field never blocks the
  # subscription; add its column here to keep it.
  schema = jsonencode([
    { name = "event_type", type = "STRING", mode = "REQUIRED", description = "sigma.<service>.<outcome>, e.g. sigma.chain.failed" },
    { name = "service", type = "STRING", mode = "NULLABLE", description = "sigma-decrypt, sigma-dataflow, sigma-dataform or sigma-workflow" },
    { name = "object", type = "STRING", mode = "NULLABLE", description = "gs:// URI of the object the event is about" },
    { name = "generation", type = "STRING", mode = "NULLABLE", description = "generation of the object, a decimal string" },
    { name = "entity", type = "STRING", mode = "NULLABLE", description = "registry entity, when known" },
    { name = "time", type = "TIMESTAMP", mode = "NULLABLE", description = "when the event happened (RFC 3339 UTC in the message)" },
    { name = "detail", type = "JSON", mode = "NULLABLE", description = "event-type-specific detail; for sigma.chain.failed: step, error {code, message, ...}, object, event_id, execution_id" },
    { name = "subscription_name", type = "STRING", mode = "NULLABLE", description = "Pub/Sub metadata: the writing subscription" },
    { name = "message_id", type = "STRING", mode = "NULLABLE", description = "Pub/Sub metadata: message id (unique per published message)" },
    { name = "publish_time", type = "TIMESTAMP", mode = "NULLABLE", description = "Pub/Sub metadata: publish time (the partitioning column)" },
    { name = "attributes", type = "JSON", mode = "NULLABLE", description = "Pub/Sub metadata: the message attributes (event_type, object, generation, entity)" },
  ])
}

resource "google_bigquery_dataset_iam_member" "pubsub_writes_history" {
  project    = var.project_id
  dataset_id = google_bigquery_dataset.ops.dataset_id
  role       = "roles/bigquery.dataEditor"
  member     = local.pubsub_agent
}

resource "google_pubsub_subscription" "history" {
  name    = "${var.name_prefix}-events-to-bigquery"
  project = var.project_id
  topic   = google_pubsub_topic.events.id

  bigquery_config {
    table               = "${var.project_id}.${google_bigquery_dataset.ops.dataset_id}.${google_bigquery_table.events.table_id}"
    use_table_schema    = true
    drop_unknown_fields = true
    write_metadata      = true
  }

  expiration_policy {
    ttl = ""
  }

  depends_on = [google_bigquery_dataset_iam_member.pubsub_writes_history]
}

# With a CMEK key, BigQuery's own service agent encrypts the dataset's tables with it.
data "google_bigquery_default_service_account" "bigquery" {
  project = var.project_id
}

resource "google_kms_crypto_key_iam_member" "bigquery_agent" {
  for_each = toset(local.cmek)

  crypto_key_id = each.value
  role          = "roles/cloudkms.cryptoKeyEncrypterDecrypter"
  member        = data.google_bigquery_default_service_account.bigquery.member
}

# --- alert on failed executions ------------------------------------------------------------------

resource "google_monitoring_alert_policy" "executions_failed" {
  project               = var.project_id
  display_name          = "${var.name_prefix}: a workflow execution failed"
  combiner              = "OR"
  severity              = "ERROR"
  notification_channels = var.notification_channels

  conditions {
    display_name = "workflows.googleapis.com/finished_execution_count, status FAILED"

    condition_threshold {
      filter = join(" AND ", [
        "resource.type = \"workflows.googleapis.com/Workflow\"",
        "resource.label.workflow_id = \"${google_workflows_workflow.sigma.name}\"",
        "metric.type = \"workflows.googleapis.com/finished_execution_count\"",
        "metric.label.status = \"FAILED\"",
      ])
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"

      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_SUM"
        cross_series_reducer = "REDUCE_SUM"
      }

      trigger {
        count = 1
      }
    }
  }

  alert_strategy {
    auto_close = "86400s"
  }

  documentation {
    mime_type = "text/markdown"
    subject   = "sigma: a workflow execution failed"
    content   = <<-EOT
      An execution of the ${google_workflows_workflow.sigma.name} workflow failed. A failed chain
      also raises "a chain failed" with its entity, step and error code; an execution that
      failed before the chain started (invalid settings, a malformed replay argument) raises
      only this one. List them with `sigma runs --failed --since 24h` (or
      `gcloud workflows executions list ${google_workflows_workflow.sigma.name} --location ${var.region} --filter state=FAILED`),
      fix the cause, and re-run them with `sigma replay --failed --since 24h`. The failure
      events stay 7 days in the ${google_pubsub_subscription.failed.name} subscription.
    EOT
  }
}
