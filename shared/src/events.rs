//! Pipeline events: one structured Pub/Sub message per outcome, for whoever watches the chain.
//!
//! An event reports on work, it is not part of it: a publish that fails is logged and
//! forgotten, and the request it describes answers exactly as it would have without it.
//! Messages go to the official client's batching and are acknowledged in the background, so
//! no response waits for a Pub/Sub round trip; [`Events::flush`] at shutdown sends what is
//! still buffered.
//!
//! The message data is the event as JSON; the attributes repeat the fields subscriptions
//! filter on (`event_type`, `object`, `generation`, `entity`), because Pub/Sub filters see
//! attributes only, never the data.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use base64::Engine;
use base64::prelude::BASE64_STANDARD;
use chrono::{DateTime, Utc};
use google_cloud_gax::retry_policy::RetryPolicyExt;
use google_cloud_pubsub::client::Publisher;
use google_cloud_pubsub::model::Message;
use google_cloud_pubsub::retry_policy::RetryableErrors;
use serde::{Serialize, Serializer};
use sha2::{Digest, Sha256};
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::config::{self, ConfigError};
use crate::object::{Generation, ObjectRef};
use crate::redact::redact;

/// `projects/PROJECT/topics/TOPIC`; unset means events are off.
pub const TOPIC_VAR: &str = "EVENTS_TOPIC";

/// `HOST:PORT` (or `http://HOST:PORT`) of a Pub/Sub emulator or fake, reached with anonymous
/// credentials: the variable gcloud and Google's other client libraries honour. The Rust
/// client reads no such variable itself.
pub const EMULATOR_VAR: &str = "PUBSUB_EMULATOR_HOST";

/// How long the client keeps retrying a transient failure: long enough to ride out a Pub/Sub
/// hiccup, short enough that an outage does not pile up events in memory.
const RETRY_LIMIT: Duration = Duration::from_secs(60);

/// Cloud Run allows ten seconds between SIGTERM and the kill; requests in flight finish
/// first, so buffered events get what is left of it, at most this.
const FLUSH_DEADLINE: Duration = Duration::from_secs(5);

/// Pub/Sub rejects the whole message when an attribute value is longer than this.
const MAX_ATTRIBUTE_VALUE: usize = 1024;

/// What happened. The string form (`sigma.<service>.<outcome>`) is the stable contract that
/// consumers and subscription filters match on; the names of the variants are not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    /// sigma-decrypt wrote the decrypted object.
    Decrypted,
    /// sigma-decrypt refused the file (bad token, not gzip, too large...).
    Rejected,
    /// sigma-dataflow launched a Flex Template job.
    Launched,
    /// sigma-dataflow found the job already launched for this object and reused it.
    Adopted,
    /// sigma-dataflow refused a new version of the pipeline registry and kept serving the
    /// one it had.
    RegistryRejected,
    /// sigma-dataform queued a load behind running invocations that share its actions.
    Queued,
    /// sigma-dataform created a workflow invocation.
    Invoked,
    /// sigma-dataform had nothing to run (or had already run it) and created no invocation.
    Skipped,
}

impl EventType {
    pub const ALL: [EventType; 8] = [
        Self::Decrypted,
        Self::Rejected,
        Self::Launched,
        Self::Adopted,
        Self::RegistryRejected,
        Self::Queued,
        Self::Invoked,
        Self::Skipped,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Decrypted => "sigma.decrypt.decrypted",
            Self::Rejected => "sigma.decrypt.rejected",
            Self::Launched => "sigma.dataflow.launched",
            Self::Adopted => "sigma.dataflow.adopted",
            Self::RegistryRejected => "sigma.dataflow.registry_rejected",
            Self::Queued => "sigma.dataform.queued",
            Self::Invoked => "sigma.dataform.invoked",
            Self::Skipped => "sigma.dataform.skipped",
        }
    }

    /// The service that reports this outcome; derived, so an event cannot claim another's.
    pub const fn service(self) -> &'static str {
        match self {
            Self::Decrypted | Self::Rejected => "sigma-decrypt",
            Self::Launched | Self::Adopted | Self::RegistryRejected => "sigma-dataflow",
            Self::Queued | Self::Invoked | Self::Skipped => "sigma-dataform",
        }
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for EventType {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// One outcome, as published. `detail` is free-form per event type and must never carry a
/// secret, a token or file contents: events are readable by every subscriber of the topic.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    event_type: EventType,
    service: &'static str,
    #[serde(serialize_with = "serialize_uri")]
    object: Option<ObjectRef>,
    generation: Option<Generation>,
    entity: Option<String>,
    time: DateTime<Utc>,
    detail: serde_json::Value,
}

