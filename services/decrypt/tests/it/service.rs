//! `POST /decrypt` end to end against fake-gcs-server: what is written, and above all what
//! is not written when anything is wrong.

use crate::common;

use common::*;
use serde_json::json;
use sigma_decrypt::fernet::Key;

#[tokio::test]
async fn a_token_becomes_its_gzip_bytes_in_the_output_bucket_with_its_source_recorded() {
    let key = Key::generate();
    let service = Service::start(config(&[&key])).await;
    let plaintext = gzip(b"fecha;dia\n2024-01-15;lunes\n");
    let source_generation = service.upload(token(&key, &plaintext)).await;

    let (status, body) = service.decrypt(SOURCE_NAME).await;

    assert_eq!(status, 200, "{body}");
    assert_eq!(body["bucket"], OUTPUT);
    assert_eq!(body["name"], OUTPUT_NAME);
    assert_eq!(body["size"], plaintext.len());
    assert_eq!(body["skipped"], false);
    assert_eq!(
        body["source"],
        json!({"bucket": TRIGGER, "name": SOURCE_NAME, "generation": source_generation.to_string()})
    );
    assert_eq!(
        service.gcs.get(OUTPUT, OUTPUT_NAME).await.unwrap().unwrap(),
        plaintext
    );
    let stored = service
        .gcs
        .metadata(OUTPUT, OUTPUT_NAME)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(body["generation"], stored.generation);
    assert_eq!(stored.content_encoding.unwrap_or_default(), "");
    assert_eq!(
        stored.metadata["sigma-source-generation"],
        source_generation.to_string()
    );
    assert_eq!(stored.metadata["sigma-source-bucket"], TRIGGER);
    assert_eq!(stored.metadata["sigma-source-name"], SOURCE_NAME);
    assert_eq!(service.output_names().await, vec![OUTPUT_NAME]);
}

#[tokio::test]
async fn a_token_larger_than_the_upload_buffers_streams_through_exactly() {
    let key = Key::generate();
    let service = Service::start(config(&[&key])).await;
    // Past the client's 16 MiB resumable threshold and several 8 MiB upload chunks.
    let plaintext = gzip(&noise(20 * 1024 * 1024 + 12345));
    service.upload(token(&key, &plaintext)).await;

    let (status, body) = service.decrypt(SOURCE_NAME).await;

    assert_eq!(status, 200, "{body}");
    assert_eq!(body["size"], plaintext.len());
    assert!(service.gcs.get(OUTPUT, OUTPUT_NAME).await.unwrap().unwrap() == plaintext);
}

#[tokio::test]
async fn a_large_token_altered_near_its_end_leaves_no_partial_object() {
    let key = Key::generate();
    let service = Service::start(config(&[&key])).await;
    let mut token = token(&key, &gzip(&noise(20 * 1024 * 1024)));
    // Alter a ciphertext character well past the upload chunks already sent when it is read.
    let at = token.len() - 100;
    token[at] = if token[at] == b'A' { b'B' } else { b'A' };
    service.upload(token).await;

    let answer = service.decrypt(SOURCE_NAME).await;

    service.assert_refused(answer, 422, "invalid_token").await;
}

#[tokio::test]
async fn invalid_tokens_are_refused_with_invalid_token_and_nothing_is_written() {
    let key = Key::generate();
    let service = Service::start(config(&[&key])).await;
    let good = token(&key, &gzip(&noise(300_000)));
    let mut tampered = good.clone();
    tampered[good.len() / 2] = if tampered[good.len() / 2] == b'x' {
        b'y'
    } else {
        b'x'
    };
    let mut tag_altered = good.clone();
    let last = good.len() - 2;
    tag_altered[last] = if tag_altered[last] == b'Q' {
        b'R'
    } else {
        b'Q'
    };
    let cases: [(&str, Vec<u8>); 6] = [
        ("tampered", tampered),
        ("tag-altered", tag_altered),
        ("truncated", good[..good.len() - 64].to_vec()),
        ("wrong-key", token(&Key::generate(), &gzip(b"x"))),
        ("not-base64", b"this is not a fernet token!".to_vec()),
        ("empty", Vec::new()),
    ];
    for (case, bytes) in cases {
        let name = format!("data/{case}.gz.encrypted");
        service.gcs.put(TRIGGER, &name, bytes).await.unwrap();
        let answer = service.decrypt(&name).await;
        service.assert_refused(answer, 422, "invalid_token").await;
    }
}

