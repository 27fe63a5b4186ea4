//! A fake Pub/Sub Publisher, speaking both of Google's wire formats on one port.
//!
//! The services publish through the official client, which speaks gRPC
//! (`google.pubsub.v1.Publisher/Publish`); Cloud Workflows' Pub/Sub connector speaks REST
//! (`POST /v1/projects/P/topics/T:publish`, base64 data). One HTTP/1 + HTTP/2 server answers
//! both, so a test or the local stack sees everything published in one place: in process
//! through [`FakePubsub::messages`], and from another process as JSON at
//! `GET /_fake/messages` (`DELETE` clears it).
//!
//! It refuses what Pub/Sub refuses (malformed topic names, unknown topics, empty requests,
//! empty messages, oversized or reserved attributes), with Google's status codes, and can be
//! told to fail the next calls (e.g. `PERMISSION_DENIED`, `UNAVAILABLE`).

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::future::{Ready, ready};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use bytes::Bytes;
use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::json;
use tokio::net::TcpListener;

/// The status codes [`FakePubsub::fail_next`] takes.
pub use tonic::Code;

/// Pub/Sub's limits on one `Publish` call.
const MAX_MESSAGES: usize = 1000;
const MAX_ATTRIBUTES: usize = 100;
const MAX_ATTRIBUTE_KEY: usize = 256;
const MAX_ATTRIBUTE_VALUE: usize = 1024;
const MAX_REQUEST_BYTES: usize = 10_000_000;

/// The `google.pubsub.v1` messages the Publish call uses, written by hand (same field numbers
/// as `pubsub.proto`) so no protoc is needed.
pub mod proto {
    use std::collections::HashMap;

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct PublishRequest {
        #[prost(string, tag = "1")]
        pub topic: String,
        #[prost(message, repeated, tag = "2")]
        pub messages: Vec<PubsubMessage>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct PubsubMessage {
        #[prost(bytes = "bytes", tag = "1")]
        pub data: bytes::Bytes,
        #[prost(map = "string, string", tag = "2")]
        pub attributes: HashMap<String, String>,
        #[prost(string, tag = "3")]
        pub message_id: String,
        #[prost(message, optional, tag = "4")]
        pub publish_time: Option<Timestamp>,
        #[prost(string, tag = "5")]
        pub ordering_key: String,
    }

    /// `google.protobuf.Timestamp`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Timestamp {
        #[prost(int64, tag = "1")]
        pub seconds: i64,
        #[prost(int32, tag = "2")]
        pub nanos: i32,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct PublishResponse {
        #[prost(string, repeated, tag = "1")]
        pub message_ids: Vec<String>,
    }
}

/// Which wire format a message arrived through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Via {
    Grpc,
    Rest,
}

/// A message the fake accepted. Over HTTP, `data` is shown as UTF-8 text (events are JSON).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Received {
    pub topic: String,
    pub message_id: String,
    #[serde(serialize_with = "as_text")]
    pub data: Bytes,
    pub attributes: BTreeMap<String, String>,
    pub via: Via,
}

impl Received {
    /// The data parsed as JSON.
    pub fn json(&self) -> serde_json::Result<serde_json::Value> {
        serde_json::from_slice(&self.data)
    }
}

fn as_text<S: Serializer>(data: &Bytes, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&String::from_utf8_lossy(data))
}

#[derive(Default)]
struct Shared {
    topics: HashSet<String>,
    received: Mutex<Vec<Received>>,
    last_id: AtomicU64,
    failures: Mutex<VecDeque<Code>>,
}

/// A message as either format carries it, before validation.
struct Incoming {
    data: Bytes,
    attributes: BTreeMap<String, String>,
    ordering_key: String,
}

/// A refusal in Google's terms, rendered as a gRPC status or a REST error body.
struct Rejection {
    code: Code,
    message: String,
}

