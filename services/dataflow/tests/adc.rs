//! The credentials `main` builds honour `GCE_METADATA_HOST`, as on Cloud Run. Alone in its
//! test binary because it sets a process-wide env var.

use sigma_dataflow::dataflow;
use sigma_fakes::metadata::FakeMetadata;

#[tokio::test]
async fn production_credentials_get_tokens_from_the_metadata_server_in_gce_metadata_host() {
    let metadata = FakeMetadata::start_with("adc-token", "demo-project")
        .await
        .unwrap();
    // SAFETY: the only test in this binary; nothing else reads the environment concurrently.
    unsafe {
        std::env::set_var("GCE_METADATA_HOST", metadata.host());
        std::env::remove_var("GOOGLE_APPLICATION_CREDENTIALS");
    }
    let credentials = google_cloud_auth::credentials::Builder::default()
        .with_scopes([dataflow::SCOPE])
        .build_access_token_credentials()
        .unwrap();
    assert_eq!(credentials.access_token().await.unwrap().token, "adc-token");
    assert_eq!(credentials.access_token().await.unwrap().token, "adc-token");
    assert_eq!(metadata.handle.token_requests(), 1, "tokens are cached");

    let http = reqwest::Client::new();
    let url = format!(
        "{}/computeMetadata/v1/project/project-id",
        metadata.endpoint()
    );
    assert_eq!(
        http.get(&url).send().await.unwrap().status(),
        403,
        "Metadata-Flavor is required"
    );
    let project = http
        .get(&url)
        .header("Metadata-Flavor", "Google")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(project, "demo-project");
    let elsewhere = http
        .get(format!("{}/computeMetadata/v1/other", metadata.endpoint()))
        .header("Metadata-Flavor", "Google")
        .send()
        .await
        .unwrap();
    assert_eq!(elsewhere.status(), 404);
}