#[tokio::test]
async fn expired_tokens_are_refused_with_token_expired_when_a_ttl_is_set() {
    let key = Key::generate();
    let mut config = config(&[&key]);
    config.ttl = Some(HOUR);
    let service = Service::start(config).await;
    service
        .gcs
        .put(
            TRIGGER,
            SOURCE_NAME,
            token_at(&key, now() - 2 * 3600, &gzip(b"old")),
        )
        .await
        .unwrap();

    let answer = service.decrypt(SOURCE_NAME).await;

    service.assert_refused(answer, 422, "token_expired").await;
}

#[tokio::test]
async fn tokens_of_an_older_key_in_the_ring_are_decrypted() {
    let (newest, older) = (Key::generate(), Key::generate());
    let service = Service::start(config(&[&newest, &older])).await;
    let plaintext = gzip(&noise(3 * 1024 * 1024));
    service.upload(token(&older, &plaintext)).await;

    let (status, body) = service.decrypt(SOURCE_NAME).await;

    assert_eq!(status, 200, "{body}");
    assert!(service.gcs.get(OUTPUT, OUTPUT_NAME).await.unwrap().unwrap() == plaintext);
    assert_eq!(service.output_names().await, vec![OUTPUT_NAME]);
}

#[tokio::test]
async fn plaintext_that_is_not_gzip_is_refused_with_not_gzip_and_nothing_is_written() {
    let key = Key::generate();
    let service = Service::start(config(&[&key])).await;
    service
        .gcs
        .put(
            TRIGGER,
            SOURCE_NAME,
            token(&key, b"fecha;dia\n2024-01-15;lunes\n"),
        )
        .await
        .unwrap();

    let answer = service.decrypt(SOURCE_NAME).await;

    service.assert_refused(answer, 422, "not_gzip").await;
}

#[tokio::test]
async fn with_verify_gzip_a_gzip_stream_with_a_bad_crc_is_refused_and_without_it_kept_as_is() {
    let key = Key::generate();
    let mut broken = gzip(&noise(100_000));
    let crc_at = broken.len() - 8;
    broken[crc_at] ^= 0xff;
    let mut verifying = config(&[&key]);
    verifying.verify_gzip = true;
    let service = Service::start(verifying).await;
    service.upload(token(&key, &broken)).await;

    let answer = service.decrypt(SOURCE_NAME).await;
    service.assert_refused(answer, 422, "corrupt_gzip").await;

    let header_only = Service::start(config(&[&key])).await;
    header_only.upload(token(&key, &broken)).await;
    let (status, body) = header_only.decrypt(SOURCE_NAME).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        header_only
            .gcs
            .get(OUTPUT, OUTPUT_NAME)
            .await
            .unwrap()
            .unwrap()
            == broken
    );
}

#[tokio::test]
async fn a_repeated_request_for_the_same_upload_writes_nothing_and_answers_skipped() {
    let key = Key::generate();
    let service = Service::start(config(&[&key])).await;
    service.upload(token(&key, &gzip(b"once"))).await;
    let (_, first) = service.decrypt(SOURCE_NAME).await;

    let (status, again) = service.decrypt(SOURCE_NAME).await;

    assert_eq!(status, 200, "{again}");
    assert_eq!(again["skipped"], true);
    assert_eq!(again["generation"], first["generation"]);
    assert_eq!(again["source"], first["source"]);
    let stored = service
        .gcs
        .metadata(OUTPUT, OUTPUT_NAME)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        json!(stored.generation),
        first["generation"],
        "the output was rewritten"
    );
}

#[tokio::test]
async fn a_new_upload_of_the_same_name_replaces_the_output() {
    let key = Key::generate();
    let service = Service::start(config(&[&key])).await;
    service.upload(token(&key, &gzip(b"monday"))).await;
    let (_, first) = service.decrypt(SOURCE_NAME).await;
    let second_plaintext = gzip(b"tuesday");
    let second_generation = service.upload(token(&key, &second_plaintext)).await;

    let (status, second) = service.decrypt(SOURCE_NAME).await;

    assert_eq!(status, 200, "{second}");
    assert_eq!(second["skipped"], false);
    assert_eq!(
        second["source"]["generation"],
        second_generation.to_string()
    );
    assert_ne!(second["generation"], first["generation"]);
    assert_eq!(
        service.gcs.get(OUTPUT, OUTPUT_NAME).await.unwrap().unwrap(),
        second_plaintext
    );
}

