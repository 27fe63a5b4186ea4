//! Batch coalescing (issue 10): no two invocations sharing an action ever run at once, a
//! load that lands while its dependents run gets them run again after, and loads waiting
//! together start as one invocation — within one instance and across two on one state
//! bucket. The fake Dataform keeps each invocation's running interval, so every test can ask
//! it for overlaps.

use crate::common;

use std::time::Duration;

use common::{Service, api_config, sample_fake, storage};
use futures::future::join_all;
use serde_json::{Value, json};
use sigma_dataform::Invoker;
use sigma_dataform::config::Config;
use sigma_dataform::idempotency::{Ledger, Record};
use sigma_fakes::dataform::FakeDataform;
use sigma_fakes::faults::{Fault, FaultProxy};
use sigma_fakes::gcs::FakeGcs;
use sigma_fakes::pubsub::FakePubsub;
use sigma_shared::events::Events;

const STATE: &str = "sigma-state";
const TOPIC: &str = "projects/acme-dwh-prod/topics/sigma-events";
/// The nightly extract of the issue: five raw tables whose closures share most actions.
const BATCH: [&str; 5] = [
    "raw.agentes",
    "raw.clientes",
    "raw.lkp_fechas",
    "raw.polizas",
    "raw.siniestros",
];

fn load(table: &str, generation: u64) -> Value {
    let file = table.trim_start_matches("raw.");
    json!({
        "table": table,
        "bucket": "out-bucket",
        "name": format!("data/20240115/{file}.gz"),
        "generation": generation.to_string(),
        "actions_sample": 0,
    })
}

fn invocation_id(name: &str) -> String {
    name.rsplit('/').next().unwrap().to_owned()
}

/// A service with a settle window, its ledger and schedule in `state` (or in memory).
async fn service(fake: &FakeDataform, settle: Duration, state: Option<&FakeGcs>) -> Service {
    let config = Config {
        settle,
        ..api_config(&fake.endpoint)
    };
    let mut invoker = Invoker::new(config).await.unwrap();
    if let Some(gcs) = state {
        invoker = invoker.with_ledger(Ledger::Gcs {
            client: Box::new(storage(&gcs.endpoint).await),
            bucket: STATE.parse().unwrap(),
        });
    }
    Service::serve(invoker).await
}

fn assert_no_overlap(fake: &FakeDataform) {
    let overlaps = fake.handle.overlaps();
    assert!(
        overlaps.is_empty(),
        "invocations ran the same actions at once: {overlaps:?}"
    );
}

