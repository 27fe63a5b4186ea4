//! Decryption under faults, injected by a proxy between the service and fake-gcs-server:
//! retries that resume, disconnects that do not release the output, and the fault matrix
//! of issue 11 (every Cloud Storage call of a decryption, failing transiently or for good).

use crate::common;

use std::time::Duration;

use common::*;
use serde_json::json;
use sigma_decrypt::config::Config;
use sigma_decrypt::fernet::Key;
use sigma_fakes::faults::{Fault, FaultProxy};
use sigma_fakes::gcs::FakeGcs;
use sigma_shared::events::Events;

/// Small chunks, so a file of a few MiB makes an upload of many chunks.
const CHUNK: usize = 256 * 1024;

fn chunked(key: &Key) -> Config {
    let mut config = config(&[key]);
    config.upload.chunk_bytes = CHUNK;
    config
}

/// A service whose every Cloud Storage call goes through a fault proxy.
async fn proxied(config: Config) -> (Service, FaultProxy) {
    let gcs = FakeGcs::start(&[TRIGGER, OUTPUT]).await.unwrap();
    let proxy = FaultProxy::start(&gcs.endpoint).await.unwrap();
    let service = Service::start_via(gcs, &proxy.endpoint, config, Events::disabled()).await;
    (service, proxy)
}

/// Upload sessions the service started (one per decryption that reached the upload).
fn sessions(proxy: &FaultProxy) -> usize {
    proxy
        .requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path_and_query.contains("uploadType=resumable"))
        .count()
}

#[tokio::test]
async fn a_client_disconnect_mid_decrypt_keeps_the_output_locked_until_the_work_ends() {
    let key = Key::generate();
    let (service, proxy) = proxied(chunked(&key)).await;
    let plaintext = gzip(&noise(2 * 1024 * 1024));
    service.upload(token(&key, &plaintext)).await;
    // The second chunk hangs long enough for the first client to give up mid-upload.
    proxy.inject(
        Fault::delay(Duration::from_secs(4))
            .method("PUT")
            .path_contains("upload_id")
            .nth(2),
    );
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(1500))
        .build()
        .unwrap();
    let gone = impatient
        .post(format!("http://{}/decrypt", service.address))
        .json(&json!({"bucket": TRIGGER, "name": SOURCE_NAME}))
        .send()
        .await;
    assert!(gone.is_err(), "the first request was meant to time out");

    let (status, duplicate) = service.decrypt(SOURCE_NAME).await;

    assert_eq!(status, 200, "{duplicate}");
    assert_eq!(
        duplicate["skipped"], true,
        "the duplicate decrypted alongside the abandoned request: {duplicate}"
    );
    assert_eq!(sessions(&proxy), 1, "{:#?}", proxy.requests());
    assert!(service.gcs.get(OUTPUT, OUTPUT_NAME).await.unwrap().unwrap() == plaintext);
}

/// After a failed chunk the client asks the session where it stands (`PUT` with
/// `Content-Range: bytes */*`); fake-gcs-server would finalize the partial object there,
/// which Cloud Storage never does, so the fault proxy answers that query as Cloud Storage
/// would, from the ranges upstream confirmed.
#[tokio::test]
async fn a_503_on_a_late_chunk_after_a_long_upload_is_retried_and_decrypts_once() {
    let key = Key::generate();
    let (service, proxy) = proxied(chunked(&key)).await;
    let plaintext = gzip(&noise(2 * 1024 * 1024));
    service.upload(token(&key, &plaintext)).await;
    // The test client gives one call 5 s of retries: by the 503 the upload is older.
    proxy.inject(
        Fault::delay(Duration::from_secs(6))
            .method("PUT")
            .path_contains("upload_id")
            .nth(2),
    );
    proxy.inject(
        Fault::status(503)
            .method("PUT")
            .path_contains("upload_id")
            .nth(7),
    );

    let (status, body) = service.decrypt(SOURCE_NAME).await;

    assert_eq!(status, 200, "{body}");
    assert_eq!(proxy.fired(), 2, "{:#?}", proxy.requests());
    assert_eq!(sessions(&proxy), 1, "the upload started over");
    assert_eq!(service.output_names().await, vec![OUTPUT_NAME]);
    assert!(service.gcs.get(OUTPUT, OUTPUT_NAME).await.unwrap().unwrap() == plaintext);
}

