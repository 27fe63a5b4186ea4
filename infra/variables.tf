variable "project_id" {
  description = "Google Cloud project that hosts the whole chain."
  type        = string
}

variable "region" {
  description = "Region of the buckets, Cloud Run services, workflow, Eventarc trigger and Artifact Registry repository. Eventarc storage triggers must live in the trigger bucket's region, so everything shares one."
  type        = string
  default     = "europe-west1"
}

variable "name_prefix" {
  description = "Prefix of every resource name (services, service accounts, topic, workflow): 2-14 lowercase letters, digits and hyphens."
  type        = string
  default     = "sigma"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,12}[a-z0-9]$", var.name_prefix))
    error_message = "name_prefix must be 2-14 lowercase letters, digits and hyphens, starting with a letter and not ending with a hyphen (<name_prefix>-dataflow-worker must fit the 30 characters of a service account id)."
  }
}

variable "bucket_prefix" {
  description = "Prefix of the bucket names, which are global: buckets are named <bucket_prefix>-trigger, -output, -config and -dataflow-temp. Defaults to \"<project_id>-<name_prefix>\"."
  type        = string
  default     = null
}

variable "image" {
  description = "Full reference of the sigma image the three services run. Defaults to <region>-docker.pkg.dev/<project_id>/<name_prefix>/sigma:<image_tag>, i.e. the repository this configuration creates."
  type        = string
  default     = null
}

variable "image_tag" {
  description = "Tag of the sigma image in the Artifact Registry repository (e.g. the commit hash), used when image is not set. Tags are immutable in that repository: push a new tag per release."
  type        = string
  default     = null
}

variable "trigger_retention_days" {
  description = "Days after which encrypted uploads are deleted from the trigger bucket. The decrypted copy stays in the output bucket."
  type        = number
  default     = 7

  validation {
    condition     = var.trigger_retention_days >= 1
    error_message = "trigger_retention_days must be at least 1."
  }
}

variable "noncurrent_retention_days" {
  description = "Days after which overwritten (noncurrent) object versions are deleted from the versioned buckets."
  type        = number
  default     = 30
}

variable "kms_key_name" {
  description = "Optional Cloud KMS key (projects/P/locations/L/keyRings/R/cryptoKeys/K, in the same region) encrypting the buckets, the events topic and the image repository. Null keeps Google-managed encryption."
  type        = string
  default     = null
}

variable "deletion_protection" {
  description = "Refuse to delete the Cloud Run services and the workflow. Apply with false before a terraform destroy."
  type        = bool
  default     = true
}

variable "force_destroy_buckets" {
  description = "Allow terraform destroy to delete non-empty buckets. Keep false in production."
  type        = bool
  default     = false
}

variable "max_object_bytes" {
  description = "Largest encrypted object sigma-decrypt accepts (MAX_OBJECT_BYTES); bigger ones are rejected with 413 before any byte is decrypted."
  type        = number
  default     = 10737418240
}

variable "decrypt_timeout_seconds" {
  description = "Request timeout of sigma-decrypt. The workflow waits at most 1800 s for it (the Workflows maximum for one HTTP call), so a longer timeout only serves direct callers."
  type        = number
  default     = 1800

  validation {
    condition     = var.decrypt_timeout_seconds >= 60 && var.decrypt_timeout_seconds <= 3600
    error_message = "decrypt_timeout_seconds must be between 60 and 3600 (the Cloud Run maximum)."
  }
}

variable "fernet_ttl_seconds" {
  description = "Optional maximum age of a Fernet token, by its own timestamp (FERNET_TTL_SECONDS, Python's ttl); older uploads are refused. Null accepts any age."
  type        = number
  default     = null
}

variable "verify_gzip" {
  description = "When true, sigma-decrypt inflates the whole plaintext to check the gzip stream end to end before committing it (costs CPU); when false it checks the gzip header only."
  type        = bool
  default     = false
}

variable "object_prefix" {
  description = "Only objects whose name starts with this prefix (and ends in .encrypted) start the chain; others are ignored by the workflow."
  type        = string
  default     = "data/"
}

variable "poll_interval_seconds" {
  description = "Seconds the workflow waits between two polls of a Dataflow job or a Dataform invocation (POLL_INTERVAL_SECONDS): a whole number, at least 1."
  type        = number
  default     = 30

  # The workflow divides by it; 0 would fail every execution after decrypt and launch ran.
  validation {
    condition     = var.poll_interval_seconds >= 1 && floor(var.poll_interval_seconds) == var.poll_interval_seconds
    error_message = "poll_interval_seconds must be a whole number of seconds, at least 1."
  }
}

