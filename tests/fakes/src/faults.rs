//! A fault-injecting HTTP proxy for tests: it sits between a service and fake-gcs-server
//! or a fake Google API and breaks chosen requests the ways networks and Google break them.
//!
//! Exactly-once claims are only as good as the faults they were tested under, and the
//! interesting faults are the ambiguous ones: a request the server carried out but whose
//! answer never arrived, an upload chunk cut in half, a 503 on the last of many chunks. The
//! emulators never fail on their own, so this proxy makes them fail on cue, per request,
//! matched by method and path, and records what it saw so tests can assert on the traffic.
//!
//! Resumable uploads answer with a session URL in `Location`; the proxy rewrites it to point
//! back at itself, so every chunk of an upload goes through it too. It also answers an
//! upload's status query (`PUT` with `Content-Range: bytes */*`, which the client sends to
//! resume after a failed chunk) the way Cloud Storage does, from what upstream confirmed:
//! fake-gcs-server instead finalizes the partial object, which would make a correct client
//! look broken.

use std::collections::HashMap;
use std::convert::Infallible;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{CONTENT_RANGE, CONTENT_TYPE, HeaderValue, RANGE};
use hyper::{Request, Response};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type ProxyBody = BoxBody<Bytes, BoxError>;

/// What the proxy does to a matching request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Answer this status with a Google-style JSON error; the request never reaches upstream.
    Status(u16),
    /// Wait, then forward as usual.
    Delay(Duration),
    /// Read this many bytes of the request body, then drop the connection; upstream never
    /// sees the request.
    CutRequestAfter(usize),
    /// Forward, then drop the connection after this many bytes of the response body.
    CutResponseAfter(usize),
    /// Forward the whole request and let upstream carry it out, then drop the connection
    /// without answering: the caller cannot know whether it happened.
    CutAfterUpstream,
}

/// The three ways a network breaks one call, the columns of the fault matrix: the retry
/// that follows must end in exactly one outcome after each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Break {
    /// The server answers 503: it did nothing.
    Status503,
    /// The connection drops while the request is sent: the server never sees it.
    CutRequest,
    /// The server carries the request out; its answer never arrives (the ambiguous case).
    CutAfterUpstream,
}

impl Break {
    /// The fault that breaks a call this way, matching every request until narrowed.
    pub fn fault(self) -> Fault {
        match self {
            Self::Status503 => Fault::status(503),
            Self::CutRequest => Fault::cut_request_after(8),
            Self::CutAfterUpstream => Fault::cut_after_upstream(),
        }
    }
}

/// One fault: which requests it matches, which of them it hits, and what it does.
#[derive(Debug, Clone)]
pub struct Fault {
    action: Action,
    method: Option<String>,
    path_contains: Vec<String>,
    nth: usize,
    times: usize,
    rpc_status: Option<String>,
}

impl Fault {
    fn new(action: Action) -> Self {
        Self {
            action,
            rpc_status: None,
            method: None,
            path_contains: Vec::new(),
            nth: 1,
            times: 1,
        }
    }

    pub fn status(status: u16) -> Self {
        Self::new(Action::Status(status))
    }

    pub fn delay(delay: Duration) -> Self {
        Self::new(Action::Delay(delay))
    }

    pub fn cut_request_after(bytes: usize) -> Self {
        Self::new(Action::CutRequestAfter(bytes))
    }

    pub fn cut_response_after(bytes: usize) -> Self {
        Self::new(Action::CutResponseAfter(bytes))
    }

    pub fn cut_after_upstream() -> Self {
        Self::new(Action::CutAfterUpstream)
    }

    /// Only requests with this method (case-insensitive).
    pub fn method(mut self, method: &str) -> Self {
        self.method = Some(method.to_ascii_uppercase());
        self
    }

    /// Only requests whose path and query contain `needle`; several calls must all match.
    pub fn path_contains(mut self, needle: &str) -> Self {
        self.path_contains.push(needle.to_owned());
        self
    }

    /// Hit the `nth` matching request (1-based) rather than the first.
    pub fn nth(mut self, nth: usize) -> Self {
        self.nth = nth.max(1);
        self
    }

    /// Hit this many matching requests in a row, starting at the `nth`.
    pub fn times(mut self, times: usize) -> Self {
        self.times = times;
        self
    }

    /// The `status` of an injected error's body (`ABORTED`, `RESOURCE_EXHAUSTED`...), for
    /// APIs whose meaning is in the RPC code rather than the HTTP status. By default it is
    /// the code Google pairs with the HTTP status; `""` leaves it out, as Cloud Storage's
    /// JSON API does.
    pub fn rpc_status(mut self, status: &str) -> Self {
        self.rpc_status = Some(status.to_owned());
        self
    }

