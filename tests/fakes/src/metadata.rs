//! A fake GCE metadata server: what `google-cloud-auth` asks on Cloud Run, answered locally.
//!
//! Point the official credentials at it with `GCE_METADATA_HOST=<host()>` (process-wide)
//! or `mds::Builder::default().with_endpoint(<endpoint()>)` (per client, for parallel
//! tests). Like the real server it refuses requests without `Metadata-Flavor: Google`, and
//! it counts token requests so tests can see that tokens are cached.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;

pub const TOKEN_PATH: &str = "/computeMetadata/v1/instance/service-accounts/default/token";
pub const PROJECT_PATH: &str = "/computeMetadata/v1/project/project-id";

#[derive(Debug)]
struct Inner {
    token: String,
    project_id: String,
    token_requests: usize,
}

/// Programmable state, shared by the server and its owner.
#[derive(Debug, Clone)]
pub struct Handle(Arc<Mutex<Inner>>);

impl Handle {
    pub fn new(token: &str, project_id: &str) -> Self {
        Self(Arc::new(Mutex::new(Inner {
            token: token.to_owned(),
            project_id: project_id.to_owned(),
            token_requests: 0,
        })))
    }

    pub fn token(&self) -> String {
        self.0.lock().unwrap().token.clone()
    }

    pub fn project_id(&self) -> String {
        self.0.lock().unwrap().project_id.clone()
    }

    pub fn token_requests(&self) -> usize {
        self.0.lock().unwrap().token_requests
    }
}

pub fn router(handle: Handle) -> Router {
    Router::new()
        .route(TOKEN_PATH, get(token))
        .route(PROJECT_PATH, get(project_id))
        .fallback(|| async { (StatusCode::NOT_FOUND, "Not Found") })
        .with_state(handle)
}

/// The real server refuses requests without `Metadata-Flavor: Google`.
fn flavored(headers: &HeaderMap) -> bool {
    headers.get("metadata-flavor").and_then(|v| v.to_str().ok()) == Some("Google")
}

fn unflavored() -> Response {
    (
        StatusCode::FORBIDDEN,
        "Missing required header: Metadata-Flavor: Google",
    )
        .into_response()
}

async fn token(State(handle): State<Handle>, headers: HeaderMap) -> Response {
    if !flavored(&headers) {
        return unflavored();
    }
    let mut inner = handle.0.lock().unwrap();
    inner.token_requests += 1;
    axum::Json(serde_json::json!({
        "access_token": inner.token,
        "expires_in": 3599,
        "token_type": "Bearer",
    }))
    .into_response()
}

async fn project_id(State(handle): State<Handle>, headers: HeaderMap) -> Response {
    if !flavored(&headers) {
        return unflavored();
    }
    handle.project_id().into_response()
}

/// Serves on `listener` until the process ends; for running the fake as its own process.
pub async fn serve(listener: TcpListener, handle: Handle) -> std::io::Result<()> {
    axum::serve(listener, router(handle)).await
}

/// A server on a random loopback port, for tests.
pub struct FakeMetadata {
    pub addr: SocketAddr,
    pub handle: Handle,
}

impl FakeMetadata {
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_with("fake-metadata-token", "demo-project").await
    }

    pub async fn start_with(token: &str, project_id: &str) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let handle = Handle::new(token, project_id);
        tokio::spawn(serve(listener, handle.clone()));
        Ok(Self { addr, handle })
    }

    /// `127.0.0.1:PORT`, the value for `GCE_METADATA_HOST`.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// `http://127.0.0.1:PORT`, for `mds::Builder::with_endpoint`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }
}
