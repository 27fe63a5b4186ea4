//! The fault matrix of `/invoke` (issue 11 §1): each step that talks to Google — compile
//! (`compilationResults.create`), create (`workflowInvocations.create`), the schedule write,
//! the claim write and the record write (Cloud Storage, the state bucket on
//! fake-gcs-server) — broken each way
//! a network breaks it: a 503, a connection cut before the server saw the request, and a
//! connection cut after the server carried it out (the ambiguous failure).
//!
//! For every cell: the first answer has the right status and `retryable`; no secret appears
//! in any answer, log line or event; and a retry afterwards succeeds with exactly one
//! invocation in Dataform, one record, and one `invoked` event.

use crate::common;

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use common::{REPOSITORY, Service, api_config, assert_refused, sample_fake, storage};
use serde_json::{Value, json};
use sigma_dataform::Invoker;
use sigma_dataform::config::Config;
use sigma_dataform::idempotency::{Ledger, Record, record_name};
use sigma_fakes::dataform::FakeDataform;
use sigma_fakes::faults::{Break, Fault, FaultProxy};
use sigma_fakes::gcs::FakeGcs;
use sigma_fakes::pubsub::FakePubsub;
use sigma_shared::events::Events;

const STATE: &str = "sigma-state";
const TOPIC: &str = "projects/acme-dwh-prod/topics/sigma-events";
const KEY: &str = "company_output_bucket/data/20240115/lkp_fechas.gz/1705312800123456";
/// What must never reach an answer, a log line or an event: session URLs and credentials.
const SECRETS: [&str; 4] = ["upload_id", "Bearer", "access_token", "Authorization"];

/// Every log line of this test binary (all tests share the process's logger).
fn logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let sink = buffer.clone();
        sigma_shared::telemetry::init_with_writer(move || Capture(sink.clone()));
        buffer
    })
    .clone()
}