/// Polls a ticket until it is started (or ended) and answers its state.
async fn until_started(service: &Service, ticket: &str) -> Value {
    for _ in 0..200 {
        let (status, answer) = service.get(&format!("/tickets/{ticket}")).await;
        assert!(status == 200 || status == 503, "{status} {answer}");
        if status == 200 && answer["invocation"].is_string() {
            return answer;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("ticket {ticket} never started");
}

/// How many distinct actions the closures of `tables` hold together, and in all.
async fn closures(service: &Service, tables: &[&str]) -> (usize, usize) {
    let mut distinct = std::collections::HashSet::new();
    let mut total = 0;
    for table in tables {
        let (_, closure) = service.closure(json!({"table": table})).await;
        total += closure["count"].as_u64().unwrap() as usize;
        distinct.extend(common::keys(&closure["actions"]));
    }
    (distinct.len(), total)
}

/// The measure every test here relies on: an invocation created beside sigma's, with the
/// same actions while sigma's runs, is reported.
#[tokio::test]
async fn the_fake_reports_invocations_that_ran_the_same_actions_at_the_same_time() {
    let fake = sample_fake().await;
    let service = service(&fake, Duration::ZERO, None).await;
    let (_, first) = service.invoke(load("raw.lkp_fechas", 1)).await;
    let body = fake.handle.created_invocations()[0].clone();
    let url = format!(
        "{}/v1/{}/workflowInvocations",
        fake.endpoint,
        common::REPOSITORY
    );
    let created = reqwest::Client::new()
        .post(url)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(created.status().is_success(), "{:?}", created.text().await);

    let overlaps = fake.handle.overlaps();
    assert_eq!(overlaps.len(), 1, "{overlaps:?}");
    assert_eq!(overlaps[0].first, first["invocation"].as_str().unwrap());
    assert_eq!(overlaps[0].targets.len(), 16);
    assert_eq!(fake.handle.action_executions(), 2 * 16);
}

#[tokio::test]
async fn a_load_landing_while_its_dependents_run_waits_and_gets_them_run_again_after() {
    let fake = sample_fake().await;
    let service = service(&fake, Duration::ZERO, None).await;
    let (status, first) = service.invoke(load("raw.lkp_fechas", 1)).await;
    assert_eq!(status, 200, "{first}");
    let running = first["invocation"].as_str().unwrap().to_owned();

    let (status, second) = service.invoke(load("raw.lkp_fechas", 2)).await;
    assert_eq!(status, 202, "{second}");
    assert_eq!(second["queued"], true);
    assert_eq!(second["waiting_for"], json!([running]));
    assert_eq!(second["actions"], 16);
    let ticket = second["ticket"].as_str().unwrap();
    let (_, waiting) = service.get(&format!("/tickets/{ticket}")).await;
    assert_eq!(waiting["state"], "QUEUED", "{waiting}");
    assert_eq!(waiting["terminal"], false);
    assert_eq!(fake.handle.created_invocations().len(), 1);

    fake.handle.complete(&invocation_id(&running), &[]).unwrap();
    let started = until_started(&service, ticket).await;
    assert_ne!(started["invocation"], json!(running));
    assert_eq!(started["state"], "RUNNING");
    assert_eq!(started["count"], 16);

    assert_eq!(fake.handle.created_invocations().len(), 2);
    assert_no_overlap(&fake);
    assert_eq!(fake.handle.action_executions(), 2 * 16);
}

#[tokio::test]
async fn loads_arriving_within_the_settle_window_start_as_one_invocation_of_their_union() {
    let fake = sample_fake().await;
    let service = service(&fake, Duration::from_millis(1500), None).await;
    let (distinct, total) = closures(&service, &BATCH).await;
    let mut tickets = Vec::new();
    for (n, table) in BATCH.iter().enumerate() {
        let (status, answer) = service.invoke(load(table, n as u64 + 1)).await;
        assert_eq!(status, 202, "{answer}");
        assert_eq!(
            answer["waiting_for"],
            json!([]),
            "settling waits for nothing"
        );
        tickets.push(answer["ticket"].as_str().unwrap().to_owned());
    }
    assert!(fake.handle.created_invocations().is_empty());

    let mut invocations = std::collections::HashSet::new();
    for ticket in &tickets {
        invocations.insert(until_started(&service, ticket).await["invocation"].clone());
    }
    assert_eq!(invocations.len(), 1, "{invocations:?}");
    assert_eq!(fake.handle.created_invocations().len(), 1);
    assert_eq!(fake.handle.action_executions(), distinct);
    assert!(distinct < total, "{distinct} distinct of {total}");
}

#[tokio::test]
async fn loads_queued_behind_a_running_invocation_start_together_when_it_ends() {
    let fake = sample_fake().await;
    let service = service(&fake, Duration::ZERO, None).await;
    let (_, first) = service.invoke(load("raw.lkp_fechas", 1)).await;
    let mut tickets = Vec::new();
    for (n, table) in ["raw.lkp_fechas", "raw.siniestros", "raw.polizas"]
        .iter()
        .enumerate()
    {
        let (status, answer) = service.invoke(load(table, n as u64 + 2)).await;
        assert_eq!(status, 202, "{table}: {answer}");
        tickets.push(answer["ticket"].as_str().unwrap().to_owned());
    }
    fake.handle
        .complete(&invocation_id(first["invocation"].as_str().unwrap()), &[])
        .unwrap();
    let started: Vec<Value> = join_all(tickets.iter().map(|t| until_started(&service, t))).await;
    for answer in &started {
        assert_eq!(answer["invocation"], started[0]["invocation"]);
    }
    assert_eq!(fake.handle.created_invocations().len(), 2);
    assert_no_overlap(&fake);
}

#[tokio::test]
async fn a_duplicate_of_a_queued_request_gets_the_same_ticket_and_queues_nothing() {
    let fake = sample_fake().await;
    let pubsub = FakePubsub::start(&[TOPIC]).await.unwrap();
    let events = Events::connect(Some(TOPIC.parse().unwrap()), Some(pubsub.emulator_host()))
        .await
        .unwrap();
    let invoker = Invoker::new(Config {
        settle: Duration::from_secs(60),
        ..api_config(&fake.endpoint)
    })
    .await
    .unwrap()
    .with_events(events);
    let service = Service::serve(invoker).await;
    let (status, first) = service.invoke(load("raw.lkp_fechas", 1)).await;
    assert_eq!(status, 202, "{first}");
    let (status, again) = service.invoke(load("raw.lkp_fechas", 1)).await;
    assert_eq!(status, 202, "{again}");
    assert_eq!(again["ticket"], first["ticket"]);

    let events = pubsub.wait_for(1).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let events = if events.len() == 1 {
        pubsub.messages()
    } else {
        events
    };
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].attributes["event_type"], "sigma.dataform.queued");
    let detail: Value = serde_json::from_slice(&events[0].data).unwrap();
    assert_eq!(detail["detail"]["ticket"], first["ticket"]);
    assert_eq!(
        detail["object"],
        "gs://out-bucket/data/20240115/lkp_fechas.gz"
    );
}

