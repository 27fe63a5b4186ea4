//! The upload writer against fake-gcs-server: an object appears only when finished.

use crate::common;

use std::io::Write;

use common::{noise, storage};
use sigma_decrypt::upload::{UploadError, UploadSettings, UploadWriter};
use sigma_fakes::gcs::FakeGcs;
use sigma_shared::ObjectRef;
use sigma_shared::storage::{Precondition, WriteOptions};
use tokio::runtime::Handle;

const BUCKET: &str = "out";

fn target(name: &str) -> ObjectRef {
    ObjectRef::new(BUCKET.parse().unwrap(), name.parse().unwrap())
}

/// Writes `data` in odd-sized pieces on a blocking thread, then finishes or drops the writer.
async fn write(
    gcs: &FakeGcs,
    name: &str,
    data: Vec<u8>,
    precondition: Precondition,
    finish: bool,
) -> Option<Result<(), UploadError>> {
    let mut writer = UploadWriter::new(
        Handle::current(),
        storage(gcs).await,
        target(name),
        precondition,
        WriteOptions::default(),
        UploadSettings::default(),
    );
    tokio::task::spawn_blocking(move || {
        for piece in data.chunks(123_457) {
            writer.write_all(piece).unwrap();
        }
        finish.then(|| writer.finish().map(|_| ()))
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn a_finished_upload_holds_exactly_the_bytes_written() {
    let gcs = FakeGcs::start(&[BUCKET]).await.unwrap();
    for (name, len) in [
        ("empty", 0),
        ("small", 1000),
        ("large", 20 * 1024 * 1024 + 7),
    ] {
        let data = noise(len);
        write(&gcs, name, data.clone(), Precondition::DoesNotExist, true)
            .await
            .unwrap()
            .unwrap();
        assert!(
            gcs.get(BUCKET, name).await.unwrap().unwrap() == data,
            "{name}"
        );
    }
}

#[tokio::test]
async fn an_upload_dropped_before_it_is_finished_leaves_no_object() {
    let gcs = FakeGcs::start(&[BUCKET]).await.unwrap();
    // Below one chunk, within the client's buffer, and past its resumable threshold.
    for len in [10, 3 * 1024 * 1024, 20 * 1024 * 1024] {
        assert!(
            write(
                &gcs,
                "dropped",
                noise(len),
                Precondition::DoesNotExist,
                false
            )
            .await
            .is_none()
        );
    }
    // Give an abandoned upload every chance to (wrongly) commit before looking.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(gcs.list(BUCKET).await.unwrap().is_empty());
}