// ---- The fault matrix ----------------------------------------------------------------
//
// Every Cloud Storage call of one decryption, failing for good (the fault hits every
// matching request, so the client's retries cannot hide it), once with a 503 and once with
// a cut connection: 6 steps x 2 faults = 12 cells. For each: the answer is a retryable 503
// (or 200 where the client's own retries get through), nothing partial or unverified is
// visible in the output bucket, no session URL
// (`upload_id`) appears in the answer, the logs or the events, and once the fault is gone a
// retry succeeds with exactly one output object.

/// A plaintext of 8 chunks and a bit (gzip's overhead on noise): 9 upload requests, the
/// last one committing.
const UPLOAD_REQUESTS: usize = 9;
const TOPIC: &str = "projects/p/topics/sigma-events";

#[derive(Debug, Clone, Copy)]
enum Step {
    SourceRead,
    OutputStat,
    FirstChunk,
    MiddleChunk,
    LastChunk,
    FinalCommit,
}

#[derive(Debug, Clone, Copy)]
enum Failure {
    Unavailable,
    Cut,
}

impl Step {
    /// The requests of this step, as a fault that hits each of them from the first on.
    fn fault(self, failure: Failure) -> Fault {
        let fault = match (self, failure) {
            (Self::SourceRead | Self::OutputStat, Failure::Unavailable) => Fault::status(503),
            // The headers arrive, the body breaks off after a quarter of a MiB: every
            // resumed read breaks again, a dozen times in all.
            (Self::SourceRead, Failure::Cut) => Fault::cut_response_after(256 * 1024),
            (Self::OutputStat, Failure::Cut) => Fault::cut_request_after(0),
            (_, Failure::Unavailable) => Fault::status(503),
            // The commit is carried out and its answer lost: the ambiguous failure.
            (Self::FinalCommit, Failure::Cut) => Fault::cut_after_upstream(),
            (_, Failure::Cut) => Fault::cut_request_after(64 * 1024),
        };
        let fault = match self {
            Self::SourceRead => fault
                .method("GET")
                .path_contains(&format!("/b/{TRIGGER}/o/")),
            Self::OutputStat => fault
                .method("GET")
                .path_contains(&format!("/b/{OUTPUT}/o/")),
            Self::FirstChunk => chunk(fault, 1),
            Self::MiddleChunk => chunk(fault, UPLOAD_REQUESTS / 2),
            Self::LastChunk => chunk(fault, UPLOAD_REQUESTS - 1),
            Self::FinalCommit => chunk(fault, UPLOAD_REQUESTS),
        };
        fault.times(10_000)
    }
}

impl Step {
    /// A read cut after 256 KiB still moves forward: the client resumes it from where it
    /// broke off, again and again, and the decryption succeeds. Every other cell fails for
    /// good and must answer a retryable 503.
    fn expected_status(self, failure: Failure) -> u16 {
        match (self, failure) {
            (Self::SourceRead, Failure::Cut) => 200,
            _ => 503,
        }
    }
}

fn chunk(fault: Fault, nth: usize) -> Fault {
    fault.method("PUT").path_contains("upload_id").nth(nth)
}

/// Log lines of every test in this binary, to search for what must never be logged.
fn captured_logs() -> &'static std::sync::Mutex<Vec<u8>> {
    static LOGS: std::sync::OnceLock<std::sync::Mutex<Vec<u8>>> = std::sync::OnceLock::new();
    LOGS.get_or_init(|| {
        struct Capture;
        impl std::io::Write for Capture {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                captured_logs().lock().unwrap().extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_writer(|| Capture)
            .try_init()
            .ok();
        std::sync::Mutex::new(Vec::new())
    })
}