fn serialize_uri<S: Serializer>(object: &Option<ObjectRef>, s: S) -> Result<S::Ok, S::Error> {
    match object {
        Some(object) => s.collect_str(object),
        None => s.serialize_none(),
    }
}

impl Event {
    /// An event about `object` (the object the outcome concerns), timed now. An outcome may
    /// concern no object: a Dataform invocation asked for by table name alone.
    pub fn new(event_type: EventType, object: impl Into<Option<ObjectRef>>) -> Self {
        Self {
            event_type,
            service: event_type.service(),
            object: object.into(),
            generation: None,
            entity: None,
            time: Utc::now(),
            detail: serde_json::Value::Object(serde_json::Map::new()),
        }
    }

    pub fn generation(mut self, generation: impl Into<Option<Generation>>) -> Self {
        self.generation = generation.into();
        self
    }

    pub fn entity(mut self, entity: impl fmt::Display) -> Self {
        self.entity = Some(entity.to_string());
        self
    }

    /// Replaces the detail payload (a JSON object by convention).
    pub fn detail(mut self, detail: serde_json::Value) -> Self {
        self.detail = detail;
        self
    }

    /// The message attributes: only the fields present, each shortened to fit Pub/Sub's
    /// limit (the data still carries them in full).
    fn attributes(&self) -> HashMap<String, String> {
        [
            ("event_type", Some(self.event_type.as_str().to_owned())),
            ("object", self.object.as_ref().map(ObjectRef::to_string)),
            ("generation", self.generation.map(|g| g.to_string())),
            ("entity", self.entity.clone()),
        ]
        .into_iter()
        .filter_map(|(key, value)| {
            value
                .filter(|v| !v.is_empty())
                .map(|v| (key.to_owned(), fit_attribute(v)))
        })
        .collect()
    }

    /// The data is redacted as a whole: details quote error messages, which may quote the
    /// URL a Google call failed on.
    fn to_message(&self) -> serde_json::Result<Message> {
        let data = serde_json::to_string(self)?;
        Ok(Message::new()
            .set_data(redact(&data).into_owned())
            .set_attributes(self.attributes()))
    }
}

/// A value that fits in an attribute: itself when short enough, else its first 240
/// characters (at most 960 bytes), `...sha256:` and the base64 SHA-256 of the whole value.
/// Subscription filters on a prefix (`hasPrefix(attributes.object, "gs://b/data/")`) keep
/// working, two long names that share the prefix still differ, and the workflow writes the
/// same form (it can cut by characters, not bytes), so one topic has one format.
fn fit_attribute(value: String) -> String {
    const KEPT_CHARS: usize = 240;
    if value.len() < MAX_ATTRIBUTE_VALUE {
        return value;
    }
    let kept: String = value.chars().take(KEPT_CHARS).collect();
    let digest = Sha256::digest(value.as_bytes());
    format!("{kept}...sha256:{}", BASE64_STANDARD.encode(digest))
}

/// A Pub/Sub topic name, `projects/PROJECT/topics/TOPIC`, as Pub/Sub accepts it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicName(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is not a Pub/Sub topic name: expected projects/PROJECT/topics/TOPIC, TOPIC being \
     3-255 letters, digits or -_.~+% starting with a letter and not with \"goog\""
)]
pub struct InvalidTopic(String);

impl FromStr for TopicName {
    type Err = InvalidTopic;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let valid = match s.split('/').collect::<Vec<_>>()[..] {
            ["projects", project, "topics", topic] => {
                !project.is_empty()
                    && project
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-.:".contains(c))
                    && (3..=255).contains(&topic.len())
                    && topic.starts_with(|c: char| c.is_ascii_alphabetic())
                    && !topic.starts_with("goog")
                    && topic
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-_.~+%".contains(c))
            }
            _ => false,
        };
        if valid {
            Ok(Self(s.to_owned()))
        } else {
            Err(InvalidTopic(s.to_owned()))
        }
    }
}

impl fmt::Display for TopicName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The publisher every service holds; cheap to clone, and a no-op when events are off.
#[derive(Clone, Default)]
pub struct Events {
    sink: Option<Arc<Sink>>,
}

struct Sink {
    publisher: Publisher,
    topic: TopicName,
    /// One task per event, waiting for its acknowledgement only to log a failure.
    acks: Mutex<JoinSet<()>>,
}

impl fmt::Debug for Events {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.sink {
            Some(sink) => write!(f, "Events({})", sink.topic),
            None => f.write_str("Events(disabled)"),
        }
    }
}