#[tokio::test]
async fn concurrent_duplicate_requests_write_the_output_once() {
    let key = Key::generate();
    let service = Service::start(config(&[&key])).await;
    service
        .gcs
        .put(
            TRIGGER,
            SOURCE_NAME,
            token(&key, &gzip(&noise(2 * 1024 * 1024))),
        )
        .await
        .unwrap();

    let answers = futures::future::join_all((0..4).map(|_| service.decrypt(SOURCE_NAME))).await;

    let stored = service
        .gcs
        .metadata(OUTPUT, OUTPUT_NAME)
        .await
        .unwrap()
        .unwrap();
    let mut writes = 0;
    for (status, body) in &answers {
        assert_eq!(*status, 200, "{body}");
        assert_eq!(body["generation"], json!(stored.generation), "{body}");
        writes += usize::from(body["skipped"] == false);
    }
    assert_eq!(writes, 1, "{answers:?}");
}

#[tokio::test]
async fn a_pinned_generation_is_read_and_a_generation_that_does_not_exist_is_404() {
    let key = Key::generate();
    let service = Service::start(config(&[&key])).await;
    let generation = service.upload(token(&key, &gzip(b"pinned"))).await;

    let missing = service.post(json!({"bucket": TRIGGER, "name": SOURCE_NAME, "generation": (generation + 1).to_string()})).await;
    service
        .assert_refused(missing, 404, "object_not_found")
        .await;

    let (status, body) = service
        .post(json!({"bucket": TRIGGER, "name": SOURCE_NAME, "generation": generation}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["source"]["generation"], generation.to_string());
}

#[tokio::test]
async fn cloud_event_data_is_accepted_as_the_request_body() {
    let key = Key::generate();
    let service = Service::start(config(&[&key])).await;
    let generation = service.upload(token(&key, &gzip(b"event"))).await;
    let event_data = json!({
        "kind": "storage#object", "id": format!("{TRIGGER}/{SOURCE_NAME}/{generation}"),
        "bucket": TRIGGER, "name": SOURCE_NAME, "generation": generation.to_string(),
        "metageneration": "1", "size": "100", "contentType": "application/octet-stream",
        "timeCreated": "2024-01-15T06:00:00.000Z", "storageClass": "STANDARD"
    });

    let (status, body) = service.post(event_data).await;

    assert_eq!(status, 200, "{body}");
    assert_eq!(body["name"], OUTPUT_NAME);
}

#[tokio::test]
async fn unknown_fields_are_refused_with_invalid_request_and_nothing_is_decrypted() {
    let key = Key::generate();
    let service = Service::start(config(&[&key])).await;
    service.upload(token(&key, &gzip(b"not now"))).await;

    let answer = service
        .post(json!({"bucket": TRIGGER, "name": SOURCE_NAME, "dryRun": true}))
        .await;

    assert!(
        answer.1["error"]["message"]
            .as_str()
            .unwrap()
            .contains("dryRun"),
        "{}",
        answer.1
    );
    service.assert_refused(answer, 400, "invalid_request").await;
}

#[tokio::test]
async fn a_full_object_finalize_event_with_every_object_field_is_accepted() {
    let key = Key::generate();
    let service = Service::start(config(&[&key])).await;
    let generation = service.upload(token(&key, &gzip(b"event"))).await;
    let event_data = json!({
        "kind": "storage#object",
        "id": format!("{TRIGGER}/{SOURCE_NAME}/{generation}"),
        "selfLink": format!("https://www.googleapis.com/storage/v1/b/{TRIGGER}/o/x"),
        "mediaLink": format!("https://storage.googleapis.com/download/storage/v1/b/{TRIGGER}/o/x?alt=media"),
        "name": SOURCE_NAME, "bucket": TRIGGER, "generation": generation.to_string(),
        "metageneration": "1", "contentType": "application/octet-stream",
        "contentEncoding": "", "contentDisposition": "attachment", "contentLanguage": "es",
        "cacheControl": "no-store", "timeCreated": "2024-01-15T06:00:00.000Z",
        "updated": "2024-01-15T06:00:00.000Z", "timeDeleted": null,
        "timeStorageClassUpdated": "2024-01-15T06:00:00.000Z",
        "softDeleteTime": null, "hardDeleteTime": null, "customTime": null,
        "retentionExpirationTime": null, "retention": {"mode": "Unlocked", "retainUntilTime": "2030-01-01T00:00:00Z"},
        "storageClass": "STANDARD", "size": "100", "md5Hash": "XrY7u+Ae7tCTyyK7j1rNww==",
        "crc32c": "AAAAAA==", "componentCount": 1, "etag": "CLbF7Yuf6YIDEAE=",
        "metadata": {"origin": "on-premise"}, "acl": [], "owner": {"entity": "user-x"},
        "customerEncryption": {"encryptionAlgorithm": "AES256", "keySha256": "x"},
        "kmsKeyName": "projects/p/locations/l/keyRings/r/cryptoKeys/k",
        "eventBasedHold": false, "temporaryHold": false
    });

    let (status, body) = service.post(event_data).await;

    assert_eq!(status, 200, "{body}");
    assert_eq!(body["name"], OUTPUT_NAME);
}

#[tokio::test]
async fn bad_requests_are_refused_with_their_codes_before_anything_is_read() {
    let key = Key::generate();
    let mut config = config(&[&key]);
    config.max_object_bytes = Some(1000);
    let service = Service::start(config).await;

    let answer = service.post_raw("{not json").await;
    service.assert_refused(answer, 400, "invalid_request").await;
    let answer = service.post(json!({"bucket": TRIGGER})).await;
    service.assert_refused(answer, 400, "invalid_request").await;
    let answer = service
        .post(json!({"bucket": TRIGGER, "name": SOURCE_NAME, "generation": "abc"}))
        .await;
    service.assert_refused(answer, 400, "invalid_request").await;
    for name in [
        "../secret.gz.encrypted",
        "/abs.gz.encrypted",
        "a\u{7}b.gz.encrypted",
    ] {
        let answer = service.decrypt(name).await;
        service.assert_refused(answer, 400, "invalid_name").await;
    }
    let answer = service
        .post(json!({"bucket": "somebody_elses_bucket", "name": SOURCE_NAME}))
        .await;
    service
        .assert_refused(answer, 403, "bucket_not_allowed")
        .await;
    let answer = service.decrypt("data/20240115/lkp_fechas.gz").await;
    service.assert_refused(answer, 422, "not_encrypted").await;
    let answer = service
        .post(json!({"bucket": TRIGGER, "name": SOURCE_NAME, "size": "5000"}))
        .await;
    service
        .assert_refused(answer, 413, "object_too_large")
        .await;
    let answer = service.decrypt("data/missing.gz.encrypted").await;
    service
        .assert_refused(answer, 404, "object_not_found")
        .await;
}

#[tokio::test]
async fn objects_over_max_object_bytes_are_refused_while_streaming_when_their_size_is_unknown() {
    let key = Key::generate();
    let mut config = config(&[&key]);
    config.max_object_bytes = Some(100_000);
    let service = Service::start(config).await;
    // No size in the request, and the emulator reports none: only counting can catch it.
    service.upload(token(&key, &gzip(&noise(200_000)))).await;

    let answer = service.decrypt(SOURCE_NAME).await;

    service
        .assert_refused(answer, 413, "object_too_large")
        .await;
}

#[tokio::test]
async fn an_unreachable_cloud_storage_is_a_retryable_503() {
    let key = Key::generate();
    let mut service = Service::start(config(&[&key])).await;
    service.gcs.stop().await;

    let (status, body) = service.decrypt(SOURCE_NAME).await;

    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["retryable"], true, "{body}");
}

