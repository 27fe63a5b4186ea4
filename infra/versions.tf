terraform {
  required_version = ">= 1.9" # validation blocks that compare two variables

  # tests/static/tf_schema.py checks every resource against the schemas of google and
  # google-beta 7.46.1 and time 0.14.2: the lower bounds are the versions checked.
  required_providers {
    google = {
      source  = "hashicorp/google"
      version = ">= 7.46, < 8.0"
    }
    # Only for google_project_service_identity (kms.tf), which is beta-only.
    google-beta = {
      source  = "hashicorp/google-beta"
      version = ">= 7.46, < 8.0"
    }
    # time_sleep: waiting for IAM grants to propagate before the Eventarc trigger (workflow.tf).
    time = {
      source  = "hashicorp/time"
      version = ">= 0.14, < 1.0"
    }
  }
}

provider "google" {
  project = var.project_id
  region  = var.region
}

provider "google-beta" {
  project = var.project_id
  region  = var.region
}