variable "poll_deadline_seconds" {
  description = "Seconds after which the workflow stops polling a Dataflow job or a Dataform invocation and fails the execution with poll_deadline_exceeded (POLL_DEADLINE_SECONDS): a whole number, at least poll_interval_seconds and at most 2000 intervals."
  type        = number
  default     = 21600

  # The same bounds the workflow checks in its init step: a poll takes at most 5 steps and there
  # are two polling phases, so 2000 polls per phase keep an execution near 20,000 steps, far
  # below the 100,000 steps Cloud Workflows allows.
  validation {
    condition = (
      floor(var.poll_deadline_seconds) == var.poll_deadline_seconds
      && var.poll_deadline_seconds >= var.poll_interval_seconds
      && floor(var.poll_deadline_seconds / var.poll_interval_seconds) <= 2000
    )
    error_message = "poll_deadline_seconds must be a whole number of seconds between poll_interval_seconds and 2000 x poll_interval_seconds (the workflow's own bounds, which keep an execution far below the Workflows step limit)."
  }
}

variable "backpressure_window_seconds" {
  description = "How long one service call of the workflow may keep answering 429 (Dataflow's concurrent-job quota or Dataform's quota is full, or Cloud Run has no free instance) before the execution fails with backpressure_timeout (BACKPRESSURE_WINDOW_SECONDS). Until then the workflow waits (2 s, doubling, at most 60 s between tries) and logs each wait as \"waiting on backpressure\". A whole number of seconds, at least 1."
  type        = number
  default     = 3600

  # The workflow checks the same in its init step (invalid_settings).
  validation {
    condition     = var.backpressure_window_seconds >= 1 && floor(var.backpressure_window_seconds) == var.backpressure_window_seconds
    error_message = "backpressure_window_seconds must be a whole number of seconds, at least 1."
  }
}

variable "max_instances" {
  description = "Upper bound of instances per Cloud Run service."
  type        = number
  default     = 10
}

variable "dataflow_template_bucket" {
  description = "Optional bucket holding the Flex Template spec files the registry points at; the launcher and the Dataflow workers get read access to it. Null if the templates live in the config bucket."
  type        = string
  default     = null
}

variable "bigquery_datasets" {
  description = "BigQuery dataset ids (in project_id) the Dataflow pipelines load into; the Dataflow worker service account gets roles/bigquery.dataEditor on each."
  type        = list(string)
  default     = []
}

variable "dataform_repository" {
  description = "Name of the existing Dataform repository whose actions sigma-dataform runs (DATAFORM_REPOSITORY is derived from it)."
  type        = string
}

variable "dataform_region" {
  description = "Region of the Dataform repository. Defaults to region."
  type        = string
  default     = null
}

variable "dataform_release_config" {
  description = "Release configuration (id, or full name) of the Dataform repository whose compilation sigma-dataform invokes (DATAFORM_RELEASE_CONFIG)."
  type        = string
  default     = "production"
}

variable "dataform_settle_seconds" {
  description = "How long a load with nothing running in its way waits for sibling loads before its Dataform invocation starts, so that a batch's files share one invocation (DATAFORM_SETTLE_SECONDS). 0 starts it at once."
  type        = number
  default     = 30

  validation {
    condition     = var.dataform_settle_seconds >= 0 && var.dataform_settle_seconds == floor(var.dataform_settle_seconds) && var.dataform_settle_seconds <= 3600
    error_message = "dataform_settle_seconds must be a whole number of seconds from 0 to 3600."
  }
}

variable "dataform_service_account" {
  description = "Email of the service account Dataform workflow invocations run as. Dataform enforces strict act-as for every repository: each invocation names an account, and its creator (sigma-dataform) must be allowed to act as it. Passed as DATAFORM_SERVICE_ACCOUNT; sigma-dataform gets roles/iam.serviceAccountUser on it."
  type        = string

  validation {
    condition     = can(regex("^[^@\\s]+@[^@\\s]+\\.iam\\.gserviceaccount\\.com$", var.dataform_service_account))
    error_message = "dataform_service_account must be a service account email (NAME@PROJECT.iam.gserviceaccount.com)."
  }
}

variable "freshness" {
  description = "Freshness alert per entity: entity name -> the longest time without a sigma.chain.succeeded for it before an alert is raised, as a duration (\"24h\", \"90m\", \"7d\"). Mirrors expected_every of the entities in the pipeline registry, which Terraform cannot read at plan time: keep the two in step. Entities left out have no freshness alert."
  type        = map(string)
  default     = {}

  validation {
    condition = alltrue([
      for entity, every in var.freshness :
      can(regex("^[A-Za-z0-9_.-]+$", entity)) && can(regex("^([0-9]+[smhdw])+$", every))
    ])
    error_message = "freshness maps entity names (letters, digits, _ . -) to durations such as \"24h\", \"90m\" or \"1d12h\"."
  }
}

variable "notification_channels" {
  description = "Cloud Monitoring notification channel ids (projects/P/notificationChannels/N) the alert policies notify. Empty: incidents are only shown in the console."
  type        = list(string)
  default     = []
}

variable "events_history_days" {
  description = "Days the run history table (<name_prefix>_ops.events, one row per pipeline event) keeps each day's partition."
  type        = number
  default     = 400

  validation {
    condition     = var.events_history_days >= 1 && floor(var.events_history_days) == var.events_history_days
    error_message = "events_history_days must be a whole number of days, at least 1."
  }
}
