//! The storage calls production makes, against fake-gcs-server.

use bytes::Bytes;
use sigma_fakes::faults::{Fault, FaultProxy};
use sigma_fakes::gcs::FakeGcs;
use sigma_shared::storage::{self, Precondition, StorageError, WriteOptions};
use sigma_shared::{Generation, ObjectRef};

fn object(bucket: &str, name: &str) -> ObjectRef {
    ObjectRef::new(bucket.parse().unwrap(), name.parse().unwrap())
}

async fn client(gcs: &FakeGcs) -> google_cloud_storage::client::Storage {
    google_cloud_storage::client::Storage::builder()
        .with_endpoint(gcs.endpoint.clone())
        .with_credentials(google_cloud_auth::credentials::anonymous::Builder::new().build())
        .build()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_precondition_lets_only_the_first_writer_create_an_object() {
    let gcs = FakeGcs::start(&["out"]).await.unwrap();
    let client = client(&gcs).await;
    let target = object("out", "a/b.json");
    let options = WriteOptions {
        content_type: "application/json".into(),
        ..Default::default()
    };
    let first = storage::write(
        &client,
        &target,
        Bytes::from_static(b"{}"),
        Precondition::DoesNotExist,
        options.clone(),
    )
    .await
    .unwrap();
    let second = storage::write(
        &client,
        &target,
        Bytes::from_static(b"[]"),
        Precondition::DoesNotExist,
        options.clone(),
    )
    .await;
    assert!(
        matches!(second, Err(StorageError::PreconditionFailed(_))),
        "{second:?}"
    );
    let replaced = storage::write(
        &client,
        &target,
        Bytes::from_static(b"[1]"),
        Precondition::GenerationMatch(Generation::new(first.generation).unwrap()),
        options,
    )
    .await
    .unwrap();
    assert!(replaced.generation > first.generation);
    assert_eq!(gcs.get("out", "a/b.json").await.unwrap().unwrap(), b"[1]");
}

#[tokio::test]
async fn stat_reports_metadata_and_missing_objects() {
    let gcs = FakeGcs::start(&["out"]).await.unwrap();
    let client = client(&gcs).await;
    let target = object("out", "x.gz");
    assert!(storage::stat(&client, &target).await.unwrap().is_none());
    let options = WriteOptions {
        content_type: "application/gzip".into(),
        metadata: [("sigma-source-generation".to_string(), "17".to_string())].into(),
    };
    let written = storage::write(
        &client,
        &target,
        Bytes::from(vec![7u8; 1000]),
        Precondition::DoesNotExist,
        options,
    )
    .await
    .unwrap();
    let found = storage::stat(&client, &target).await.unwrap().unwrap();
    assert_eq!(found.generation, written.generation);
    assert_eq!(
        found
            .metadata
            .get("sigma-source-generation")
            .map(String::as_str),
        Some("17")
    );
    eprintln!("stat size={} written size={}", found.size, written.size);
}

#[tokio::test]
async fn reading_a_missing_object_is_not_found() {
    let gcs = FakeGcs::start(&["src"]).await.unwrap();
    let client = client(&gcs).await;
    let result = storage::open(&client, &object("src", "nope"), None).await;
    assert!(matches!(result, Err(StorageError::NotFound(_))));
    let (bytes, _) = {
        gcs.put("src", "small", "hello").await.unwrap();
        storage::read_to_bytes(&client, &object("src", "small"), 10)
            .await
            .unwrap()
    };
    assert_eq!(&bytes[..], b"hello");
    let too_large = storage::read_to_bytes(&client, &object("src", "small"), 3).await;
    assert!(matches!(too_large, Err(StorageError::TooLarge { .. })));
}

/// A client that reaches fake-gcs-server through the fault proxy.
async fn proxied(gcs: &FakeGcs) -> (FaultProxy, google_cloud_storage::client::Storage) {
    let proxy = FaultProxy::start(&gcs.endpoint).await.unwrap();
    let client = google_cloud_storage::client::Storage::builder()
        .with_endpoint(proxy.endpoint.clone())
        .with_credentials(google_cloud_auth::credentials::anonymous::Builder::new().build())
        .build()
        .await
        .unwrap();
    (proxy, client)
}

#[tokio::test]
async fn refused_credentials_are_storage_errors_with_cloud_storages_status() {
    use axum::http::StatusCode;
    use sigma_shared::HttpError;
    let gcs = FakeGcs::start(&["input"]).await.unwrap();
    gcs.put("input", "a.txt", "hello").await.unwrap();
    let (proxy, client) = proxied(&gcs).await;
    for status in [401u16, 403] {
        // Cloud Storage's JSON API errors carry no RPC status: the HTTP status decides.
        proxy.inject(
            Fault::status(status)
                .rpc_status("")
                .path_contains("/o/a.txt")
                .times(100),
        );
        let error = storage::read_to_bytes(&client, &object("input", "a.txt"), 1 << 20)
            .await
            .unwrap_err();
        assert_eq!(
            error.status(),
            StatusCode::from_u16(status).unwrap(),
            "{error}"
        );
        assert_eq!(error.code(), "storage_error");
        assert!(!error.retryable());
        proxy.clear();
    }
}

/// The client resumes a broken download from the last byte it received, so a cut
/// connection costs a request, not the read; only when resuming keeps failing does the
/// error reach sigma, classified as transient (see `google::tests`).
#[tokio::test]
async fn a_download_cut_midway_resumes_and_arrives_whole() {
    let gcs = FakeGcs::start(&["input"]).await.unwrap();
    let body: Vec<u8> = (0..256 * 1024u32).map(|i| (i % 251) as u8).collect();
    gcs.put("input", "big.bin", body.clone()).await.unwrap();
    let (proxy, client) = proxied(&gcs).await;
    proxy.inject(
        Fault::cut_response_after(1000)
            .path_contains("/o/big.bin")
            .times(3),
    );
    let (bytes, _) = storage::read_to_bytes(&client, &object("input", "big.bin"), 1 << 20)
        .await
        .unwrap();
    assert_eq!(bytes.len(), body.len());
    assert!(
        bytes[..] == body[..],
        "the resumed download must be byte-identical"
    );
    assert_eq!(proxy.fired(), 3);
}
