//! The trigger bucket, read: an object's current generation, and the uploads under a prefix.
//!
//! The generation comes through `sigma_shared::storage` (the official client, with its
//! `STORAGE_EMULATOR_HOST` switch). Listing is not in that client's JSON API (only in the gRPC
//! `StorageControl`, which the emulators do not speak), so it is the JSON API's
//! `objects.list` over reqwest, with the same switch: the emulator without credentials,
//! otherwise an Application Default Credentials token with read-only scope.

use anyhow::{Context, bail};
use google_cloud_auth::credentials::{AccessTokenCredentials, Builder as Credentials};
use serde::Deserialize;
use serde_json::Value;
use sigma_shared::storage::{self, EMULATOR_VAR};
use sigma_shared::{BucketName, Generation, ObjectRef};

use crate::run::Upload;

const GOOGLE: &str = "https://storage.googleapis.com";
const READ_ONLY: &str = "https://www.googleapis.com/auth/devstorage.read_only";

/// The upload an object is now: its live generation.
pub async fn current(object: ObjectRef) -> anyhow::Result<Upload> {
    let client = storage::client().await?;
    let Some(highlights) = storage::stat(&client, &object).await? else {
        bail!("{object} does not exist");
    };
    let generation = Generation::new(highlights.generation)
        .with_context(|| format!("{object} has no generation"))?;
    Ok(Upload { object, generation })
}

/// Every object under `prefix`, as uploads at their live generation.
pub async fn list(bucket: &BucketName, prefix: &str) -> anyhow::Result<Vec<Upload>> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Page {
        #[serde(default)]
        items: Vec<Item>,
        #[serde(default)]
        next_page_token: Option<String>,
    }
    #[derive(Deserialize)]
    struct Item {
        name: String,
        generation: Value,
    }

    let (endpoint, credentials) = match sigma_shared::config::optional(EMULATOR_VAR) {
        Some(emulator) => (emulator.trim_end_matches('/').to_owned(), None),
        None => (GOOGLE.to_owned(), Some(token_source()?)),
    };
    let http = reqwest::Client::new();
    let url = format!("{endpoint}/storage/v1/b/{bucket}/o");
    let mut uploads = Vec::new();
    let mut page_token: Option<String> = None;
    loop {
        let mut query = vec![
            ("prefix", prefix.to_owned()),
            ("fields", "items(name,generation),nextPageToken".to_owned()),
        ];
        query.extend(page_token.take().map(|token| ("pageToken", token)));
        let mut request = http.get(&url).query(&query);
        if let Some(credentials) = &credentials {
            let token = credentials
                .access_token()
                .await
                .context("no access token for Cloud Storage")?;
            request = request.bearer_auth(token.token);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("listing gs://{bucket}/{prefix}"))?;
        let status = response.status();
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            bail!(
                "listing gs://{bucket}/{prefix}: Cloud Storage answered {status}: {}",
                body.chars().take(300).collect::<String>()
            );
        }
        let page: Page = response
            .json()
            .await
            .with_context(|| format!("reading the listing of gs://{bucket}/{prefix}"))?;
        // A name Cloud Storage allows but sigma refuses ("..", control characters) is no
        // upload the workflow could take: it is passed over.
        uploads.extend(page.items.into_iter().filter_map(|item| {
            Some(Upload {
                object: ObjectRef::new(bucket.clone(), item.name.parse().ok()?),
                generation: serde_json::from_value(item.generation).ok()?,
            })
        }));
        match page.next_page_token.filter(|token| !token.is_empty()) {
            Some(token) => page_token = Some(token),
            None => return Ok(uploads),
        }
    }
}

fn token_source() -> anyhow::Result<AccessTokenCredentials> {
    Credentials::default()
        .with_scopes([READ_ONLY])
        .build_access_token_credentials()
        .context("no Application Default Credentials for Cloud Storage")
}
