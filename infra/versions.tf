terraform {
  required_version = ">= 1.9" # validation blocks that compare two variables

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = ">= 6.50, < 8.0"
    }
    # Only for google_dataform_repository_iam_member, which is beta-only before 7.x.
    google-beta = {
      source  = "hashicorp/google-beta"
      version = ">= 6.50, < 8.0"
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
