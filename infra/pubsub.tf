# Pipeline events: one message per outcome of each service, and the chain's final outcome from
# the workflow. Attributes (event type, entity, object, generation) allow subscription filters.
resource "google_pubsub_topic" "events" {
  name         = "${var.name_prefix}-events"
  project      = var.project_id
  kms_key_name = var.kms_key_name

  message_retention_duration = "604800s"

  depends_on = [google_project_service.enabled, google_kms_crypto_key_iam_member.service_agents]
}

resource "google_pubsub_topic_iam_member" "publishers" {
  for_each = {
    decrypt  = local.members.decrypt
    dataflow = local.members.dataflow
    dataform = local.members.dataform
    workflow = local.members.workflow
  }

  project = var.project_id
  topic   = google_pubsub_topic.events.name
  role    = "roles/pubsub.publisher"
  member  = each.value
}