impl Events {
    /// From `EVENTS_TOPIC` and `PUBSUB_EMULATOR_HOST`; disabled, with no client at all, when
    /// `EVENTS_TOPIC` is unset.
    pub async fn from_env() -> Result<Self, ConfigError> {
        Self::connect(config::parsed(TOPIC_VAR)?, config::optional(EMULATOR_VAR)).await
    }

    /// Publishes to `topic`, through `emulator_host` with anonymous credentials if given;
    /// disabled when `topic` is `None`. Must run inside a Tokio runtime: the client's
    /// batching runs as a background task.
    pub async fn connect(
        topic: Option<TopicName>,
        emulator_host: Option<String>,
    ) -> Result<Self, ConfigError> {
        let Some(topic) = topic else {
            return Ok(Self::disabled());
        };
        let mut builder = Publisher::builder(topic.to_string())
            .with_retry_policy(RetryableErrors.with_time_limit(RETRY_LIMIT));
        if let Some(host) = emulator_host {
            builder = builder
                .with_endpoint(emulator_endpoint(&host)?)
                .with_credentials(
                    google_cloud_auth::credentials::anonymous::Builder::new().build(),
                );
        }
        let publisher = builder.build().await.map_err(|e| {
            ConfigError::new(
                TOPIC_VAR,
                format!("cannot build the Pub/Sub publisher: {e}"),
            )
        })?;
        Ok(Self {
            sink: Some(Arc::new(Sink {
                publisher,
                topic,
                acks: Mutex::new(JoinSet::new()),
            })),
        })
    }

    pub fn disabled() -> Self {
        Self { sink: None }
    }

    /// Queues `event` and returns at once; the outcome is only ever logged. Call it from
    /// within a request (a Tokio runtime).
    pub fn publish(&self, event: Event) {
        let Some(sink) = &self.sink else {
            return;
        };
        let event_type = event.event_type;
        let message = match event.to_message() {
            Ok(message) => message,
            Err(error) => {
                tracing::warn!(%event_type, %error, "event not published: cannot serialize it");
                return;
            }
        };
        let ack = sink.publisher.publish(message);
        let topic = sink.topic.to_string();
        let report = async move {
            match ack.await {
                Ok(message_id) => {
                    tracing::debug!(%event_type, %topic, %message_id, "event published")
                }
                Err(error) => tracing::warn!(%event_type, %topic, %error, "event not published"),
            }
        };
        let mut acks = sink.acks.lock().unwrap_or_else(PoisonError::into_inner);
        while acks.try_join_next().is_some() {}
        acks.spawn(report.in_current_span());
    }

    /// Sends every buffered event and waits for the answers, giving up after a few seconds
    /// (what is unsent then is logged as lost). Call it after the server has stopped.
    pub async fn flush(&self) {
        let Some(sink) = &self.sink else {
            return;
        };
        let mut acks =
            std::mem::take(&mut *sink.acks.lock().unwrap_or_else(PoisonError::into_inner));
        let drained = async {
            sink.publisher.flush().await;
            while acks.join_next().await.is_some() {}
        };
        if tokio::time::timeout(FLUSH_DEADLINE, drained).await.is_err() {
            tracing::warn!(topic = %sink.topic, "events still unacknowledged at shutdown may be lost");
        }
    }
}