    fn matches(&self, method: &str, path_and_query: &str) -> bool {
        self.method.as_deref().is_none_or(|m| m == method)
            && self
                .path_contains
                .iter()
                .all(|needle| path_and_query.contains(needle.as_str()))
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.action)?;
        if let Some(method) = &self.method {
            write!(f, " on {method}")?;
        }
        for needle in &self.path_contains {
            write!(f, " ~{needle}")?;
        }
        write!(f, " #{}", self.nth)
    }
}

/// A request the proxy saw, and what became of it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path_and_query: String,
    /// The status the caller received; `None` when the connection was cut before an answer.
    pub status: Option<u16>,
    /// The fault that hit this request, if any.
    pub fault: Option<String>,
}

struct Armed {
    fault: Fault,
    matched: usize,
    fired: usize,
}

/// What Cloud Storage would say about a resumable upload session.
#[derive(Clone)]
enum Session {
    /// Bytes upstream confirmed so far (its last `308` answer's `Range`).
    Persisted(u64),
    /// Upstream committed the object: the answer, to repeat to status queries.
    Finalized {
        status: u16,
        content_type: Option<HeaderValue>,
        body: Bytes,
    },
}

struct Inner {
    upstream: String,
    endpoint: String,
    client: reqwest::Client,
    faults: Mutex<Vec<Armed>>,
    seen: Mutex<Vec<Seen>>,
    sessions: Mutex<HashMap<String, Session>>,
}

pub struct FaultProxy {
    /// `http://127.0.0.1:PORT`: use it wherever the upstream's endpoint would go.
    pub endpoint: String,
    inner: Arc<Inner>,
    server: JoinHandle<()>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl FaultProxy {
    /// Starts a proxy on a free loopback port forwarding to `upstream` (`http://host[:port]`).
    pub async fn start(upstream: &str) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let endpoint = format!("http://{}", listener.local_addr()?);
        let inner = Arc::new(Inner {
            upstream: upstream.trim_end_matches('/').to_owned(),
            endpoint: endpoint.clone(),
            client: reqwest::Client::builder()
                .no_proxy()
                .redirect(reqwest::redirect::Policy::none())
                .build()?,
            faults: Mutex::new(Vec::new()),
            seen: Mutex::new(Vec::new()),
            sessions: Mutex::new(HashMap::new()),
        });
        let server = tokio::spawn(serve(listener, inner.clone()));
        Ok(Self {
            endpoint,
            inner,
            server,
        })
    }

    pub fn inject(&self, fault: Fault) {
        self.inner
            .faults
            .lock()
            .expect("fault list poisoned")
            .push(Armed {
                fault,
                matched: 0,
                fired: 0,
            });
    }

    /// Removes every fault; requests are forwarded untouched from now on.
    pub fn clear(&self) {
        self.inner
            .faults
            .lock()
            .expect("fault list poisoned")
            .clear();
    }

    /// How many times injected faults have hit so far.
    pub fn fired(&self) -> usize {
        self.requests().iter().filter(|s| s.fault.is_some()).count()
    }

    pub fn requests(&self) -> Vec<Seen> {
        self.inner
            .seen
            .lock()
            .expect("request log poisoned")
            .clone()
    }
}

async fn serve(listener: TcpListener, inner: Arc<Inner>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let inner = inner.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let inner = inner.clone();
                async move { inner.handle(request).await }
            });
            // A cut is the service returning an error: hyper then drops the connection
            // without writing an answer, which is what the caller must survive.
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
}

#[derive(Debug, thiserror::Error)]
#[error("connection cut by the fault proxy")]
struct Cut;

impl Inner {
    fn arm(&self, method: &str, path_and_query: &str) -> Option<Fault> {
        let mut faults = self.faults.lock().expect("fault list poisoned");
        for armed in faults.iter_mut() {
            if !armed.fault.matches(method, path_and_query) {
                continue;
            }
            armed.matched += 1;
            if armed.matched >= armed.fault.nth && armed.fired < armed.fault.times {
                armed.fired += 1;
                return Some(armed.fault.clone());
            }
        }
        None
    }

    fn record(
        &self,
        method: &str,
        path_and_query: &str,
        status: Option<u16>,
        fault: Option<&Fault>,
    ) {
        self.seen.lock().expect("request log poisoned").push(Seen {
            method: method.to_owned(),
            path_and_query: path_and_query.to_owned(),
            status,
            fault: fault.map(ToString::to_string),
        });
    }

    async fn handle(&self, request: Request<Incoming>) -> Result<Response<ProxyBody>, Cut> {
        let method = request.method().as_str().to_owned();
        let path_and_query = request
            .uri()
            .path_and_query()
            .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned());
        let fault = self.arm(&method, &path_and_query);
        let (parts, body) = request.into_parts();

