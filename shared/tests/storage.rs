//! The storage calls production makes, against fake-gcs-server.

use bytes::Bytes;
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