#[tokio::test]
async fn an_older_upload_arriving_after_a_newer_one_never_overwrites_its_output() {
    let key = Key::generate();
    let gcs = sigma_fakes::gcs::FakeGcs::start(&[OUTPUT]).await.unwrap();
    // A versioned trigger bucket keeps the older upload readable by its generation.
    reqwest::Client::new()
        .post(format!("{}/storage/v1/b", gcs.endpoint))
        .json(&json!({"name": TRIGGER, "versioning": {"enabled": true}}))
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap();
    let service = Service::start_on(gcs, config(&[&key])).await;
    let older = service.upload(token(&key, &gzip(b"older"))).await;
    let newer = service.upload(token(&key, &gzip(b"newer"))).await;
    let (status, body) = service
        .post(json!({"bucket": TRIGGER, "name": SOURCE_NAME, "generation": newer}))
        .await;
    assert_eq!(status, 200, "{body}");

    let (status, late) = service
        .post(json!({"bucket": TRIGGER, "name": SOURCE_NAME, "generation": older}))
        .await;

    assert_eq!(status, 409, "{late}");
    assert_eq!(late["error"]["code"], "superseded");
    assert_eq!(late["error"]["retryable"], false);
    assert_eq!(
        service.gcs.get(OUTPUT, OUTPUT_NAME).await.unwrap().unwrap(),
        gzip(b"newer")
    );
}

