output "trigger_bucket" {
  description = "Bucket the on-premise job uploads encrypted files to (gs://<trigger_bucket>/data/...)."
  value       = google_storage_bucket.data["trigger"].name
}

output "output_bucket" {
  description = "Bucket sigma-decrypt writes the decrypted gzip files to."
  value       = google_storage_bucket.data["output"].name
}

output "config_bucket" {
  description = "Bucket of the pipeline registry (pipelines.yaml), job configs, launch records and Dataform state."
  value       = google_storage_bucket.data["config"].name
}

output "pipelines_uri" {
  description = "Where sigma-dataflow reads the pipeline registry (PIPELINES): upload your pipelines.yaml here."
  value       = local.pipelines_uri
}

output "dataflow_temp_bucket" {
  description = "Bucket for the Dataflow jobs' scratch files: the registry's defaults.environment.temp_location and staging_location go under it (gs://<bucket>/temp, gs://<bucket>/staging)."
  value       = "gs://${google_storage_bucket.scratch["dataflow-temp"].name}"
}

output "fernet_keys_secret" {
  description = "Secret Manager secret holding the Fernet keys; add the key material with gcloud secrets versions add."
  value       = google_secret_manager_secret.fernet_keys.secret_id
}

output "image_repository" {
  description = "Artifact Registry repository to push the sigma image to (docker push <image_repository>/sigma:<tag>)."
  value       = local.repository_url
}

output "service_urls" {
  description = "URLs of the three Cloud Run services (internal ingress, OIDC-authenticated)."
  value       = { for key, service in google_cloud_run_v2_service.service : key => service.uri }
}

output "workflow" {
  description = "Full name of the workflow Eventarc starts; watch executions with gcloud workflows executions list."
  value       = google_workflows_workflow.sigma.id
}

output "events_topic" {
  description = "Pub/Sub topic of the pipeline events; subscribe to it to follow outcomes."
  value       = google_pubsub_topic.events.id
}

output "service_accounts" {
  description = "Email of each component's service account."
  value       = { for key, sa in google_service_account.sa : key => sa.email }
}

output "dataflow_worker_service_account" {
  description = "Value for defaults.environment.service_account_email in the pipeline registry: the account the Dataflow jobs run as. Grant it access to any other source or sink the pipelines use."
  value       = google_service_account.sa["dataflow_worker"].email
}

output "build_service_account" {
  description = "Service account the image build runs as (gcloud builds submit --service-account): it may read the build source bucket, push to the image repository and write logs."
  value       = google_service_account.sa["build"].id
}

output "build_source_dir" {
  description = "Where gcloud builds submit uploads the source (--gcs-source-staging-dir); archives expire after a week."
  value       = "gs://${google_storage_bucket.scratch["build"].name}/source"
}

output "dashboard" {
  description = "Cloud Monitoring console URL of the sigma dashboard (files per hour, failures by step, decrypt MB/s, Dataflow and Dataform durations, backpressure)."
  value       = "https://console.cloud.google.com/monitoring/dashboards/custom/${element(split("/", google_monitoring_dashboard.sigma.id), 3)}?project=${var.project_id}"
}

output "failed_events_subscription" {
  description = "Pub/Sub subscription holding every sigma.chain.failed event for 7 days (the dead-letter list)."
  value       = google_pubsub_subscription.failed.id
}

output "events_table" {
  description = "BigQuery table (project.dataset.table) every pipeline event is written to: run history in SQL."
  value       = "${var.project_id}.${google_bigquery_dataset.ops.dataset_id}.${google_bigquery_table.events.table_id}"
}