#[tokio::test]
async fn a_tickets_outcome_is_its_own_actions_not_the_whole_invocations() {
    let fake = sample_fake().await;
    let service = service(&fake, Duration::from_millis(300), None).await;
    let (_, fechas) = service.invoke(load("raw.lkp_fechas", 1)).await;
    let (_, agentes) = service.invoke(load("raw.agentes", 2)).await;
    let fechas = until_started(&service, fechas["ticket"].as_str().unwrap()).await;
    let agentes = until_started(&service, agentes["ticket"].as_str().unwrap()).await;
    assert_eq!(fechas["invocation"], agentes["invocation"]);

    let (_, closure) = service.closure(json!({"table": "raw.agentes"})).await;
    let only_agentes = common::keys(&closure["actions"])
        .into_iter()
        .find(|t| t.ends_with(".rpt_agentes"))
        .expect("rpt_agentes depends on agentes");
    let invocation = invocation_id(fechas["invocation"].as_str().unwrap());
    fake.handle
        .complete(&invocation, &[(only_agentes.as_str(), "division by zero")])
        .unwrap();
    let ticket = |answer: &Value| format!("/tickets/{}", answer["ticket"].as_str().unwrap());
    let (_, fechas) = service.get(&ticket(&fechas)).await;
    let (_, agentes) = service.get(&ticket(&agentes)).await;
    assert_eq!(fechas["invocation_state"], "FAILED");
    assert_eq!(fechas["state"], "SUCCEEDED", "{fechas}");
    assert_eq!(fechas["count"], 16);
    assert_eq!(agentes["state"], "FAILED", "{agentes}");
    assert_eq!(agentes["terminal"], true);
    assert_eq!(agentes["failed"][0]["target"], only_agentes);
}

#[tokio::test]
async fn cancelling_a_waiting_ticket_withdraws_it_and_a_retry_queues_again() {
    let fake = sample_fake().await;
    let service = service(&fake, Duration::ZERO, None).await;
    let (_, first) = service.invoke(load("raw.lkp_fechas", 1)).await;
    let (_, queued) = service.invoke(load("raw.lkp_fechas", 2)).await;
    let ticket = queued["ticket"].as_str().unwrap();
    let (status, cancelled) = service
        .post(&format!("/tickets/{ticket}:cancel"), json!({}))
        .await;
    assert_eq!(status, 200, "{cancelled}");
    assert_eq!(cancelled["state"], "CANCELLED");
    assert_eq!(cancelled["cancel_requested"], true);

    fake.handle
        .complete(&invocation_id(first["invocation"].as_str().unwrap()), &[])
        .unwrap();
    let (status, _) = service.invoke(load("raw.siniestros", 3)).await;
    assert_eq!(status, 200, "nothing waits before it any more");
    assert_eq!(fake.handle.created_invocations().len(), 2);

    let (status, again) = service.invoke(load("raw.lkp_fechas", 2)).await;
    assert_eq!(status, 202, "{again}");
    assert_eq!(again["ticket"], queued["ticket"]);
}

#[tokio::test]
async fn a_started_tickets_cancel_leaves_an_invocation_other_loads_share_running() {
    let fake = sample_fake().await;
    let service = service(&fake, Duration::from_millis(300), None).await;
    let (_, fechas) = service.invoke(load("raw.lkp_fechas", 1)).await;
    let (_, _agentes) = service.invoke(load("raw.agentes", 2)).await;
    let ticket = fechas["ticket"].as_str().unwrap();
    until_started(&service, ticket).await;
    let (status, cancelled) = service
        .post(&format!("/tickets/{ticket}:cancel"), json!({}))
        .await;
    assert_eq!(status, 200, "{cancelled}");
    assert_eq!(cancelled["cancel_requested"], false);
    assert_eq!(cancelled["invocation_state"], "RUNNING");
}

#[tokio::test]
async fn a_batch_dataform_refuses_is_answered_to_its_load_and_blocks_no_other() {
    let fake = sample_fake().await;
    let service = service(&fake, Duration::from_millis(300), None).await;
    let (_, refused) = service.invoke(load("raw.lkp_fechas", 1)).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    fake.handle.fail_next(400, 1);
    let ticket = format!("/tickets/{}", refused["ticket"].as_str().unwrap());
    common::assert_refused(&service.get(&ticket).await, 400, "dataform_error");

    let (status, other) = service.invoke(load("raw.lkp_fechas", 2)).await;
    assert_eq!(status, 202, "{other}");
    assert_eq!(
        other["waiting_for"],
        json!([]),
        "the refused batch blocks nothing"
    );
    assert!(fake.handle.created_invocations().is_empty());
}

