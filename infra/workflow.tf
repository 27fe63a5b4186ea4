# The chain: Eventarc starts one execution of workflows/sigma.yaml per finalized object in the
# trigger bucket; the workflow filters, then calls the three services with OIDC tokens.
resource "google_workflows_workflow" "sigma" {
  name                = var.name_prefix
  deletion_protection = var.deletion_protection
  project             = var.project_id
  region              = var.region
  description         = "sigma: decrypt, launch the Dataflow pipeline, run the dependent Dataform actions, publish the outcome."
  service_account     = google_service_account.sa["workflow"].id
  call_log_level      = "LOG_ERRORS_ONLY"
  crypto_key_name     = var.kms_key_name
  source_contents     = file("${path.module}/../workflows/sigma.yaml")

  user_env_vars = {
    DECRYPT_URL                 = google_cloud_run_v2_service.service["decrypt"].uri
    DATAFLOW_URL                = google_cloud_run_v2_service.service["dataflow"].uri
    DATAFORM_URL                = google_cloud_run_v2_service.service["dataform"].uri
    EVENTS_TOPIC                = local.events_topic
    OBJECT_PREFIX               = var.object_prefix
    POLL_INTERVAL_SECONDS       = tostring(var.poll_interval_seconds)
    POLL_DEADLINE_SECONDS       = tostring(var.poll_deadline_seconds)
    BACKPRESSURE_WINDOW_SECONDS = tostring(var.backpressure_window_seconds)
  }

  depends_on = [
    google_project_service.enabled,
    google_cloud_run_v2_service_iam_member.workflow_invokes,
    google_pubsub_topic_iam_member.publishers,
    google_kms_crypto_key_iam_member.service_agents,
  ]
}

# A first apply would create the Eventarc trigger seconds after the APIs are enabled and the
# grants it relies on are made: the Eventarc service agent (created, and granted its role by
# Google, when the API is first used) and pubsub.publisher for the Cloud Storage agent. IAM takes
# a minute or two to propagate, and until then the trigger is refused ("Permission denied while
# using the Eventarc Service Agent ... it may take a few minutes"). So the agent is created as
# soon as the API is on, and the trigger waits two minutes after it and the grants, on the first
# apply only.
resource "google_project_service_identity" "eventarc" {
  # Beta-only in the google provider.
  provider = google-beta

  project = var.project_id
  service = "eventarc.googleapis.com"

  depends_on = [google_project_service.enabled]
}

resource "time_sleep" "eventarc_grants_propagate" {
  create_duration = "120s"

  depends_on = [google_project_service_identity.eventarc, google_project_iam_member.grants]
}

resource "google_eventarc_trigger" "upload" {
  name            = "${var.name_prefix}-upload"
  project         = var.project_id
  location        = var.region
  service_account = google_service_account.sa["eventarc"].email

  matching_criteria {
    attribute = "type"
    value     = "google.cloud.storage.object.v1.finalized"
  }

  matching_criteria {
    attribute = "bucket"
    value     = google_storage_bucket.data["trigger"].name
  }

  destination {
    workflow = google_workflows_workflow.sigma.id
  }

  depends_on = [google_project_iam_member.grants, time_sleep.eventarc_grants_propagate]
}