        let body = match fault.as_ref().map(|f| &f.action) {
            Some(Action::CutRequestAfter(limit)) => {
                read_up_to(body, *limit).await;
                self.record(&method, &path_and_query, None, fault.as_ref());
                return Err(Cut);
            }
            _ => match body.collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(_) => {
                    self.record(&method, &path_and_query, None, fault.as_ref());
                    return Err(Cut);
                }
            },
        };
        match fault.as_ref().map(|f| &f.action) {
            Some(Action::Status(status)) => {
                let rpc_status = fault.as_ref().and_then(|f| f.rpc_status.as_deref());
                self.record(&method, &path_and_query, Some(*status), fault.as_ref());
                return Ok(google_error(*status, rpc_status));
            }
            Some(Action::Delay(delay)) => tokio::time::sleep(*delay).await,
            _ => {}
        }
        let session = (method == "PUT")
            .then(|| upload_id(&path_and_query))
            .flatten();
        if let Some(id) = &session
            && body.is_empty()
            && is_status_query(&parts.headers)
            && let Some(answer) = self.session_status(id)
        {
            self.record(
                &method,
                &path_and_query,
                Some(answer.status().as_u16()),
                fault.as_ref(),
            );
            return Ok(answer);
        }

        let mut forward = self
            .client
            .request(
                parts.method.clone(),
                format!("{}{path_and_query}", self.upstream),
            )
            .body(body);
        for (name, value) in &parts.headers {
            if name != hyper::header::HOST && name != hyper::header::CONTENT_LENGTH {
                forward = forward.header(name, value);
            }
        }
        let upstream = match forward.send().await {
            Ok(response) => response,
            Err(_) => {
                self.record(&method, &path_and_query, Some(502), fault.as_ref());
                return Ok(google_error(502, None));
            }
        };
        let status = upstream.status().as_u16();
        if matches!(
            fault.as_ref().map(|f| &f.action),
            Some(Action::CutAfterUpstream)
        ) {
            let _ = upstream.bytes().await;
            self.record(&method, &path_and_query, None, fault.as_ref());
            return Err(Cut);
        }
        let mut response = Response::builder().status(status);
        for (name, value) in upstream.headers() {
            if name == hyper::header::TRANSFER_ENCODING || name == hyper::header::CONNECTION {
                continue;
            }
            if name == hyper::header::LOCATION
                && let Ok(location) = value.to_str()
            {
                response =
                    response.header(name, location.replacen(&self.upstream, &self.endpoint, 1));
                continue;
            }
            response = response.header(name, value);
        }
        let limit = match fault.as_ref().map(|f| &f.action) {
            Some(Action::CutResponseAfter(limit)) => Some(*limit),
            _ => None,
        };
        self.record(
            &method,
            &path_and_query,
            limit.is_none().then_some(status),
            fault.as_ref(),
        );
        let body = match &session {
            Some(id) => {
                let content_type = upstream.headers().get(CONTENT_TYPE).cloned();
                let persisted = persisted_bytes(upstream.headers());
                let Ok(bytes) = upstream.bytes().await else {
                    return Err(Cut);
                };
                self.remember(id, status, persisted, content_type, bytes.clone());
                bytes_body(bytes, limit)
            }
            None => stream_body(upstream, limit),
        };
        Ok(response
            .body(body)
            .expect("headers copied from a valid response"))
    }
}

impl Inner {
    fn remember(
        &self,
        id: &str,
        status: u16,
        persisted: u64,
        content_type: Option<HeaderValue>,
        body: Bytes,
    ) {
        let session = match status {
            308 => Session::Persisted(persisted),
            200 | 201 => Session::Finalized {
                status,
                content_type,
                body,
            },
            _ => return,
        };
        self.sessions
            .lock()
            .expect("session table poisoned")
            .insert(id.to_owned(), session);
    }

    /// Cloud Storage's answer to a status query: `308` with the confirmed range, or the
    /// committed object again. `None` for a session the proxy has not seen answered.
    fn session_status(&self, id: &str) -> Option<Response<ProxyBody>> {
        let session = self
            .sessions
            .lock()
            .expect("session table poisoned")
            .get(id)
            .cloned()?;
        let response = match session {
            Session::Persisted(persisted) => {
                let mut response = Response::builder().status(308);
                if persisted > 0 {
                    response = response.header(RANGE, format!("bytes=0-{}", persisted - 1));
                }
                response.body(bytes_body(Bytes::new(), None))
            }
            Session::Finalized {
                status,
                content_type,
                body,
            } => {
                let mut response = Response::builder().status(status);
                if let Some(content_type) = content_type {
                    response = response.header(CONTENT_TYPE, content_type);
                }
                response.body(bytes_body(body, None))
            }
        };
        Some(response.expect("a session answer is valid"))
    }
}