/// The request that formed a batch lost the answer to its create (Dataform carried it out)
/// and never came back, as if its instance died: the next poll, on another instance, finds
/// the invocation the create made and adopts it, and every load of the batch runs once.
#[tokio::test]
async fn a_batch_whose_creator_lost_its_create_is_adopted_by_another_instance_not_repeated() {
    let fake = sample_fake().await;
    let gcs = FakeGcs::start(&[STATE]).await.unwrap();
    let proxy = FaultProxy::start(&fake.endpoint).await.unwrap();
    let settle = Duration::from_millis(300);
    let first = {
        let config = Config {
            settle,
            ..api_config(&proxy.endpoint)
        };
        let invoker = Invoker::new(config)
            .await
            .unwrap()
            .with_ledger(Ledger::Gcs {
                client: Box::new(storage(&gcs.endpoint).await),
                bucket: STATE.parse().unwrap(),
            });
        Service::serve(invoker).await
    };
    let other = service(&fake, settle, Some(&gcs)).await;
    let (_, fechas) = first.invoke(load("raw.lkp_fechas", 1)).await;
    let (_, siniestros) = other.invoke(load("raw.siniestros", 2)).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    proxy.inject(
        Fault::cut_after_upstream()
            .method("POST")
            .path_contains("/workflowInvocations"),
    );
    let ticket = |answer: &Value| answer["ticket"].as_str().unwrap().to_owned();
    let (status, lost) = first.get(&format!("/tickets/{}", ticket(&fechas))).await;
    assert_eq!(status, 503, "{lost}");
    assert_eq!(
        fake.handle.created_invocations().len(),
        1,
        "Dataform did create it"
    );

    let adopted = until_started(&other, &ticket(&siniestros)).await;
    let fechas = until_started(&other, &ticket(&fechas)).await;
    assert_eq!(adopted["invocation"], fechas["invocation"]);
    let created = fake.handle.created_invocations();
    assert_eq!(created.len(), 1);
    assert_no_overlap(&fake);

    // Both loads' records name the adopted invocation with its own compilation result (the
    // first instance's), not the one the adopting instance compiled.
    for object in gcs.list(STATE).await.unwrap() {
        if !object.name.starts_with("dataform/invocations/") {
            continue;
        }
        let bytes = gcs.get(STATE, &object.name).await.unwrap().unwrap();
        match serde_json::from_slice(&bytes).unwrap() {
            Record::Created {
                invocation,
                compilation_result,
                ..
            } => {
                assert_eq!(json!(invocation), fechas["invocation"]);
                assert_eq!(json!(compilation_result), created[0]["compilationResult"]);
            }
            other => panic!("{} is {other:?}", object.name),
        }
    }
}

#[tokio::test]
async fn unknown_and_malformed_tickets_are_refused() {
    let fake = sample_fake().await;
    let service = service(&fake, Duration::ZERO, None).await;
    common::assert_refused(
        &service.get(&format!("/tickets/{}", "a".repeat(64))).await,
        404,
        "unknown_ticket",
    );
    common::assert_refused(&service.get("/tickets/nope").await, 400, "invalid_request");
    common::assert_refused(
        &service.post("/tickets/nope:drop", json!({})).await,
        404,
        "not_found",
    );
}

/// Two instances on one state bucket, the five loads sent to both at once and every ticket
/// polled through both: one union invocation, never two sharing an action.
#[tokio::test]
async fn two_instances_racing_one_batch_on_one_state_bucket_start_one_union_invocation() {
    let fake = sample_fake().await;
    let gcs = FakeGcs::start(&[STATE]).await.unwrap();
    let settle = Duration::from_millis(1500);
    let instances = [
        service(&fake, settle, Some(&gcs)).await,
        service(&fake, settle, Some(&gcs)).await,
    ];
    let (distinct, _) = closures(&instances[0], &BATCH).await;
    let requests = BATCH.iter().enumerate().flat_map(|(n, table)| {
        let instances = &instances;
        (0..2).map(move |i| async move {
            instances[(n + i) % 2]
                .invoke(load(table, n as u64 + 1))
                .await
        })
    });
    let answers = join_all(requests).await;
    let mut tickets = std::collections::HashSet::new();
    for (status, answer) in &answers {
        assert!(*status == 202 || *status == 503, "{status} {answer}");
        if *status == 202 {
            tickets.insert(answer["ticket"].as_str().unwrap().to_owned());
        }
    }
    assert_eq!(
        tickets.len(),
        BATCH.len(),
        "one ticket per load: {answers:?}"
    );

    let polls = tickets.iter().flat_map(|ticket| {
        instances
            .iter()
            .map(move |instance| until_started(instance, ticket))
    });
    let started = join_all(polls).await;
    for answer in &started {
        assert_eq!(answer["invocation"], started[0]["invocation"]);
    }
    assert_eq!(fake.handle.created_invocations().len(), 1);
    assert_eq!(fake.handle.action_executions(), distinct);
    assert_no_overlap(&fake);
}