#[tokio::test]
async fn written_outputs_and_refused_files_are_published_as_events_and_skips_are_not() {
    const TOPIC: &str = "projects/p/topics/sigma-events";
    let pubsub = sigma_fakes::pubsub::FakePubsub::start(&[TOPIC])
        .await
        .unwrap();
    let events = sigma_shared::events::Events::connect(
        Some(TOPIC.parse().unwrap()),
        Some(pubsub.emulator_host()),
    )
    .await
    .unwrap();
    let key = Key::generate();
    let gcs = sigma_fakes::gcs::FakeGcs::start(&[TRIGGER, OUTPUT])
        .await
        .unwrap();
    let service = Service::start_with_events(gcs, config(&[&key]), events).await;
    let generation = service.upload(token(&key, &gzip(b"event"))).await;
    service
        .gcs
        .put(
            TRIGGER,
            "data/bad.gz.encrypted",
            token(&Key::generate(), &gzip(b"x")),
        )
        .await
        .unwrap();

    let (_, written) = service.decrypt(SOURCE_NAME).await;
    service.decrypt(SOURCE_NAME).await;
    service.decrypt("data/bad.gz.encrypted").await;

    let messages = pubsub.wait_for(2).await;
    let types: Vec<&str> = messages
        .iter()
        .map(|m| m.attributes["event_type"].as_str())
        .collect();
    assert_eq!(types, ["sigma.decrypt.decrypted", "sigma.decrypt.rejected"]);
    let decrypted = messages[0].json().unwrap();
    assert_eq!(decrypted["object"], format!("gs://{TRIGGER}/{SOURCE_NAME}"));
    assert_eq!(decrypted["generation"], generation.to_string());
    assert_eq!(
        decrypted["detail"]["output"],
        format!("gs://{OUTPUT}/{OUTPUT_NAME}")
    );
    assert_eq!(decrypted["detail"]["generation"], written["generation"]);
    let rejected = messages[1].json().unwrap();
    assert_eq!(rejected["detail"]["code"], "invalid_token");
    let text = String::from_utf8_lossy(&messages[1].data);
    assert!(!text.contains(&key.to_base64()), "{text}");
}

#[tokio::test]
async fn an_output_written_from_one_trigger_bucket_is_never_overwritten_from_another() {
    const SECOND: &str = "company_second_trigger_bucket";
    let key = Key::generate();
    let mut config = config(&[&key]);
    config.trigger_buckets.push(SECOND.parse().unwrap());
    let gcs = sigma_fakes::gcs::FakeGcs::start(&[TRIGGER, SECOND, OUTPUT])
        .await
        .unwrap();
    let service = Service::start_on(gcs, config).await;
    service
        .upload(token(&key, &gzip(b"from the first bucket")))
        .await;
    let (status, first) = service.decrypt(SOURCE_NAME).await;
    assert_eq!(status, 200, "{first}");
    // A later upload of the same name to the other bucket: a newer generation.
    service
        .gcs
        .put(
            SECOND,
            SOURCE_NAME,
            token(&key, &gzip(b"from the second bucket")),
        )
        .await
        .unwrap();

    let (status, body) = service
        .post(json!({"bucket": SECOND, "name": SOURCE_NAME}))
        .await;

    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "output_conflict", "{body}");
    assert_eq!(body["error"]["retryable"], false, "{body}");
    assert_eq!(
        service.gcs.get(OUTPUT, OUTPUT_NAME).await.unwrap().unwrap(),
        gzip(b"from the first bucket")
    );
    let (status, again) = service.decrypt(SOURCE_NAME).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["skipped"], true, "{again}");
}

