# The three services run the same image; the Cloud Run command picks the binary.
#
# Sizing: sigma-decrypt streams objects of 1 GiB and more through a bounded buffer (its resident
# memory stays under 64 MiB per request by design), so memory is headroom, not file size. A
# decryption keeps about two threads busy (download + decrypt/upload), hence 2 vCPUs and 4
# concurrent requests. Its request timeout (decrypt_timeout_seconds) covers multi-GiB objects at
# Cloud Storage streaming rates. sigma-dataflow and sigma-dataform only make short control-plane
# calls: the workflow polls them, so they never hold a request open for long.
#
# Start-up: each service loads its inputs before it answers /healthz, and the startup probe
# allows startup_seconds for it. sigma-dataform compiles the Dataform repository first, which
# takes minutes on a large project (30-50 s at about 6,000 tables, slower since core 3.0.69): it
# gets the 240 s Cloud Run allows. The others load a key list or a registry, which is quick.
#
# CPU is always allocated (cpu_idle = false, instance-based billing) for all three: each one
# publishes pipeline events in the background, after its response (README, "Pipeline events").
# With cpu_idle = true, Cloud Run throttles the CPU as soon as the response is sent, so an event
# would wait for the instance's next request, and be lost if the instance is shut down first.
# Keeping CPU on costs an idle instance's CPU until Cloud Run scales it in (min instances stay 0).
locals {
  services = {
    decrypt = {
      cpu         = "2"
      memory      = "1Gi"
      concurrency = 4
      timeout     = "${var.decrypt_timeout_seconds}s"
      # Startup seconds: reading the keys from Secret Manager.
      startup_seconds = 30
      env = merge(
        {
          OUTPUT_BUCKET      = google_storage_bucket.data["output"].name
          TRIGGER_BUCKETS    = google_storage_bucket.data["trigger"].name
          FERNET_KEYS_SECRET = "${google_secret_manager_secret.fernet_keys.id}/versions/latest"
          MAX_OBJECT_BYTES   = tostring(var.max_object_bytes)
          VERIFY_GZIP        = tostring(var.verify_gzip)
        },
        var.fernet_ttl_seconds == null ? {} : { FERNET_TTL_SECONDS = tostring(var.fernet_ttl_seconds) },
      )
    }
    dataflow = {
      cpu         = "1"
      memory      = "512Mi"
      concurrency = 20
      timeout     = "300s"
      # Reading and checking the pipeline registry.
      startup_seconds = 30
      env = {
        PIPELINES       = local.pipelines_uri
        CONFIG_BUCKET   = google_storage_bucket.data["config"].name
        DATAFLOW_REGION = var.region
      }
    }
    dataform = {
      cpu         = "1"
      memory      = "512Mi"
      concurrency = 20
      timeout     = "300s"
      # Compiling the repository: the most Cloud Run allows.
      startup_seconds = 240
      env = {
        DATAFORM_REPOSITORY      = local.dataform_repository_id
        DATAFORM_RELEASE_CONFIG  = var.dataform_release_config
        DATAFORM_SERVICE_ACCOUNT = var.dataform_service_account
        DATAFORM_STATE_BUCKET    = google_storage_bucket.data["dataform-state"].name
        DATAFORM_SETTLE_SECONDS  = tostring(var.dataform_settle_seconds)
      }
    }
  }

  # Every service reports to the events topic and correlates its logs with Cloud Trace (which
  # needs the project id); sigma-dataflow also launches its jobs in that project.
  common_env = {
    EVENTS_TOPIC         = local.events_topic
    GOOGLE_CLOUD_PROJECT = var.project_id
  }
}

resource "google_cloud_run_v2_service" "service" {
  for_each = local.services

  name                = "${var.name_prefix}-${each.key}"
  project             = var.project_id
  location            = var.region
  deletion_protection = var.deletion_protection
  # Only the workflow calls the services, from inside Google Cloud.
  ingress = "INGRESS_TRAFFIC_INTERNAL_ONLY"

  template {
    service_account                  = google_service_account.sa[each.key].email
    timeout                          = each.value.timeout
    max_instance_request_concurrency = each.value.concurrency
    execution_environment            = "EXECUTION_ENVIRONMENT_GEN2"

    scaling {
      min_instance_count = 0
      max_instance_count = var.max_instances
    }

    containers {
      image   = local.image
      command = ["/usr/local/bin/sigma-${each.key}"]

      ports {
        container_port = 8080
      }

      resources {
        limits = {
          cpu    = each.value.cpu
          memory = each.value.memory
        }
        # Always on: events are published after the response (see the top of this file).
        cpu_idle          = false
        startup_cpu_boost = true
      }

      dynamic "env" {
        for_each = merge(local.common_env, each.value.env)
        content {
          name  = env.key
          value = env.value
        }
      }

      startup_probe {
        http_get {
          path = "/healthz"
        }
        timeout_seconds   = 2
        period_seconds    = 2
        failure_threshold = each.value.startup_seconds / 2
      }

      liveness_probe {
        http_get {
          path = "/healthz"
        }
        period_seconds = 30
      }
    }
  }

  lifecycle {
    precondition {
      condition     = var.image != null || var.image_tag != null
      error_message = "Set image_tag (a tag pushed to the Artifact Registry repository) or image (a full image reference)."
    }
  }

  # Each service loads its inputs (keys, registry, Dataform graph) before serving: its grants
  # must exist before its first revision starts.
  depends_on = [
    google_project_service.enabled,
    google_secret_manager_secret_iam_member.decrypt_reads_keys,
    google_storage_bucket_iam_member.grants,
    google_storage_bucket_iam_member.dataflow_writes_configs,
    google_pubsub_topic_iam_member.publishers,
    google_dataform_repository_iam_member.dataform_invokes,
    google_service_account_iam_member.dataform_acts_as_runner,
  ]
}

# No allUsers / allAuthenticatedUsers: the workflow's service account is the only invoker.
resource "google_cloud_run_v2_service_iam_member" "workflow_invokes" {
  for_each = google_cloud_run_v2_service.service

  project  = var.project_id
  location = each.value.location
  name     = each.value.name
  role     = "roles/run.invoker"
  member   = local.members.workflow
}