impl Rejection {
    fn new(code: Code, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    fn invalid(message: impl Into<String>) -> Self {
        Self::new(Code::InvalidArgument, message)
    }
}

impl From<Rejection> for tonic::Status {
    fn from(rejection: Rejection) -> Self {
        tonic::Status::new(rejection.code, rejection.message)
    }
}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        let (status, name) = match self.code {
            Code::InvalidArgument => (StatusCode::BAD_REQUEST, "INVALID_ARGUMENT"),
            Code::NotFound => (StatusCode::NOT_FOUND, "NOT_FOUND"),
            Code::PermissionDenied => (StatusCode::FORBIDDEN, "PERMISSION_DENIED"),
            Code::Unauthenticated => (StatusCode::UNAUTHORIZED, "UNAUTHENTICATED"),
            Code::ResourceExhausted => (StatusCode::TOO_MANY_REQUESTS, "RESOURCE_EXHAUSTED"),
            Code::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE"),
            Code::DeadlineExceeded => (StatusCode::GATEWAY_TIMEOUT, "DEADLINE_EXCEEDED"),
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL"),
        };
        let body =
            json!({"error": {"code": status.as_u16(), "message": self.message, "status": name}});
        (status, axum::Json(body)).into_response()
    }
}

impl Shared {
    /// What both wire formats share: the injected failure, then Google's checks, then the
    /// record.
    fn publish(
        &self,
        topic: &str,
        messages: Vec<Incoming>,
        via: Via,
    ) -> Result<Vec<String>, Rejection> {
        if let Some(code) = self.failures.lock().unwrap().pop_front() {
            return Err(Rejection::new(code, format!("injected failure ({code:?})")));
        }
        if !valid_topic(topic) {
            return Err(Rejection::invalid(format!(
                "Invalid resource name given (name={topic})."
            )));
        }
        if !self.topics.contains(topic) {
            let short = topic.rsplit('/').next().unwrap_or(topic);
            return Err(Rejection::new(
                Code::NotFound,
                format!("Resource not found (resource={short})."),
            ));
        }
        check_messages(&messages)?;
        let mut received = self.received.lock().unwrap();
        let ids = messages
            .into_iter()
            .map(|message| {
                let message_id = (self.last_id.fetch_add(1, Ordering::Relaxed) + 1).to_string();
                received.push(Received {
                    topic: topic.to_owned(),
                    message_id: message_id.clone(),
                    data: message.data,
                    attributes: message.attributes,
                    via,
                });
                message_id
            })
            .collect();
        Ok(ids)
    }
}

fn check_messages(messages: &[Incoming]) -> Result<(), Rejection> {
    if messages.is_empty() {
        return Err(Rejection::invalid("The request contains no messages."));
    }
    if messages.len() > MAX_MESSAGES {
        return Err(Rejection::invalid(format!(
            "The number of messages in the request ({}) exceeds the limit ({MAX_MESSAGES}).",
            messages.len()
        )));
    }
    let size: usize = messages
        .iter()
        .map(|m| {
            m.data.len()
                + m.attributes
                    .iter()
                    .map(|(k, v)| k.len() + v.len())
                    .sum::<usize>()
        })
        .sum();
    if size > MAX_REQUEST_BYTES {
        return Err(Rejection::invalid(format!(
            "Request payload size ({size}) exceeds the limit."
        )));
    }
    if messages
        .iter()
        .any(|m| m.ordering_key != messages[0].ordering_key)
    {
        return Err(Rejection::invalid(
            "All messages in a request must have the same ordering key.",
        ));
    }
    for message in messages {
        if message.data.is_empty() && message.attributes.is_empty() {
            return Err(Rejection::invalid(
                "Some messages are empty: a message must contain non-empty data or at least one attribute.",
            ));
        }
        if message.attributes.len() > MAX_ATTRIBUTES {
            return Err(Rejection::invalid(format!(
                "A message has more than {MAX_ATTRIBUTES} attributes."
            )));
        }
        for (key, value) in &message.attributes {
            if key.is_empty() || key.len() > MAX_ATTRIBUTE_KEY || key.starts_with("goog") {
                return Err(Rejection::invalid(format!(
                    "Invalid attribute key: {key:?}."
                )));
            }
            if value.len() > MAX_ATTRIBUTE_VALUE {
                return Err(Rejection::invalid(format!(
                    "The value of attribute {key:?} exceeds {MAX_ATTRIBUTE_VALUE} bytes."
                )));
            }
        }
    }
    Ok(())
}