fn emulator_endpoint(host: &str) -> Result<String, ConfigError> {
    let host = host.trim().trim_end_matches('/');
    if host.starts_with("http://") || host.starts_with("https://") {
        Ok(host.to_owned())
    } else if !host.is_empty() && !host.contains('/') && !host.chars().any(char::is_whitespace) {
        Ok(format!("http://{host}"))
    } else {
        Err(ConfigError::new(
            EMULATOR_VAR,
            "must be HOST:PORT or an http:// URL",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object() -> ObjectRef {
        ObjectRef::new(
            "trigger".parse().unwrap(),
            "data/20240115/lkp_fechas.gz.encrypted".parse().unwrap(),
        )
    }

    #[test]
    fn event_types_have_stable_dotted_names_and_their_service() {
        let names: Vec<_> = EventType::ALL.iter().map(|t| t.as_str()).collect();
        assert_eq!(
            names,
            [
                "sigma.decrypt.decrypted",
                "sigma.decrypt.rejected",
                "sigma.dataflow.launched",
                "sigma.dataflow.adopted",
                "sigma.dataflow.registry_rejected",
                "sigma.dataform.queued",
                "sigma.dataform.invoked",
                "sigma.dataform.skipped",
            ]
        );
        for event_type in EventType::ALL {
            let service = event_type.as_str().split('.').nth(1).unwrap();
            assert_eq!(event_type.service(), format!("sigma-{service}"));
        }
    }

    #[test]
    fn an_event_serializes_to_the_documented_schema() {
        let event = Event::new(EventType::Decrypted, object())
            .generation(Generation::new(1705312800123456).unwrap())
            .entity("lkp_fechas")
            .detail(
                serde_json::json!({"output": "gs://out/data/20240115/lkp_fechas.gz", "bytes": 42}),
            );
        let json = serde_json::to_value(&event).unwrap();
        let time = json["time"].as_str().unwrap();
        assert!(DateTime::parse_from_rfc3339(time).is_ok(), "{time}");
        assert_eq!(
            json,
            serde_json::json!({
                "event_type": "sigma.decrypt.decrypted",
                "service": "sigma-decrypt",
                "object": "gs://trigger/data/20240115/lkp_fechas.gz.encrypted",
                "generation": "1705312800123456",
                "entity": "lkp_fechas",
                "time": time,
                "detail": {"output": "gs://out/data/20240115/lkp_fechas.gz", "bytes": 42},
            })
        );
    }

    #[test]
    fn absent_fields_are_null_in_the_data_and_missing_from_the_attributes() {
        let event = Event::new(EventType::Rejected, object());
        let json = serde_json::to_value(&event).unwrap();
        assert_eq!(json["generation"], serde_json::Value::Null);
        assert_eq!(json["entity"], serde_json::Value::Null);
        assert_eq!(json["detail"], serde_json::json!({}));
        let attributes = event.attributes();
        assert_eq!(
            attributes,
            HashMap::from([
                ("event_type".to_owned(), "sigma.decrypt.rejected".to_owned()),
                (
                    "object".to_owned(),
                    "gs://trigger/data/20240115/lkp_fechas.gz.encrypted".to_owned()
                ),
            ])
        );
    }

    #[test]
    fn an_event_about_no_object_has_a_null_object_and_no_object_attribute() {
        let event = Event::new(EventType::Skipped, None).entity("lkp_fechas");
        assert_eq!(
            serde_json::to_value(&event).unwrap()["object"],
            serde_json::Value::Null
        );
        assert!(!event.attributes().contains_key("object"));
        assert_eq!(event.attributes()["entity"], "lkp_fechas");
    }

    #[test]
    fn attributes_too_long_for_pubsub_are_shortened_uniquely_and_the_data_keeps_them_whole() {
        let long = ObjectRef::new(
            "trigger".parse().unwrap(),
            "d/".repeat(510).parse().unwrap(),
        );
        let sibling = ObjectRef::new(
            "trigger".parse().unwrap(),
            format!("{}x", "d/".repeat(510)).parse().unwrap(),
        );
        let event =
            Event::new(EventType::Decrypted, long.clone()).generation(Generation::new(7).unwrap());
        let attributes = event.attributes();
        let object = &attributes["object"];
        assert!(object.len() <= MAX_ATTRIBUTE_VALUE, "{}", object.len());
        assert!(object.starts_with("gs://trigger/d/d/"));
        // The form the workflow writes (workflows/sigma.yaml, shorten_object) for this URI.
        let expected = format!(
            "{}...sha256:S87MKNEPLvhZ77dijC83TW1MkTCANys86j0O8DLJcyE=",
            &long.to_string()[..240]
        );
        assert_eq!(object, &expected);
        let other = Event::new(EventType::Decrypted, sibling).attributes()["object"].clone();
        assert_ne!(object, &other, "two long names must not share an attribute");
        assert_eq!(attributes["generation"], "7");
        let message = event.to_message().unwrap();
        let data: serde_json::Value = serde_json::from_slice(&message.data).unwrap();
        assert_eq!(data["object"], long.to_string());
    }

    #[test]
    fn topic_names_follow_pubsub_rules() {
        for good in [
            "projects/p-1/topics/sigma-events",
            "projects/example.com:proj/topics/a_b.c~d+e%f",
        ] {
            assert_eq!(good.parse::<TopicName>().unwrap().to_string(), good);
        }
        for bad in [
            "",
            "sigma-events",
            "projects/p/topics/",
            "projects//topics/events",
            "projects/p/topics/ab",
            "projects/p/topics/1events",
            "projects/p/topics/goog-events",
            "projects/p/topics/ev/ents",
            "projects/P/topics/events",
            "projects/p/subscriptions/events",
        ] {
            assert!(bad.parse::<TopicName>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn the_emulator_host_may_be_host_port_or_a_url() {
        assert_eq!(
            emulator_endpoint("127.0.0.1:8085").unwrap(),
            "http://127.0.0.1:8085"
        );
        assert_eq!(
            emulator_endpoint("http://127.0.0.1:8085/").unwrap(),
            "http://127.0.0.1:8085"
        );
        assert!(emulator_endpoint("host with space:1").is_err());
        assert!(emulator_endpoint("ftp://x/y").is_err());
    }
}
