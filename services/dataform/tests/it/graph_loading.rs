//! Loading the graph under failure and load: a failed compilation is shared, not repeated by
//! every waiting request; the last good graph serves for a bounded time while refreshes
//! fail; building a graph never stalls the async threads.

use crate::common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{Service, api_config, assert_refused, generated, sample_fake};
use serde_json::json;
use sigma_dataform::Invoker;
use sigma_dataform::config::Config;
use sigma_fakes::dataform::FakeDataform;

fn broken() -> Vec<serde_json::Value> {
    vec![json!({"path": "definitions/x.sqlx", "message": "Could not resolve \"no_existe\""})]
}

#[tokio::test]
async fn a_failed_compilation_is_shared_by_the_waiting_requests_and_retried_after_a_backoff() {
    let fake = sample_fake().await;
    fake.handle.set_compilation_errors(broken());
    let service = Service::start(Config {
        retry: Duration::from_millis(400),
        ..api_config(&fake.endpoint)
    })
    .await;
    let answers =
        futures::future::join_all((0..8).map(|_| service.closure(json!({"table": "lkp_fechas"}))))
            .await;
    for answer in &answers {
        assert_refused(answer, 422, "compilation_failed");
    }
    assert_eq!(
        fake.handle.compile_calls(),
        1,
        "one compilation for all the waiters"
    );
    assert_refused(
        &service.closure(json!({"table": "lkp_fechas"})).await,
        422,
        "compilation_failed",
    );
    assert_eq!(
        fake.handle.compile_calls(),
        1,
        "none again within the backoff"
    );

    tokio::time::sleep(Duration::from_millis(500)).await;
    fake.handle.set_compilation_errors(vec![]);
    let (status, body) = service.closure(json!({"table": "lkp_fechas"})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        fake.handle.compile_calls(),
        2,
        "compiled again after the backoff"
    );
}

#[tokio::test]
async fn the_last_good_graph_serves_while_refreshes_fail_then_only_for_the_stale_time() {
    let fake = sample_fake().await;
    let service = Service::start(Config {
        ttl: Duration::from_millis(300),
        stale: Duration::from_millis(1200),
        retry: Duration::from_millis(100),
        ..api_config(&fake.endpoint)
    })
    .await;
    let loaded = Instant::now();
    let (status, good) = service.closure(json!({"table": "lkp_fechas"})).await;
    assert_eq!(status, 200, "{good}");
    fake.handle.set_compilation_errors(broken());

    tokio::time::sleep(Duration::from_millis(400)).await;
    let (status, stale) = service.closure(json!({"table": "lkp_fechas"})).await;
    assert_eq!((status, &stale), (200, &good), "the last good graph serves");
    assert_eq!(fake.handle.compile_calls(), 2, "the refresh was tried");

    tokio::time::sleep(Duration::from_millis(1700).saturating_sub(loaded.elapsed())).await;
    assert_refused(
        &service.closure(json!({"table": "lkp_fechas"})).await,
        422,
        "compilation_failed",
    );
}

/// A runtime with one thread: anything that blocks it for long shows as a late tick. The
/// fake runs on its own runtime, so only the service's work is measured.
#[test]
fn building_a_large_graph_never_stalls_the_async_threads() {
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async move {
            let fake = FakeDataform::start(&generated(100_000)).await.unwrap();
            fake.handle.set_page_size(1000);
            sender.send(fake.endpoint.clone()).unwrap();
            std::future::pending::<()>().await;
        });
    });
    let endpoint = receiver.recv().unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let invoker = Invoker::new(api_config(&endpoint)).await.unwrap();
        let done = Arc::new(AtomicBool::new(false));
        let worst = Arc::new(AtomicU64::new(0));
        let ticker = tokio::spawn({
            let (done, worst) = (done.clone(), worst.clone());
            async move {
                let mut last = Instant::now();
                while !done.load(Ordering::Relaxed) {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                    let gap = last.elapsed().as_millis() as u64;
                    worst.fetch_max(gap, Ordering::Relaxed);
                    last = Instant::now();
                }
            }
        });
        let started = Instant::now();
        let snapshot = invoker.source.current().await.unwrap();
        let took = started.elapsed();
        done.store(true, Ordering::Relaxed);
        ticker.await.unwrap();
        assert_eq!(snapshot.graph.len(), 100_001);
        let worst = worst.load(Ordering::Relaxed);
        eprintln!("loading took {took:?}; the longest stall of the async thread was {worst} ms");
        assert!(
            worst < 150,
            "the async thread stalled {worst} ms while a graph loaded in {took:?}"
        );
    });
}