/// `projects/PROJECT/topics/TOPIC`, TOPIC as Pub/Sub allows it.
fn valid_topic(name: &str) -> bool {
    match name.split('/').collect::<Vec<_>>()[..] {
        ["projects", project, "topics", topic] => {
            !project.is_empty()
                && (3..=255).contains(&topic.len())
                && topic.starts_with(|c: char| c.is_ascii_alphabetic())
                && !topic.starts_with("goog")
                && topic
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.~+%".contains(c))
        }
        _ => false,
    }
}

/// A running fake; stops when dropped.
pub struct FakePubsub {
    /// `http://HOST:PORT`, the endpoint for a client or for Workflows connector calls.
    pub endpoint: String,
    address: SocketAddr,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl FakePubsub {
    /// Serves on a random loopback port, knowing `topics` (`projects/P/topics/T`).
    pub async fn start(topics: &[&str]) -> anyhow::Result<Self> {
        Self::serve(TcpListener::bind("127.0.0.1:0").await?, topics).await
    }

    /// Serves on `listener`, for a fakes process that others reach on a known address.
    pub async fn serve(listener: TcpListener, topics: &[&str]) -> anyhow::Result<Self> {
        let shared = Arc::new(Shared {
            topics: topics.iter().map(|t| (*t).to_owned()).collect(),
            ..Shared::default()
        });
        let address = listener.local_addr()?;
        let app = router(shared.clone());
        let server = tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(Self {
            endpoint: format!("http://{address}"),
            address,
            shared,
            server,
        })
    }

    /// `HOST:PORT`, the value for `PUBSUB_EMULATOR_HOST`.
    pub fn emulator_host(&self) -> String {
        self.address.to_string()
    }

    /// Everything accepted so far, in order.
    pub fn messages(&self) -> Vec<Received> {
        self.shared.received.lock().unwrap().clone()
    }

    /// The messages once at least `count` have arrived, or whatever arrived within five
    /// seconds: services publish in the background, after answering the request.
    pub async fn wait_for(&self, count: usize) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            let messages = self.messages();
            if messages.len() >= count || tokio::time::Instant::now() >= deadline {
                return messages;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// Makes the next `times` Publish calls (either format) fail with `code`.
    pub fn fail_next(&self, code: Code, times: usize) {
        self.shared
            .failures
            .lock()
            .unwrap()
            .extend(std::iter::repeat_n(code, times));
    }

    /// Runs until the server stops (an I/O error); for a process that only hosts fakes.
    pub async fn wait(mut self) -> anyhow::Result<()> {
        (&mut self.server).await??;
        Ok(())
    }
}

impl Drop for FakePubsub {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/google.pubsub.v1.Publisher/{method}", post(grpc))
        .route("/v1/projects/{project}/topics/{action}", post(rest_publish))
        .route("/_fake/messages", get(list).delete(clear))
        .fallback(|| async {
            Rejection::new(
                Code::NotFound,
                "The requested URL was not found on this server.",
            )
        })
        .with_state(shared)
}

async fn list(State(shared): State<Arc<Shared>>) -> Response {
    let messages = shared.received.lock().unwrap().clone();
    axum::Json(json!({ "messages": messages })).into_response()
}

async fn clear(State(shared): State<Arc<Shared>>) -> StatusCode {
    shared.received.lock().unwrap().clear();
    StatusCode::NO_CONTENT
}

/// The one unary call, served with tonic's codec machinery inside the axum router.
async fn grpc(
    State(shared): State<Arc<Shared>>,
    Path(method): Path<String>,
    request: Request,
) -> Response {
    if method != "Publish" {
        return tonic::Status::unimplemented(format!(
            "Method not found: google.pubsub.v1.Publisher/{method}"
        ))
        .into_http();
    }
    let codec = tonic_prost::ProstCodec::<proto::PublishResponse, proto::PublishRequest>::default();
    tonic::server::Grpc::new(codec)
        .max_decoding_message_size(MAX_REQUEST_BYTES + 64 * 1024)
        .unary(PublishCall(shared), request)
        .await
        .map(axum::body::Body::new)
}

struct PublishCall(Arc<Shared>);

impl tonic::server::UnaryService<proto::PublishRequest> for PublishCall {
    type Response = proto::PublishResponse;
    type Future = Ready<Result<tonic::Response<proto::PublishResponse>, tonic::Status>>;

    fn call(&mut self, request: tonic::Request<proto::PublishRequest>) -> Self::Future {
        let request = request.into_inner();
        let messages = request
            .messages
            .into_iter()
            .map(|m| Incoming {
                data: m.data,
                attributes: m.attributes.into_iter().collect(),
                ordering_key: m.ordering_key,
            })
            .collect();
        let result = self
            .0
            .publish(&request.topic, messages, Via::Grpc)
            .map(|message_ids| tonic::Response::new(proto::PublishResponse { message_ids }))
            .map_err(tonic::Status::from);
        ready(result)
    }
}

/// The REST `PublishRequest`; unknown fields are refused, as Google's JSON parser does.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RestPublishRequest {
    #[serde(default)]
    messages: Option<Vec<RestMessage>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RestMessage {
    #[serde(default)]
    data: Option<String>,
    #[serde(default)]
    attributes: Option<BTreeMap<String, String>>,
    /// Output-only: accepted and ignored, as Google does.
    #[serde(default, rename = "messageId")]
    _message_id: Option<IgnoredAny>,
    #[serde(default, rename = "publishTime")]
    _publish_time: Option<IgnoredAny>,
    #[serde(default)]
    ordering_key: Option<String>,
}

/// Proto3 JSON `bytes`: standard or URL-safe base64, padded or not.
const LENIENT: GeneralPurposeConfig =
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
const STANDARD: GeneralPurpose = GeneralPurpose::new(&base64::alphabet::STANDARD, LENIENT);
const URL_SAFE: GeneralPurpose = GeneralPurpose::new(&base64::alphabet::URL_SAFE, LENIENT);

async fn rest_publish(
    State(shared): State<Arc<Shared>>,
    Path((project, action)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let Some(topic) = action.strip_suffix(":publish") else {
        return Rejection::new(
            Code::NotFound,
            "The requested URL was not found on this server.",
        )
        .into_response();
    };
    let request: RestPublishRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(e) => {
            return Rejection::invalid(format!("Invalid JSON payload received. {e}"))
                .into_response();
        }
    };
    let mut messages = Vec::new();
    for (index, message) in request.messages.unwrap_or_default().into_iter().enumerate() {
        let encoded = message.data.unwrap_or_default();
        let Ok(data) = STANDARD
            .decode(&encoded)
            .or_else(|_| URL_SAFE.decode(&encoded))
        else {
            return Rejection::invalid(format!(
                "Invalid value at 'messages[{index}].data' (TYPE_BYTES), Base64 decoding failed for {encoded:?}"
            ))
            .into_response();
        };
        messages.push(Incoming {
            data: Bytes::from(data),
            attributes: message.attributes.unwrap_or_default(),
            ordering_key: message.ordering_key.unwrap_or_default(),
        });
    }
    match shared.publish(
        &format!("projects/{project}/topics/{topic}"),
        messages,
        Via::Rest,
    ) {
        Ok(ids) => axum::Json(json!({ "messageIds": ids })).into_response(),
        Err(rejection) => rejection.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOPIC: &str = "projects/p/topics/events";

    fn fake() -> Shared {
        Shared {
            topics: HashSet::from([TOPIC.to_owned()]),
            ..Shared::default()
        }
    }

    fn message(data: &str, attributes: &[(&str, &str)]) -> Incoming {
        Incoming {
            data: Bytes::from(data.to_owned()),
            attributes: attributes
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            ordering_key: String::new(),
        }
    }

    fn rejected(result: Result<Vec<String>, Rejection>) -> Code {
        match result {
            Ok(ids) => panic!("accepted: {ids:?}"),
            Err(rejection) => rejection.code,
        }
    }

    #[test]
    fn publish_refuses_what_pubsub_refuses() {
        let fake = fake();
        let publish = |topic: &str, messages| rejected(fake.publish(topic, messages, Via::Grpc));
        assert_eq!(
            publish("events", vec![message("x", &[])]),
            Code::InvalidArgument
        );
        assert_eq!(
            publish("projects/p/topics/goog", vec![message("x", &[])]),
            Code::InvalidArgument
        );
        assert_eq!(
            publish("projects/p/topics/other", vec![message("x", &[])]),
            Code::NotFound
        );
        assert_eq!(publish(TOPIC, vec![]), Code::InvalidArgument);
        assert_eq!(
            publish(TOPIC, vec![message("", &[])]),
            Code::InvalidArgument
        );
        assert_eq!(
            publish(TOPIC, vec![message("x", &[("googkey", "v")])]),
            Code::InvalidArgument
        );
        assert_eq!(
            publish(TOPIC, vec![message("x", &[("k", &"v".repeat(1025))])]),
            Code::InvalidArgument
        );
        let mut keyed = message("y", &[]);
        keyed.ordering_key = "k".into();
        assert_eq!(
            publish(TOPIC, vec![message("x", &[]), keyed]),
            Code::InvalidArgument
        );
        assert!(fake.received.lock().unwrap().is_empty());
    }

    #[test]
    fn accepted_messages_get_unique_ids_and_are_recorded_in_order() {
        let fake = fake();
        let ids = fake
            .publish(
                TOPIC,
                vec![message("a", &[]), message("", &[("k", "v")])],
                Via::Grpc,
            )
            .ok()
            .unwrap();
        let more = fake
            .publish(TOPIC, vec![message("c", &[])], Via::Rest)
            .ok()
            .unwrap();
        assert_eq!(ids.len(), 2);
        assert!(!ids.contains(&more[0]));
        let received = fake.received.lock().unwrap().clone();
        assert_eq!(
            received.iter().map(|m| m.data.as_ref()).collect::<Vec<_>>(),
            [&b"a"[..], b"", b"c"]
        );
        assert_eq!(received[1].attributes["k"], "v");
        assert_eq!(received[2].via, Via::Rest);
    }

    #[test]
    fn injected_failures_are_answered_once_each_before_any_check() {
        let fake = fake();
        fake.failures
            .lock()
            .unwrap()
            .extend([Code::PermissionDenied, Code::Unavailable]);
        assert_eq!(
            rejected(fake.publish("bad", vec![], Via::Grpc)),
            Code::PermissionDenied
        );
        assert_eq!(
            rejected(fake.publish(TOPIC, vec![message("x", &[])], Via::Grpc)),
            Code::Unavailable
        );
        assert!(
            fake.publish(TOPIC, vec![message("x", &[])], Via::Grpc)
                .is_ok()
        );
    }

    async fn rest(
        fake: &FakePubsub,
        path: &str,
        body: serde_json::Value,
    ) -> (u16, serde_json::Value) {
        let response = reqwest::Client::new()
            .post(format!("{}{path}", fake.endpoint))
            .json(&body)
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.json().await.unwrap())
    }

    #[tokio::test]
    async fn the_rest_publish_decodes_base64_and_answers_message_ids() {
        let fake = FakePubsub::start(&[TOPIC]).await.unwrap();
        let body = json!({"messages": [
            {"data": "eyJldmVudF90eXBlIjoic2lnbWEuY2hhaW4uZmFpbGVkIn0=", "attributes": {"event_type": "sigma.chain.failed"}},
            {"data": "aGk_"},
        ]});
        let (status, answer) = rest(&fake, "/v1/projects/p/topics/events:publish", body).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["messageIds"].as_array().unwrap().len(), 2);
        let received = fake.messages();
        assert_eq!(
            received[0].json().unwrap()["event_type"],
            "sigma.chain.failed"
        );
        assert_eq!(received[0].attributes["event_type"], "sigma.chain.failed");
        assert_eq!(received[0].message_id, answer["messageIds"][0]);
        assert_eq!(received[1].data.as_ref(), b"hi?");
        assert_eq!(received[1].via, Via::Rest);
    }

    #[tokio::test]
    async fn the_rest_publish_answers_google_style_errors() {
        let fake = FakePubsub::start(&[TOPIC]).await.unwrap();
        let one = json!({"messages": [{"data": "aGk="}]});
        let cases = [
            (
                "/v1/projects/p/topics/nope:publish",
                one.clone(),
                404,
                "NOT_FOUND",
            ),
            (
                "/v1/projects/p/topics/events:publish",
                json!({"messages": []}),
                400,
                "INVALID_ARGUMENT",
            ),
            (
                "/v1/projects/p/topics/events:publish",
                json!({}),
                400,
                "INVALID_ARGUMENT",
            ),
            (
                "/v1/projects/p/topics/events:publish",
                json!({"messages": [{"data": "not base64!"}]}),
                400,
                "INVALID_ARGUMENT",
            ),
            (
                "/v1/projects/p/topics/events:publish",
                json!({"messages": [{"body": "aGk="}]}),
                400,
                "INVALID_ARGUMENT",
            ),
            (
                "/v1/projects/p/topics/events:delete",
                one.clone(),
                404,
                "NOT_FOUND",
            ),
        ];
        for (path, body, want_status, want_name) in cases {
            let (status, answer) = rest(&fake, path, body.clone()).await;
            assert_eq!(
                (status, answer["error"]["status"].as_str()),
                (want_status, Some(want_name)),
                "{path} {body}: {answer}"
            );
            assert_eq!(answer["error"]["code"], want_status);
        }
        fake.fail_next(Code::PermissionDenied, 1);
        let (status, answer) = rest(&fake, "/v1/projects/p/topics/events:publish", one).await;
        assert_eq!(
            (status, answer["error"]["status"].as_str()),
            (403, Some("PERMISSION_DENIED"))
        );
        assert!(fake.messages().is_empty());
    }

    #[tokio::test]
    async fn what_was_published_can_be_read_and_cleared_over_http() {
        let fake = FakePubsub::start(&[TOPIC]).await.unwrap();
        let (status, _) = rest(
            &fake,
            "/v1/projects/p/topics/events:publish",
            json!({"messages": [{"data": "e30=", "attributes": {"a": "b"}}]}),
        )
        .await;
        assert_eq!(status, 200);
        let http = reqwest::Client::new();
        let listed: serde_json::Value = http
            .get(format!("{}/_fake/messages", fake.endpoint))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(
            listed,
            json!({"messages": [{"topic": TOPIC, "message_id": "1", "data": "{}", "attributes": {"a": "b"}, "via": "rest"}]})
        );
        let cleared = http
            .delete(format!("{}/_fake/messages", fake.endpoint))
            .send()
            .await
            .unwrap();
        assert_eq!(cleared.status().as_u16(), 204);
        assert!(fake.messages().is_empty());
    }
}