struct Capture(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn assert_no_secret(what: &str, text: &str) {
    for secret in SECRETS {
        assert!(!text.contains(secret), "{secret} in {what}: {text}");
    }
}

/// sigma-dataform with Dataform and Cloud Storage each behind a fault proxy, and events.
struct Stack {
    gcs: FakeGcs,
    storage_proxy: FaultProxy,
    fake: FakeDataform,
    api_proxy: FaultProxy,
    pubsub: FakePubsub,
    service: Service,
}

impl Stack {
    async fn start() -> Self {
        logs();
        let gcs = FakeGcs::start(&[STATE]).await.unwrap();
        let storage_proxy = FaultProxy::start(&gcs.endpoint).await.unwrap();
        let fake = sample_fake().await;
        let api_proxy = FaultProxy::start(&fake.endpoint).await.unwrap();
        let pubsub = FakePubsub::start(&[TOPIC]).await.unwrap();
        let events = Events::connect(Some(TOPIC.parse().unwrap()), Some(pubsub.emulator_host()))
            .await
            .unwrap();
        let config = Config {
            // A failed compile is retried after this: the matrix retries at once.
            retry: Duration::from_millis(20),
            ..api_config(&api_proxy.endpoint)
        };
        let ledger = Ledger::Gcs {
            client: Box::new(storage(&storage_proxy.endpoint).await),
            bucket: STATE.parse().unwrap(),
        };
        let invoker = Invoker::new(config)
            .await
            .unwrap()
            .with_ledger(ledger)
            .with_events(events);
        let service = Service::serve(invoker).await;
        Self {
            gcs,
            storage_proxy,
            fake,
            api_proxy,
            pubsub,
            service,
        }
    }

    async fn invoke(&self) -> (u16, Value) {
        let answer = self
            .service
            .invoke(json!({"table": "lkp_fechas", "idempotency_key": KEY, "actions_sample": 5}))
            .await;
        assert_no_secret("the answer", &answer.1.to_string());
        answer
    }

    async fn record(&self) -> Record {
        let bytes = self
            .gcs
            .get(STATE, &record_name(KEY))
            .await
            .unwrap()
            .expect("the record exists");
        serde_json::from_slice(&bytes).unwrap()
    }

    /// Exactly one invocation, one record naming it, one `invoked` event; no secret in any
    /// event or log line.
    async fn assert_exactly_once(&self, invocation: &Value) {
        let created = self.fake.handle.created_invocations();
        assert_eq!(created.len(), 1, "invocations created: {created:?}");
        let records: Vec<String> = self
            .gcs
            .list(STATE)
            .await
            .unwrap()
            .into_iter()
            .map(|object| object.name)
            .filter(|name| name.starts_with("dataform/invocations/"))
            .collect();
        assert_eq!(records.len(), 1, "{records:?}");
        match self.record().await {
            Record::Created {
                invocation: recorded,
                ..
            } => {
                assert_eq!(json!(recorded), *invocation)
            }
            other => panic!("the record is {other:?}"),
        }
        let events = self.pubsub.wait_for(1).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let events = if events.len() == 1 {
            self.pubsub.messages()
        } else {
            events
        };
        let types: Vec<&str> = events
            .iter()
            .map(|m| m.attributes["event_type"].as_str())
            .collect();
        assert_eq!(types, ["sigma.dataform.invoked"]);
        for event in &events {
            assert_no_secret("an event", &String::from_utf8_lossy(&event.data));
        }
        assert_no_secret(
            "the logs",
            &String::from_utf8_lossy(&logs().lock().unwrap()),
        );
    }
}

#[derive(Debug, Clone, Copy)]
enum Step {
    Compile,
    Create,
    ScheduleWrite,
    ClaimWrite,
    RecordWrite,
}

/// What the first request must answer: `None` for 200, else the status and code.
fn expected(step: Step, how: Break) -> Option<(u16, &'static str)> {
    match (step, how) {
        (Step::Compile | Step::Create, _) => Some((503, "dataform_unavailable")),
        // Record writes carry a generation precondition, so the storage client retries
        // them itself, and a write whose answer was lost is recognised when read back.
        (Step::ScheduleWrite | Step::ClaimWrite | Step::RecordWrite, _) => None,
    }
}

async fn cell(step: Step, how: Break) {
    let stack = Stack::start().await;
    let fault = how.fault().method("POST");
    let upload = format!("/upload/storage/v1/b/{STATE}/o");
    match step {
        Step::Compile => stack
            .api_proxy
            .inject(fault.path_contains("/compilationResults")),
        Step::Create => stack
            .api_proxy
            .inject(fault.path_contains("/workflowInvocations")),
        // The load takes its turn in the schedule, then claims its key, then records the
        // invocation.
        Step::ScheduleWrite => stack
            .storage_proxy
            .inject(fault.path_contains(&upload).nth(1)),
        Step::ClaimWrite => stack
            .storage_proxy
            .inject(fault.path_contains(&upload).nth(2)),
        Step::RecordWrite => stack
            .storage_proxy
            .inject(fault.path_contains(&upload).nth(3)),
    }
    let first = stack.invoke().await;
    let fired = stack.api_proxy.fired() + stack.storage_proxy.fired();
    assert_eq!(
        fired,
        1,
        "{step:?} x {how:?}: the fault must fire: {:?} {:?}",
        stack.api_proxy.requests(),
        stack.storage_proxy.requests()
    );
    match expected(step, how) {
        Some((status, code)) => assert_refused(&first, status, code),
        None => assert_eq!(first.0, 200, "{step:?} x {how:?}: {}", first.1),
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (status, retried) = stack.invoke().await;
    assert_eq!(status, 200, "{step:?} x {how:?}: the retry: {retried}");
    if first.0 == 200 {
        assert_eq!(retried["invocation"], first.1["invocation"]);
        assert_eq!(retried["replayed"], true);
    }
    assert_eq!(retried["count"], 16);
    stack.assert_exactly_once(&retried["invocation"]).await;
}

#[tokio::test]
async fn compile_answered_503() {
    cell(Step::Compile, Break::Status503).await;
}

#[tokio::test]
async fn compile_cut_before_dataform_saw_it() {
    cell(Step::Compile, Break::CutRequest).await;
}

#[tokio::test]
async fn compile_cut_after_dataform_carried_it_out() {
    cell(Step::Compile, Break::CutAfterUpstream).await;
}

#[tokio::test]
async fn create_answered_503() {
    cell(Step::Create, Break::Status503).await;
}

#[tokio::test]
async fn create_cut_before_dataform_saw_it() {
    cell(Step::Create, Break::CutRequest).await;
}

/// Issue 11 §2.2: the create happened, its answer was lost; the retry finds the invocation
/// (`workflowInvocations.list`, same compilation, same targets) and adopts it.
#[tokio::test]
async fn create_cut_after_dataform_carried_it_out_is_adopted_not_repeated() {
    cell(Step::Create, Break::CutAfterUpstream).await;
}

#[tokio::test]
async fn schedule_write_answered_503() {
    cell(Step::ScheduleWrite, Break::Status503).await;
}

#[tokio::test]
async fn schedule_write_cut_before_storage_saw_it() {
    cell(Step::ScheduleWrite, Break::CutRequest).await;
}

/// The schedule was written, its answer lost: the retry reads it back and finds the load
/// already in it, and never queues it twice.
#[tokio::test]
async fn schedule_write_cut_after_storage_carried_it_out() {
    cell(Step::ScheduleWrite, Break::CutAfterUpstream).await;
}

#[tokio::test]
async fn claim_write_answered_503() {
    cell(Step::ClaimWrite, Break::Status503).await;
}

#[tokio::test]
async fn claim_write_cut_before_storage_saw_it() {
    cell(Step::ClaimWrite, Break::CutRequest).await;
}

#[tokio::test]
async fn claim_write_cut_after_storage_carried_it_out() {
    cell(Step::ClaimWrite, Break::CutAfterUpstream).await;
}

#[tokio::test]
async fn record_write_answered_503() {
    cell(Step::RecordWrite, Break::Status503).await;
}

#[tokio::test]
async fn record_write_cut_before_storage_saw_it() {
    cell(Step::RecordWrite, Break::CutRequest).await;
}

#[tokio::test]
async fn record_write_cut_after_storage_carried_it_out() {
    cell(Step::RecordWrite, Break::CutAfterUpstream).await;
}

/// The ambiguous create of issue 11 §2.2, without a key of the caller's own and with the
/// retry arriving through another instance: the record in the state bucket carries the
/// attempt, so the other instance searches before creating.
#[tokio::test]
async fn an_ambiguous_create_is_found_by_another_instance_and_never_repeated() {
    let stack = Stack::start().await;
    stack.api_proxy.inject(
        Fault::cut_after_upstream()
            .method("POST")
            .path_contains("/workflowInvocations"),
    );
    let request = json!({"bucket": "out", "name": "data/x/lkp_fechas.gz", "generation": "7"});
    assert_refused(
        &stack.service.invoke(request.clone()).await,
        503,
        "dataform_unavailable",
    );
    assert_eq!(
        stack.fake.handle.created_invocations().len(),
        1,
        "Dataform did create it"
    );

    let other = Invoker::new(api_config(&stack.fake.endpoint))
        .await
        .unwrap()
        .with_ledger(Ledger::Gcs {
            client: Box::new(storage(&stack.gcs.endpoint).await),
            bucket: STATE.parse().unwrap(),
        });
    let other = Service::serve(other).await;
    let (status, adopted) = other.invoke(request).await;
    assert_eq!(status, 200, "{adopted}");
    assert_eq!(adopted["replayed"], true);
    assert!(
        adopted["invocation"]
            .as_str()
            .unwrap()
            .starts_with(REPOSITORY)
    );
    assert_eq!(stack.fake.handle.created_invocations().len(), 1);
}