async fn cell(step: Step, failure: Failure) {
    captured_logs();
    let key = Key::generate();
    let mut config = chunked(&key);
    // A chunk that gets nowhere for this long fails the upload (60 s in production).
    config.upload.chunk_retry_limit = Duration::from_secs(2);
    let pubsub = sigma_fakes::pubsub::FakePubsub::start(&[TOPIC])
        .await
        .unwrap();
    let events = Events::connect(Some(TOPIC.parse().unwrap()), Some(pubsub.emulator_host()))
        .await
        .unwrap();
    let gcs = FakeGcs::start(&[TRIGGER, OUTPUT]).await.unwrap();
    let proxy = FaultProxy::start(&gcs.endpoint).await.unwrap();
    let service = Service::start_via(gcs, &proxy.endpoint, config, events).await;
    let plaintext = gzip(&noise(8 * CHUNK));
    assert_eq!(plaintext.len().div_ceil(CHUNK), UPLOAD_REQUESTS);
    service.upload(token(&key, &plaintext)).await;
    proxy.inject(step.fault(failure));

    let (status, body) = service.decrypt(SOURCE_NAME).await;

    let what = format!("{step:?} x {failure:?}");
    assert!(
        proxy.fired() > 0,
        "{what}: the fault never hit: {:#?}",
        proxy.requests()
    );
    assert_eq!(status, step.expected_status(failure), "{what}: {body}");
    if status != 200 {
        assert_eq!(body["error"]["retryable"], true, "{what}: {body}");
    }
    assert!(!body.to_string().contains("upload_id"), "{what}: {body}");
    // Nothing partial: whatever is visible is the whole, verified plaintext.
    for name in service.output_names().await {
        assert_eq!(name, OUTPUT_NAME, "{what}");
        assert!(
            service.gcs.get(OUTPUT, &name).await.unwrap().unwrap() == plaintext,
            "{what}: a partial output is visible"
        );
    }

    proxy.clear();
    let (status, retried) = service.decrypt(SOURCE_NAME).await;

    assert_eq!(status, 200, "{what}: {retried}");
    assert_eq!(service.output_names().await, vec![OUTPUT_NAME], "{what}");
    assert!(service.gcs.get(OUTPUT, OUTPUT_NAME).await.unwrap().unwrap() == plaintext);
    let published = pubsub.wait_for(1).await;
    for message in &published {
        let text = String::from_utf8_lossy(&message.data);
        assert!(!text.contains("upload_id"), "{what}: {text}");
    }
    let logs = String::from_utf8_lossy(&captured_logs().lock().unwrap()).into_owned();
    assert!(
        !logs.contains("upload_id"),
        "{what}: a session URL was logged"
    );
}

macro_rules! matrix {
    ($($name:ident: $step:ident x $failure:ident;)*) => {
        $(
            #[tokio::test]
            async fn $name() {
                cell(Step::$step, Failure::$failure).await;
            }
        )*
    };
}

matrix! {
    a_source_read_503_is_retryable_and_leaves_nothing: SourceRead x Unavailable;
    a_source_read_cut_is_retryable_and_leaves_nothing: SourceRead x Cut;
    an_output_stat_503_is_retryable_and_leaves_nothing: OutputStat x Unavailable;
    an_output_stat_cut_is_retryable_and_leaves_nothing: OutputStat x Cut;
    a_first_chunk_503_is_retryable_and_leaves_nothing: FirstChunk x Unavailable;
    a_first_chunk_cut_is_retryable_and_leaves_nothing: FirstChunk x Cut;
    a_middle_chunk_503_is_retryable_and_leaves_nothing: MiddleChunk x Unavailable;
    a_middle_chunk_cut_is_retryable_and_leaves_nothing: MiddleChunk x Cut;
    a_last_chunk_503_is_retryable_and_leaves_nothing: LastChunk x Unavailable;
    a_last_chunk_cut_is_retryable_and_leaves_nothing: LastChunk x Cut;
    a_final_commit_503_is_retryable_and_leaves_nothing: FinalCommit x Unavailable;
    a_final_commit_answer_lost_is_retryable_and_leaves_one_output: FinalCommit x Cut;
}
