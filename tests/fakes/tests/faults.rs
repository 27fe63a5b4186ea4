//! The fault proxy itself: each fault does what it says, to the requests it matches and no
//! others, so the services' fault tests can trust what they inject.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::HeaderMap;
use axum::routing::{post, put};
use sigma_fakes::faults::{Fault, FaultProxy};

/// An upstream that counts the requests it carried out and answers with a 1 KiB body and a
/// `Location` pointing at itself, like a resumable upload's first answer.
struct Upstream {
    endpoint: String,
    carried_out: Arc<AtomicUsize>,
}

async fn upstream() -> Upstream {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let carried_out = Arc::new(AtomicUsize::new(0));
    let counter = carried_out.clone();
    let location = format!("{endpoint}/upload?upload_id=abc");
    let app = Router::new()
        .route(
            "/o",
            post(move |_body: axum::body::Bytes| {
                let counter = counter.clone();
                let location = location.clone();
                async move {
                    counter.fetch_add(1, Ordering::SeqCst);
                    let mut headers = HeaderMap::new();
                    headers.insert("location", location.parse().unwrap());
                    (headers, vec![b'x'; 1024])
                }
            }),
        )
        .route(
            "/upload",
            // Like fake-gcs-server: a chunk is confirmed with 308, but a status query (no
            // bytes) finalizes the object with 200, which Cloud Storage never does.
            put(|body: axum::body::Bytes| async move {
                if body.is_empty() {
                    (axum::http::StatusCode::OK, HeaderMap::new())
                } else {
                    let mut headers = HeaderMap::new();
                    headers.insert("range", "bytes=0-99".parse().unwrap());
                    (axum::http::StatusCode::PERMANENT_REDIRECT, headers)
                }
            }),
        );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Upstream {
        endpoint,
        carried_out,
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

#[tokio::test]
async fn untouched_requests_pass_through_and_locations_point_back_at_the_proxy() {
    let upstream = upstream().await;
    let proxy = FaultProxy::start(&upstream.endpoint).await.unwrap();
    let response = client()
        .post(format!("{}/o", proxy.endpoint))
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["location"],
        format!("{}/upload?upload_id=abc", proxy.endpoint).as_str()
    );
    assert_eq!(response.bytes().await.unwrap().len(), 1024);
    let seen = proxy.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].status, Some(200));
    assert!(seen[0].fault.is_none());
}

#[tokio::test]
async fn a_status_fault_answers_the_nth_match_in_googles_error_shape_without_forwarding() {
    let upstream = upstream().await;
    let proxy = FaultProxy::start(&upstream.endpoint).await.unwrap();
    proxy.inject(Fault::status(503).method("post").path_contains("/o").nth(2));
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let response = client()
            .post(format!("{}/o", proxy.endpoint))
            .send()
            .await
            .unwrap();
        statuses.push(response.status().as_u16());
        if response.status() == 503 {
            let body: serde_json::Value = response.json().await.unwrap();
            assert_eq!(body["error"]["status"], "UNAVAILABLE");
            assert_eq!(body["error"]["code"], 503);
        }
    }
    assert_eq!(statuses, [200, 503, 200]);
    assert_eq!(upstream.carried_out.load(Ordering::SeqCst), 2);
    assert_eq!(proxy.fired(), 1);
}

#[tokio::test]
async fn the_rpc_status_of_an_injected_error_can_be_chosen() {
    let upstream = upstream().await;
    let proxy = FaultProxy::start(&upstream.endpoint).await.unwrap();
    proxy.inject(Fault::status(409).rpc_status("ABORTED"));
    let body: serde_json::Value = client()
        .post(format!("{}/o", proxy.endpoint))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["error"]["status"], "ABORTED");
}

#[tokio::test]
async fn faults_match_only_their_method_and_path() {
    let upstream = upstream().await;
    let proxy = FaultProxy::start(&upstream.endpoint).await.unwrap();
    proxy.inject(Fault::status(500).method("PUT").times(5));
    let post = client()
        .post(format!("{}/o", proxy.endpoint))
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), 200);
    let put = client()
        .put(format!("{}/upload?upload_id=abc", proxy.endpoint))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 500);
}

#[tokio::test]
async fn a_request_cut_midway_never_reaches_upstream() {
    let upstream = upstream().await;
    let proxy = FaultProxy::start(&upstream.endpoint).await.unwrap();
    proxy.inject(Fault::cut_request_after(10));
    let result = client()
        .post(format!("{}/o", proxy.endpoint))
        .body(vec![0u8; 1 << 20])
        .send()
        .await;
    assert!(result.is_err(), "{result:?}");
    assert_eq!(upstream.carried_out.load(Ordering::SeqCst), 0);
    assert_eq!(proxy.requests()[0].status, None);
}

#[tokio::test]
async fn a_cut_after_upstream_carried_it_out_leaves_the_caller_without_an_answer() {
    let upstream = upstream().await;
    let proxy = FaultProxy::start(&upstream.endpoint).await.unwrap();
    proxy.inject(Fault::cut_after_upstream().path_contains("/o"));
    let result = client().post(format!("{}/o", proxy.endpoint)).send().await;
    assert!(result.is_err(), "{result:?}");
    assert_eq!(upstream.carried_out.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_response_cut_after_n_bytes_arrives_truncated() {
    let upstream = upstream().await;
    let proxy = FaultProxy::start(&upstream.endpoint).await.unwrap();
    proxy.inject(Fault::cut_response_after(100));
    let response = client()
        .post(format!("{}/o", proxy.endpoint))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.bytes().await.is_err());
    assert_eq!(upstream.carried_out.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_delay_holds_the_answer_back() {
    let upstream = upstream().await;
    let proxy = FaultProxy::start(&upstream.endpoint).await.unwrap();
    proxy.inject(Fault::delay(Duration::from_millis(300)));
    let started = Instant::now();
    let response = client()
        .post(format!("{}/o", proxy.endpoint))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(started.elapsed() >= Duration::from_millis(300));
}

#[tokio::test]
async fn cleared_faults_no_longer_fire() {
    let upstream = upstream().await;
    let proxy = FaultProxy::start(&upstream.endpoint).await.unwrap();
    proxy.inject(Fault::status(503).times(10));
    proxy.clear();
    let response = client()
        .post(format!("{}/o", proxy.endpoint))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn an_upload_status_query_is_answered_as_cloud_storage_does_without_finalizing() {
    let upstream = upstream().await;
    let proxy = FaultProxy::start(&upstream.endpoint).await.unwrap();
    let session = format!("{}/upload?upload_id=abc", proxy.endpoint);
    let chunk = client()
        .put(&session)
        .header("content-range", "bytes 0-99/*")
        .body(vec![1u8; 100])
        .send()
        .await
        .unwrap();
    assert_eq!(chunk.status(), 308);
    let status = client()
        .put(&session)
        .header("content-range", "bytes */*")
        .send()
        .await
        .unwrap();
    assert_eq!(
        status.status(),
        308,
        "the proxy must not let upstream finalize"
    );
    assert_eq!(status.headers()["range"], "bytes=0-99");
    assert_eq!(
        proxy.requests().len(),
        2,
        "both requests are recorded, the query was answered by the proxy"
    );
}