/// The session id of a resumable upload request.
fn upload_id(path_and_query: &str) -> Option<String> {
    let (_, query) = path_and_query.split_once('?')?;
    query
        .split('&')
        .find_map(|pair| pair.strip_prefix("upload_id="))
        .map(str::to_owned)
}

/// A status query names no bytes: `Content-Range: bytes */TOTAL` or `bytes */*`.
fn is_status_query(headers: &hyper::HeaderMap) -> bool {
    headers
        .get(CONTENT_RANGE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|range| range.trim().starts_with("bytes */"))
}

/// What a `308` says was persisted: `Range: bytes=0-N` means N + 1 bytes, none means 0.
fn persisted_bytes(headers: &reqwest::header::HeaderMap) -> u64 {
    headers
        .get(RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|range| range.trim().strip_prefix("bytes=0-"))
        .and_then(|end| end.parse::<u64>().ok())
        .map_or(0, |end| end + 1)
}

/// A body already in memory, cut after `limit` bytes like [`stream_body`].
fn bytes_body(mut bytes: Bytes, limit: Option<usize>) -> ProxyBody {
    let Some(limit) = limit else {
        return BoxBody::new(Full::new(bytes).map_err(|never: Infallible| match never {}));
    };
    bytes.truncate(limit);
    let data = futures::stream::once(async move { Ok::<_, BoxError>(Frame::data(bytes)) });
    let cut = futures::stream::once(async {
        // As in `stream_body`: let what was allowed reach the wire before the cut.
        tokio::time::sleep(Duration::from_millis(50)).await;
        Err(Box::new(Cut) as BoxError)
    });
    BoxBody::new(StreamBody::new(data.chain(cut)))
}

/// Reads the request body until `limit` bytes arrived (or it ended), then gives up on it.
async fn read_up_to(mut body: Incoming, limit: usize) {
    let mut read = 0;
    while read < limit {
        match body.frame().await {
            Some(Ok(frame)) => read += frame.data_ref().map_or(0, Bytes::len),
            _ => return,
        }
    }
}

/// The upstream body as it arrives; with a limit, only that many bytes and then an error,
/// which makes hyper abort the connection mid-body.
fn stream_body(upstream: reqwest::Response, limit: Option<usize>) -> ProxyBody {
    struct State {
        upstream: reqwest::Response,
        left: Option<usize>,
        done: bool,
    }
    let state = State {
        upstream,
        left: limit,
        done: false,
    };
    let stream = futures::stream::unfold(state, |mut state| async move {
        if state.done {
            return None;
        }
        if state.left == Some(0) {
            // Let hyper put what was allowed on the wire before the cut, so the caller
            // sees a status, headers and a short body rather than nothing at all.
            tokio::time::sleep(Duration::from_millis(50)).await;
            state.done = true;
            return Some((Err(Box::new(Cut) as BoxError), state));
        }
        match state.upstream.chunk().await {
            Ok(Some(mut chunk)) => {
                if let Some(left) = state.left.as_mut() {
                    chunk.truncate(*left);
                    *left -= chunk.len();
                }
                Some((Ok(Frame::data(chunk)), state))
            }
            Ok(None) => None,
            Err(e) => {
                state.done = true;
                Some((Err(Box::new(e) as BoxError), state))
            }
        }
    });
    BoxBody::new(StreamBody::new(stream))
}

/// The error body Google's JSON APIs answer with, so clients classify it as they would the
/// real thing.
fn google_error(status: u16, rpc_status: Option<&str>) -> Response<ProxyBody> {
    let rpc_status = rpc_status.unwrap_or(match status {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        409 => "ABORTED",
        412 => "FAILED_PRECONDITION",
        429 => "RESOURCE_EXHAUSTED",
        500 => "INTERNAL",
        502 | 503 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        _ => "UNKNOWN",
    });
    let mut body = serde_json::json!({
        "error": {
            "code": status,
            "message": format!("injected by the fault proxy: {status}"),
            "errors": [{"message": "injected by the fault proxy", "domain": "global", "reason": "backendError"}],
        }
    });
    if !rpc_status.is_empty() {
        body["error"]["status"] = rpc_status.into();
    }
    Response::builder()
        .status(status)
        .header(CONTENT_TYPE, "application/json; charset=UTF-8")
        .body(BoxBody::new(
            Full::new(Bytes::from(body.to_string())).map_err(|never: Infallible| match never {}),
        ))
        .expect("a static response is valid")
}
