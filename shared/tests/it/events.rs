//! The events publisher against the fake Pub/Sub Publisher, over the official client's gRPC.

use std::time::Duration;

use sigma_fakes::pubsub::{Code, FakePubsub, Via};
use sigma_shared::events::{Event, EventType, Events, TopicName};
use sigma_shared::{Generation, ObjectRef};

const TOPIC: &str = "projects/sigma-test/topics/sigma-events";

/// Generous bound that only turns a hang into a failure; not a performance assertion.
const HANG_GUARD: Duration = Duration::from_secs(60);

fn object() -> ObjectRef {
    ObjectRef::new(
        "trigger".parse().unwrap(),
        "data/20240115/lkp_fechas.gz.encrypted".parse().unwrap(),
    )
}

fn topic() -> Option<TopicName> {
    Some(TOPIC.parse().unwrap())
}

async fn events_for(fake: &FakePubsub) -> Events {
    Events::connect(topic(), Some(fake.emulator_host()))
        .await
        .unwrap()
}

async fn flush(events: &Events) {
    tokio::time::timeout(HANG_GUARD, events.flush())
        .await
        .expect("flush hung");
}

#[tokio::test]
async fn each_published_event_arrives_once_as_json_with_its_filter_attributes() {
    let fake = FakePubsub::start(&[TOPIC]).await.unwrap();
    let events = events_for(&fake).await;
    events.publish(
        Event::new(EventType::Decrypted, object())
            .generation(Generation::new(1705312800123456).unwrap())
            .detail(serde_json::json!({"output": "gs://out/data/20240115/lkp_fechas.gz"})),
    );
    events.publish(Event::new(EventType::Launched, object()).entity("lkp_fechas"));
    flush(&events).await;

    let received = fake.messages();
    assert_eq!(received.len(), 2, "{received:?}");
    let decrypted = received
        .iter()
        .find(|m| m.attributes["event_type"] == "sigma.decrypt.decrypted")
        .unwrap();
    assert_eq!(decrypted.topic, TOPIC);
    assert_eq!(decrypted.via, Via::Grpc);
    assert_eq!(
        decrypted.attributes["object"],
        "gs://trigger/data/20240115/lkp_fechas.gz.encrypted"
    );
    assert_eq!(decrypted.attributes["generation"], "1705312800123456");
    assert!(!decrypted.attributes.contains_key("entity"));
    let data = decrypted.json().unwrap();
    assert_eq!(data["service"], "sigma-decrypt");
    assert_eq!(data["generation"], "1705312800123456");
    assert_eq!(
        data["detail"]["output"],
        "gs://out/data/20240115/lkp_fechas.gz"
    );

    let launched = received
        .iter()
        .find(|m| m.attributes["event_type"] == "sigma.dataflow.launched")
        .unwrap();
    assert_eq!(launched.attributes["entity"], "lkp_fechas");
    assert!(!launched.attributes.contains_key("generation"));
    assert_eq!(launched.json().unwrap()["service"], "sigma-dataflow");
}

#[tokio::test]
async fn without_a_topic_nothing_is_published() {
    let fake = FakePubsub::start(&[TOPIC]).await.unwrap();
    let disabled = Events::connect(None, Some(fake.emulator_host()))
        .await
        .unwrap();
    disabled.publish(Event::new(EventType::Decrypted, object()));
    flush(&disabled).await;
    Events::disabled().publish(Event::new(EventType::Rejected, object()));
    assert!(fake.messages().is_empty());
    assert_eq!(format!("{disabled:?}"), "Events(disabled)");
}

#[tokio::test]
async fn events_are_off_when_the_topic_variable_is_unset() {
    if std::env::var_os("EVENTS_TOPIC").is_some() {
        return;
    }
    let events = Events::from_env().await.unwrap();
    assert_eq!(format!("{events:?}"), "Events(disabled)");
}

#[tokio::test]
async fn a_denied_publish_is_only_logged_and_later_events_still_go_through() {
    let fake = FakePubsub::start(&[TOPIC]).await.unwrap();
    let events = events_for(&fake).await;
    fake.fail_next(Code::PermissionDenied, 1);
    events.publish(Event::new(EventType::Rejected, object()));
    flush(&events).await;
    assert!(fake.messages().is_empty());

    events.publish(Event::new(EventType::Skipped, object()));
    flush(&events).await;
    let received = fake.messages();
    assert_eq!(received.len(), 1);
    assert_eq!(
        received[0].attributes["event_type"],
        "sigma.dataform.skipped"
    );
}

#[tokio::test]
async fn an_unavailable_pubsub_is_retried_and_the_event_arrives_once() {
    let fake = FakePubsub::start(&[TOPIC]).await.unwrap();
    let events = events_for(&fake).await;
    fake.fail_next(Code::Unavailable, 2);
    events.publish(Event::new(EventType::Adopted, object()));
    flush(&events).await;
    let received = fake.messages();
    assert_eq!(received.len(), 1, "{received:?}");
    assert_eq!(
        received[0].attributes["event_type"],
        "sigma.dataflow.adopted"
    );
}

#[tokio::test]
async fn a_topic_pubsub_does_not_know_is_only_logged() {
    let fake = FakePubsub::start(&["projects/sigma-test/topics/other"])
        .await
        .unwrap();
    let events = events_for(&fake).await;
    events.publish(Event::new(EventType::Invoked, object()));
    flush(&events).await;
    assert!(fake.messages().is_empty());
}

#[tokio::test]
async fn an_unreachable_pubsub_blocks_neither_publish_nor_shutdown() {
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = closed.local_addr().unwrap().to_string();
    drop(closed);
    let events = Events::connect(topic(), Some(address)).await.unwrap();
    events.publish(Event::new(EventType::Decrypted, object()));
    flush(&events).await;
}

#[tokio::test]
async fn a_malformed_endpoint_is_a_configuration_error() {
    let error = Events::connect(topic(), Some("not a host/".into()))
        .await
        .unwrap_err();
    assert_eq!(error.var, "PUBSUB_EMULATOR_HOST");
}
