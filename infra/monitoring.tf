# Monitoring as code: log-based metrics, the sigma dashboard and the alert policies.
#
# Sources (see infra/README.md, "Monitoring"):
#   - the workflow logs every pipeline event it publishes (sys.log, json = the event: the
#     README's "Pipeline events" shape), so the chain's outcome, entity, failed step, error code
#     and step durations are fields of jsonPayload (detail.step, detail.error.code,
#     detail.seconds.<step>);
#   - sigma-decrypt logs "token verified" with plaintext_bytes (tracing-stackdriver writes it
#     as jsonPayload.plaintextBytes) for every decrypted file;
#   - the workflow logs "waiting on backpressure" (NOTICE, with step, path, code, waited_seconds and
#     next_delay_seconds) for every wait of a service call that answered 429 (call_service).
# tests/static/check_infra.sh checks that the code still logs the fields read here.
locals {
  # Log-based metric names are project-wide: prefixed so two deployments do not share them.
  metric_prefix = replace(var.name_prefix, "-", "_")

  workflow_logs = join(" AND ", [
    "resource.type=\"workflows.googleapis.com/Workflow\"",
    "resource.labels.workflow_id=\"${google_workflows_workflow.sigma.name}\"",
    "logName=\"projects/${var.project_id}/logs/Workflows\"",
  ])
  chain_events = "${local.workflow_logs} AND jsonPayload.event_type=(\"sigma.chain.succeeded\" OR \"sigma.chain.failed\")"

  # The durations each successful chain reports (detail.seconds of sigma.chain.succeeded).
  chain_steps = {
    decrypt             = "decrypting the upload (sigma-decrypt)"
    launch              = "launching the Dataflow job (sigma-dataflow)"
    dataflow_job        = "the Dataflow job, launch to terminal state"
    dataform_invoke     = "creating the Dataform invocation (sigma-dataform)"
    dataform_invocation = "the Dataform invocation, creation to terminal state"
    total               = "the whole chain"
  }

  metric_types = {
    chain_outcomes    = "logging.googleapis.com/user/${google_logging_metric.chain_outcomes.name}"
    decrypted_bytes   = "logging.googleapis.com/user/${google_logging_metric.decrypted_bytes.name}"
    backpressure      = "logging.googleapis.com/user/${google_logging_metric.backpressure_waits.name}"
    step_dataflow_job = "logging.googleapis.com/user/${google_logging_metric.chain_step_seconds["dataflow_job"].name}"
    step_dataform     = "logging.googleapis.com/user/${google_logging_metric.chain_step_seconds["dataform_invocation"].name}"
  }
  # The same metrics under Cloud Monitoring's PromQL names.
  promql_chain_outcomes = "logging_googleapis_com:user_${google_logging_metric.chain_outcomes.name}"
}

resource "google_logging_metric" "chain_outcomes" {
  project     = var.project_id
  name        = "${local.metric_prefix}_chain_outcomes"
  description = "sigma: one point per finished chain (sigma.chain.succeeded or sigma.chain.failed), by outcome, entity, failed step and error code."
  filter      = local.chain_events

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "INT64"
    unit         = "1"
    display_name = "sigma chain outcomes"

    labels {
      key         = "outcome"
      description = "succeeded or failed"
    }
    labels {
      key         = "entity"
      description = "registry entity of the file (empty when the chain failed before the launcher named it)"
    }
    labels {
      key         = "step"
      description = "failed step: decrypt, launch, dataflow_job, dataform_invoke, dataform_invocation or publish (empty on success)"
    }
    labels {
      key         = "error_code"
      description = "error code of the failed step (invalid_token, unknown_entity, dataflow_job_failed, poll_deadline_exceeded, ...; empty on success)"
    }
  }

  label_extractors = {
    outcome    = "REGEXP_EXTRACT(jsonPayload.event_type, \"chain.(succeeded|failed)\")"
    entity     = "EXTRACT(jsonPayload.entity)"
    step       = "EXTRACT(jsonPayload.detail.step)"
    error_code = "EXTRACT(jsonPayload.detail.error.code)"
  }
}

resource "google_logging_metric" "chain_step_seconds" {
  for_each = local.chain_steps

  project     = var.project_id
  name        = "${local.metric_prefix}_chain_seconds_${each.key}"
  description = "sigma: seconds spent in ${each.value}, per successful chain, by entity."
  filter      = "${local.workflow_logs} AND jsonPayload.event_type=\"sigma.chain.succeeded\" AND jsonPayload.detail.seconds.${each.key}:*"

  value_extractor = "EXTRACT(jsonPayload.detail.seconds.${each.key})"

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "DISTRIBUTION"
    unit         = "s"
    display_name = "sigma chain seconds: ${each.key}"

    labels {
      key         = "entity"
      description = "registry entity of the file"
    }
  }

  label_extractors = {
    entity = "EXTRACT(jsonPayload.entity)"
  }

  # 0.1 s to about 300 days, each bucket 1.5 times the previous.
  bucket_options {
    exponential_buckets {
      num_finite_buckets = 48
      growth_factor      = 1.5
      scale              = 0.1
    }
  }
}

