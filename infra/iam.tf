# One service account per component, each granted only what it uses, on the resource it uses.
# The only project-level grants are roles that have no narrower resource to bind to.
locals {
  service_accounts = {
    decrypt         = "sigma-decrypt Cloud Run service"
    dataflow        = "sigma-dataflow Cloud Run service (launches Dataflow jobs)"
    dataform        = "sigma-dataform Cloud Run service (invokes Dataform)"
    workflow        = "sigma workflow (calls the three services)"
    eventarc        = "Eventarc trigger starting the sigma workflow"
    dataflow_worker = "Dataflow workers of the jobs sigma-dataflow launches"
    build           = "Cloud Build: builds the sigma image and pushes it to the repository"
  }

  members = { for key, sa in google_service_account.sa : key => "serviceAccount:${sa.email}" }

  bucket_grants = merge(
    {
      decrypt_reads_trigger = { bucket = "trigger", role = "roles/storage.objectViewer", member = local.members.decrypt }
      # A newer upload of the same file replaces its decrypted copy: overwriting needs delete.
      decrypt_writes_output = { bucket = "output", role = "roles/storage.objectUser", member = local.members.decrypt }
      dataflow_reads_output = { bucket = "output", role = "roles/storage.objectViewer", member = local.members.dataflow }
      # Reads the registry (and templates kept there); writes only under configs/ (below).
      dataflow_reads_config = { bucket = "config", role = "roles/storage.objectViewer", member = local.members.dataflow }
      dataform_uses_state   = { bucket = "dataform-state", role = "roles/storage.objectUser", member = local.members.dataform }
      worker_reads_output   = { bucket = "output", role = "roles/storage.objectViewer", member = local.members.dataflow_worker }
      worker_reads_config   = { bucket = "config", role = "roles/storage.objectViewer", member = local.members.dataflow_worker }
      worker_uses_temp      = { bucket = "dataflow-temp", role = "roles/storage.objectAdmin", member = local.members.dataflow_worker }
      # gcloud builds submit uploads the source there; the build reads it.
      build_reads_source = { bucket = "build", role = "roles/storage.objectViewer", member = local.members.build }
    },
    var.dataflow_template_bucket == null ? {} : {
      dataflow_reads_templates = { bucket = "templates", role = "roles/storage.objectViewer", member = local.members.dataflow }
      worker_reads_templates   = { bucket = "templates", role = "roles/storage.objectViewer", member = local.members.dataflow_worker }
    },
  )

  bucket_names = {
    trigger          = google_storage_bucket.data["trigger"].name
    output           = google_storage_bucket.data["output"].name
    config           = google_storage_bucket.data["config"].name
    "dataform-state" = google_storage_bucket.data["dataform-state"].name
    "dataflow-temp"  = google_storage_bucket.scratch["dataflow-temp"].name
    build            = google_storage_bucket.scratch["build"].name
    templates        = var.dataflow_template_bucket
  }

  project_grants = {
    worker_runs = { role = "roles/dataflow.worker", member = local.members.dataflow_worker }
    # BigQuery load jobs are project resources; table writes are granted per dataset below.
    worker_runs_bq_jobs = { role = "roles/bigquery.jobUser", member = local.members.dataflow_worker }
    # sys.log and call logging of workflow executions.
    workflow_logs = { role = "roles/logging.logWriter", member = local.members.workflow }
    # Eventarc starts executions of the workflow and receives the events it routes.
    eventarc_starts_workflow = { role = "roles/workflows.invoker", member = local.members.eventarc }
    eventarc_receives        = { role = "roles/eventarc.eventReceiver", member = local.members.eventarc }
    # Storage-triggered Eventarc: the Cloud Storage service agent publishes object notifications.
    gcs_agent_publishes = { role = "roles/pubsub.publisher", member = "serviceAccount:${data.google_storage_project_service_account.gcs.email_address}" }
    # A build with its own service account writes its logs to Cloud Logging only.
    build_logs = { role = "roles/logging.logWriter", member = local.members.build }
  }
}

resource "google_service_account" "sa" {
  for_each = local.service_accounts

  project      = var.project_id
  account_id   = "${var.name_prefix}-${replace(each.key, "_", "-")}"
  display_name = each.value

  depends_on = [google_project_service.enabled]
}

resource "google_storage_bucket_iam_member" "grants" {
  for_each = local.bucket_grants

  bucket = local.bucket_names[each.value.bucket]
  role   = each.value.role
  member = each.value.member
}

# sigma-dataflow writes its job configs and launch records under configs/ and nothing else: the
# condition keeps the registry (pipelines.yaml), which decides the Flex Template that runs as the
# worker account, out of its reach. (A list request names the bucket, not an object, so listing
# comes from the unconditional objectViewer grant above.)
resource "google_storage_bucket_iam_member" "dataflow_writes_configs" {
  bucket = google_storage_bucket.data["config"].name
  role   = "roles/storage.objectUser"
  member = local.members.dataflow

  condition {
    title       = "configs-prefix-only"
    description = "Job configs and launch records: objects under configs/ only."
    expression  = "resource.name.startsWith(\"projects/_/buckets/${google_storage_bucket.data["config"].name}/objects/configs/\")"
  }
}

resource "google_project_iam_member" "grants" {
  for_each = local.project_grants

  project = var.project_id
  role    = each.value.role
  member  = each.value.member
}

resource "google_project_iam_member" "dataflow_launches" {
  #checkov:skip=CKV_GCP_49:Dataflow has no job-level IAM: launching a Flex Template needs dataflow.jobs.create on the project and roles/dataflow.developer is the narrowest predefined role with it. The impersonation it allows is bounded by actAs, which sigma-dataflow has on the Dataflow worker service account only (dataflow_acts_as_worker).
  project = var.project_id
  role    = "roles/dataflow.developer"
  member  = local.members.dataflow
}

# sigma-dataflow launches jobs that run as the worker service account: it may act as that one
# account only.
resource "google_service_account_iam_member" "dataflow_acts_as_worker" {
  service_account_id = google_service_account.sa["dataflow_worker"].name
  role               = "roles/iam.serviceAccountUser"
  member             = local.members.dataflow
}

resource "google_bigquery_dataset_iam_member" "worker_writes" {
  for_each = toset(var.bigquery_datasets)

  project    = var.project_id
  dataset_id = each.value
  role       = "roles/bigquery.dataEditor"
  member     = local.members.dataflow_worker
}
