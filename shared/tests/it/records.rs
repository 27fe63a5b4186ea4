//! The record model against fake-gcs-server: created once, replaced only from the
//! generation read, and never mistaken for absent when unreadable.

use serde::{Deserialize, Serialize};
use sigma_fakes::gcs::FakeGcs;
use sigma_shared::ObjectRef;
use sigma_shared::record::{self, Conflict, Created, RecordError, Stored};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Claim {
    owner: String,
}

fn claim(owner: &str) -> Claim {
    Claim {
        owner: owner.into(),
    }
}

async fn start() -> (FakeGcs, google_cloud_storage::client::Storage, ObjectRef) {
    let gcs = FakeGcs::start(&["state"]).await.unwrap();
    let client = google_cloud_storage::client::Storage::builder()
        .with_endpoint(gcs.endpoint.clone())
        .with_credentials(google_cloud_auth::credentials::anonymous::Builder::new().build())
        .build()
        .await
        .unwrap();
    let object = ObjectRef::new("state".parse().unwrap(), "claims/k.json".parse().unwrap());
    (gcs, client, object)
}

#[tokio::test]
async fn a_record_is_created_once_and_every_later_writer_reads_the_first_one_back() {
    let (_gcs, client, object) = start().await;
    assert_eq!(record::read::<Claim>(&client, &object).await.unwrap(), None);

    let first = record::create(&client, &object, &claim("a")).await.unwrap();
    let Created::Ours(generation) = first else {
        panic!("the first writer creates: {first:?}")
    };
    let second = record::create(&client, &object, &claim("b")).await.unwrap();

    assert_eq!(
        second,
        Created::Theirs(Stored {
            record: claim("a"),
            generation
        })
    );
}

#[tokio::test]
async fn a_replacement_goes_through_only_from_the_generation_it_read() {
    let (_gcs, client, object) = start().await;
    let Created::Ours(read) = record::create(&client, &object, &claim("a")).await.unwrap() else {
        panic!("created")
    };
    let replaced = record::write(&client, &object, &claim("b"), Some(read))
        .await
        .unwrap()
        .unwrap();

    let stale = record::write(&client, &object, &claim("c"), Some(read))
        .await
        .unwrap();
    let absent_expected = record::write(&client, &object, &claim("c"), None)
        .await
        .unwrap();

    assert_eq!((stale, absent_expected), (Err(Conflict), Err(Conflict)));
    let stored = record::read::<Claim>(&client, &object)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((stored.record, stored.generation), (claim("b"), replaced));
}

#[tokio::test]
async fn an_unreadable_record_is_reported_corrupt_never_taken_for_absent() {
    let (gcs, client, object) = start().await;
    gcs.put("state", "claims/k.json", "not json").await.unwrap();

    let read = record::read::<Claim>(&client, &object).await;
    let created = record::create(&client, &object, &claim("a")).await;

    assert!(matches!(read, Err(RecordError::Corrupt { .. })), "{read:?}");
    assert!(
        matches!(created, Err(RecordError::Corrupt { .. })),
        "{created:?}"
    );
    assert_eq!(
        gcs.get("state", "claims/k.json").await.unwrap().unwrap(),
        b"not json".to_vec(),
        "nothing overwrote it"
    );
}