resource "google_logging_metric" "decrypted_bytes" {
  project     = var.project_id
  name        = "${local.metric_prefix}_decrypted_bytes"
  description = "sigma: plaintext bytes of every file sigma-decrypt decrypted (its \"token verified\" log line)."
  filter = join(" AND ", [
    "resource.type=\"cloud_run_revision\"",
    "resource.labels.service_name=\"${google_cloud_run_v2_service.service["decrypt"].name}\"",
    "jsonPayload.message=\"token verified\"",
  ])

  value_extractor = "EXTRACT(jsonPayload.plaintextBytes)"

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "DISTRIBUTION"
    unit         = "By"
    display_name = "sigma decrypted bytes"
  }

  # 1 KiB to 1 PiB, each bucket 4 times the previous.
  bucket_options {
    exponential_buckets {
      num_finite_buckets = 20
      growth_factor      = 4
      scale              = 1024
    }
  }
}

resource "google_logging_metric" "backpressure_waits" {
  project     = var.project_id
  name        = "${local.metric_prefix}_backpressure_waits"
  description = "sigma: one point per wait of an execution on a quota (Dataflow concurrent jobs, Dataform or Cloud Run 429), by step."
  filter      = "${local.workflow_logs} AND jsonPayload.message=\"waiting on backpressure\""

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "INT64"
    unit         = "1"
    display_name = "sigma backpressure waits"

    labels {
      key         = "step"
      description = "the step that waits: launch, dataform_invoke, ..."
    }
  }

  label_extractors = {
    step = "EXTRACT(jsonPayload.step)"
  }
}

resource "google_monitoring_dashboard" "sigma" {
  project = var.project_id
  dashboard_json = templatefile("${path.module}/dashboard.json.tftpl", {
    title        = "${var.name_prefix}: files, failures, throughput, durations"
    metric_types = local.metric_types
    promql       = { decrypted_bytes_sum = "logging_googleapis_com:user_${google_logging_metric.decrypted_bytes.name}_sum" }
  })
}

resource "google_monitoring_alert_policy" "chain_failed" {
  project               = var.project_id
  display_name          = "${var.name_prefix}: a chain failed"
  combiner              = "OR"
  severity              = "ERROR"
  notification_channels = var.notification_channels

  conditions {
    display_name = "sigma.chain.failed, by entity, step and error code"

    condition_threshold {
      filter          = "resource.type = \"workflows.googleapis.com/Workflow\" AND metric.type = \"${local.metric_types.chain_outcomes}\" AND metric.label.outcome = \"failed\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"

      aggregations {
        alignment_period     = "60s"
        per_series_aligner   = "ALIGN_SUM"
        cross_series_reducer = "REDUCE_SUM"
        group_by_fields      = ["metric.label.entity", "metric.label.step", "metric.label.error_code"]
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
    subject   = "sigma: a chain failed (entity $${metric.label.entity}, step $${metric.label.step}, $${metric.label.error_code})"
    content   = <<-EOT
      A sigma chain failed: the file was not loaded, or its Dataform actions did not run.
      The incident names the entity, the failed step and the error code (README, "The workflow":
      Failures). Find the execution with
      `gcloud workflows executions list ${var.name_prefix} --location ${var.region} --filter state=FAILED`,
      read its error with `gcloud workflows executions describe`, fix the cause and start it
      again. Eventarc does not retry a failed execution.
    EOT
  }
}

# Freshness: raised when an entity had no sigma.chain.succeeded within its window. A PromQL
# absence condition, because metric-absence conditions cannot look back more than 23.5 hours
# and daily files need 24 h or more. It also fires for an entity that never succeeded since the
# deployment (there is no fresh data for it either).
resource "google_monitoring_alert_policy" "freshness" {
  for_each = var.freshness

  project               = var.project_id
  display_name          = "${var.name_prefix}: ${each.key} not loaded for ${each.value}"
  combiner              = "OR"
  severity              = "WARNING"
  notification_channels = var.notification_channels

  conditions {
    display_name = "no sigma.chain.succeeded for ${each.key} in ${each.value}"

    condition_prometheus_query_language {
      query               = "absent_over_time(${local.promql_chain_outcomes}{monitored_resource=\"workflows.googleapis.com/Workflow\",outcome=\"succeeded\",entity=\"${each.key}\"}[${each.value}])"
      duration            = "0s"
      evaluation_interval = "300s"
    }
  }

  alert_strategy {
    auto_close = "604800s"
  }

  documentation {
    mime_type = "text/markdown"
    subject   = "sigma: no fresh ${each.key} for ${each.value}"
    content   = <<-EOT
      No file of entity `${each.key}` went through the whole chain in the last ${each.value}
      (its `expected_every` in the pipeline registry). Either the on-premise job did not upload
      it (nothing under the trigger bucket for the entity), or its chains failed (see the
      "${var.name_prefix}: a chain failed" incidents and the dashboard's failures by step).
    EOT
  }
}