#[tokio::test]
async fn names_beyond_ascii_are_decrypted_once_and_their_duplicates_skipped() {
    let key = Key::generate();
    let service = Service::start(config(&[&key])).await;
    for name in [
        "datos/año/ñandú.gz.encrypted",
        "data/with space/a b.gz.encrypted",
        "data/hash#tag.gz.encrypted",
        "data/question?x=1.gz.encrypted",
        "data/percent%20not-a-space%.gz.encrypted",
        "data/plus+sign.gz.encrypted",
        "data/日本/ü ñ #?%+.gz.encrypted",
    ] {
        let plaintext = gzip(name.as_bytes());
        let generation = service
            .gcs
            .put(TRIGGER, name, token(&key, &plaintext))
            .await
            .unwrap();
        let output = name.strip_suffix(".encrypted").unwrap();

        let (status, first) = service.decrypt(name).await;
        let (again_status, again) = service.decrypt(name).await;

        assert_eq!(status, 200, "{name}: {first}");
        assert_eq!(first["name"], output, "{name}");
        assert_eq!(first["skipped"], false, "{name}");
        assert_eq!(
            service.gcs.get(OUTPUT, output).await.unwrap().unwrap(),
            plaintext,
            "{name}"
        );
        assert_eq!(again_status, 200, "{name}: {again}");
        assert_eq!(
            again["skipped"], true,
            "{name}: the duplicate was decrypted again"
        );
        assert_eq!(again["generation"], first["generation"], "{name}");
        let stored = service.gcs.metadata(OUTPUT, output).await.unwrap().unwrap();
        assert_eq!(
            stored.metadata["sigma-source-generation"],
            generation.to_string()
        );
        assert_eq!(
            percent_encoding::percent_decode_str(&stored.metadata["sigma-source-name"])
                .decode_utf8()
                .unwrap(),
            name,
            "the recorded name decodes to the source name"
        );
    }
}

#[tokio::test]
async fn refusals_of_the_name_and_the_announced_size_publish_rejected_with_the_generation() {
    const TOPIC: &str = "projects/p/topics/sigma-events";
    let pubsub = sigma_fakes::pubsub::FakePubsub::start(&[TOPIC])
        .await
        .unwrap();
    let events = sigma_shared::events::Events::connect(
        Some(TOPIC.parse().unwrap()),
        Some(pubsub.emulator_host()),
    )
    .await
    .unwrap();
    let key = Key::generate();
    let mut config = config(&[&key]);
    config.max_object_bytes = Some(1000);
    let gcs = sigma_fakes::gcs::FakeGcs::start(&[TRIGGER, OUTPUT])
        .await
        .unwrap();
    let service = Service::start_with_events(gcs, config, events).await;
    let wrong_key_generation = service
        .gcs
        .put(
            TRIGGER,
            "data/bad.gz.encrypted",
            token(&Key::generate(), &gzip(b"x")),
        )
        .await
        .unwrap();

    let unpinned = service.decrypt("data/bad.gz.encrypted").await;
    let too_large = service
        .post(json!({"bucket": TRIGGER, "name": SOURCE_NAME, "size": "5000", "generation": "17"}))
        .await;
    let not_encrypted = service
        .post(json!({"bucket": TRIGGER, "name": "data/plain.gz", "generation": 18}))
        .await;

    assert_eq!(unpinned.0, 422, "{}", unpinned.1);
    assert_eq!(too_large.0, 413, "{}", too_large.1);
    assert_eq!(not_encrypted.0, 422, "{}", not_encrypted.1);
    let messages = pubsub.wait_for(3).await;
    let rejected: Vec<serde_json::Value> = messages.iter().map(|m| m.json().unwrap()).collect();
    for event in &rejected {
        assert_eq!(event["event_type"], "sigma.decrypt.rejected", "{event}");
    }
    let summary: Vec<(&str, &str, &str)> = rejected
        .iter()
        .map(|e| {
            (
                e["object"].as_str().unwrap(),
                e["generation"].as_str().unwrap_or("null"),
                e["detail"]["code"].as_str().unwrap(),
            )
        })
        .collect();
    let bad = format!("gs://{TRIGGER}/data/bad.gz.encrypted");
    let source = format!("gs://{TRIGGER}/{SOURCE_NAME}");
    let plain = format!("gs://{TRIGGER}/data/plain.gz");
    let wrong_key_generation = wrong_key_generation.to_string();
    assert_eq!(
        summary,
        [
            (bad.as_str(), wrong_key_generation.as_str(), "invalid_token"),
            (source.as_str(), "17", "object_too_large"),
            (plain.as_str(), "18", "not_encrypted"),
        ]
    );
}
