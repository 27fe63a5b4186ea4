//! Start-up: keys from Secret Manager (against the fake) and configuration from the
//! environment. This is the only test binary that sets environment variables, and it does
//! so from a single test, so nothing races.

mod common;

use common::*;
use serde_json::json;
use sigma_decrypt::config::Config;
use sigma_decrypt::fernet::Key;
use sigma_decrypt::keys::KeySource;
use sigma_fakes::gcs::FakeGcs;
use sigma_fakes::secretmanager::FakeSecretManager;
use sigma_shared::events::Events;

fn from_secret(version: &str, secrets: &FakeSecretManager) -> KeySource {
    KeySource::Secret {
        version: version.parse().unwrap(),
        endpoint: Some(secrets.endpoint.clone()),
    }
}

#[tokio::test]
async fn keys_from_a_secret_version_decrypt_tokens_of_every_key_in_it() {
    let secrets = FakeSecretManager::start().await.unwrap();
    let (newest, older) = (Key::generate(), Key::generate());
    let version = secrets.add_version(
        "projects/p/secrets/fernet-keys",
        format!("{}\n{}\n", newest.to_base64(), older.to_base64()),
    );
    let mut config = config(&[&newest]);
    config.keys = from_secret(&version, &secrets);
    let gcs = FakeGcs::start(&[TRIGGER, OUTPUT]).await.unwrap();
    let app = sigma_decrypt::app::build(config, storage(&gcs).await, Events::disabled())
        .await
        .unwrap();
    let address = sigma_shared::server::spawn(app).await.unwrap();
    gcs.put(TRIGGER, SOURCE_NAME, token(&older, &gzip(b"rotated")))
        .await
        .unwrap();

    let response = reqwest::Client::new()
        .post(format!("http://{address}/decrypt"))
        .json(&json!({"bucket": TRIGGER, "name": SOURCE_NAME}))
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), 200);
    assert_eq!(
        gcs.get(OUTPUT, OUTPUT_NAME).await.unwrap().unwrap(),
        gzip(b"rotated")
    );
    assert_eq!(secrets.accesses(), 1);
}

#[tokio::test]
async fn the_latest_alias_reads_the_newest_version() {
    let secrets = FakeSecretManager::start().await.unwrap();
    secrets.add_version("projects/p/secrets/k", Key::generate().to_base64());
    secrets.add_version(
        "projects/p/secrets/k",
        format!(
            "{},{}",
            Key::generate().to_base64(),
            Key::generate().to_base64()
        ),
    );
    let keys = from_secret("projects/p/secrets/k/versions/latest", &secrets)
        .load()
        .await
        .unwrap();
    assert_eq!(keys.len(), 2);
}

#[tokio::test]
async fn unusable_secrets_fail_start_up_naming_the_variable_and_never_the_payload() {
    let secrets = FakeSecretManager::start().await.unwrap();
    let payload_looking_secret = "not-a-key-but-still-secret-material";
    let bad = secrets.add_version("projects/p/secrets/bad", payload_looking_secret);
    let empty = secrets.add_version("projects/p/secrets/empty", "\n");
    secrets.add_version("projects/p/secrets/denied", Key::generate().to_base64());
    secrets.deny("projects/p/secrets/denied");
    for version in [
        bad.as_str(),
        empty.as_str(),
        "projects/p/secrets/missing/versions/1",
        "projects/p/secrets/bad/versions/7",
        "projects/p/secrets/denied/versions/1",
    ] {
        let error = from_secret(version, &secrets)
            .load()
            .await
            .unwrap_err()
            .to_string();
        assert!(error.starts_with("FERNET_KEYS_SECRET: "), "{error}");
        assert!(error.contains(version), "{error}");
        assert!(!error.contains(payload_looking_secret), "{error}");
    }
}

#[test]
fn configuration_is_read_from_the_environment_and_bad_values_name_their_variable() {
    let key = Key::generate().to_base64();
    let set = |vars: &[(&str, &str)]| {
        for var in [
            "OUTPUT_BUCKET",
            "TRIGGER_BUCKETS",
            "FERNET_KEYS",
            "FERNET_KEYS_SECRET",
            "SECRET_MANAGER_ENDPOINT",
            "FERNET_TTL_SECONDS",
            "MAX_OBJECT_BYTES",
            "VERIFY_GZIP",
            "UPLOAD_CHUNK_MIB",
            "FERNET_KEYS_REFRESH_SECONDS",
        ] {
            // SAFETY: the only test in this binary that touches the environment.
            unsafe { std::env::remove_var(var) };
        }
        for (var, value) in vars {
            unsafe { std::env::set_var(var, value) };
        }
        Config::from_env()
    };

    let config = set(&[
        ("OUTPUT_BUCKET", "company_output_bucket"),
        ("TRIGGER_BUCKETS", "trig_a, trig_b"),
        ("FERNET_KEYS", &format!("{key},{key}")),
        ("FERNET_TTL_SECONDS", "3600"),
        ("MAX_OBJECT_BYTES", "1073741824"),
        ("VERIFY_GZIP", "true"),
        ("UPLOAD_CHUNK_MIB", "16"),
        ("FERNET_KEYS_REFRESH_SECONDS", "60"),
    ])
    .unwrap();
    assert_eq!(config.upload.chunk_bytes, 16 << 20);
    assert_eq!(config.keys_refresh, std::time::Duration::from_secs(60));
    assert_eq!(config.trigger_buckets.len(), 2);
    assert_eq!(config.ttl, Some(HOUR));
    assert_eq!(config.max_object_bytes, Some(1 << 30));
    assert!(config.verify_gzip);
    assert!(matches!(config.keys, KeySource::Keys(ref ring) if ring.len() == 2));

    let secret = set(&[
        ("OUTPUT_BUCKET", "out"),
        ("FERNET_KEYS_SECRET", "projects/p/secrets/s/versions/latest"),
        ("SECRET_MANAGER_ENDPOINT", "http://127.0.0.1:9"),
    ])
    .unwrap();
    assert!(matches!(
        secret.keys,
        KeySource::Secret {
            endpoint: Some(_),
            ..
        }
    ));
    assert!(!secret.verify_gzip);

    let refused = [
        (vec![("FERNET_KEYS", key.as_str())], "OUTPUT_BUCKET"),
        (
            vec![("OUTPUT_BUCKET", "Not A Bucket"), ("FERNET_KEYS", &key)],
            "OUTPUT_BUCKET",
        ),
        (vec![("OUTPUT_BUCKET", "out")], "FERNET_KEYS_SECRET"),
        (
            vec![
                ("OUTPUT_BUCKET", "out"),
                ("FERNET_KEYS", "c2VjcmV0LWJ1dC13cm9uZw"),
            ],
            "FERNET_KEYS",
        ),
        (
            vec![
                ("OUTPUT_BUCKET", "out"),
                ("FERNET_KEYS", &key),
                ("FERNET_KEYS_SECRET", "projects/p/secrets/s/versions/1"),
            ],
            "FERNET_KEYS",
        ),
        (
            vec![
                ("OUTPUT_BUCKET", "out"),
                ("FERNET_KEYS_SECRET", "fernet-keys"),
            ],
            "FERNET_KEYS_SECRET",
        ),
        (
            vec![
                ("OUTPUT_BUCKET", "out"),
                ("FERNET_KEYS", &key),
                ("TRIGGER_BUCKETS", "ok,BAD"),
            ],
            "TRIGGER_BUCKETS",
        ),
        (
            vec![
                ("OUTPUT_BUCKET", "out"),
                ("FERNET_KEYS", &key),
                ("FERNET_TTL_SECONDS", "1h"),
            ],
            "FERNET_TTL_SECONDS",
        ),
        (
            vec![
                ("OUTPUT_BUCKET", "out"),
                ("FERNET_KEYS", &key),
                ("MAX_OBJECT_BYTES", "-1"),
            ],
            "MAX_OBJECT_BYTES",
        ),
        (
            vec![
                ("OUTPUT_BUCKET", "out"),
                ("FERNET_KEYS", &key),
                ("VERIFY_GZIP", "yes"),
            ],
            "VERIFY_GZIP",
        ),
        (
            vec![
                ("OUTPUT_BUCKET", "out"),
                ("FERNET_KEYS", &key),
                ("UPLOAD_CHUNK_MIB", "0"),
            ],
            "UPLOAD_CHUNK_MIB",
        ),
        (
            vec![
                ("OUTPUT_BUCKET", "out"),
                ("FERNET_KEYS", &key),
                ("FERNET_KEYS_REFRESH_SECONDS", "5m"),
            ],
            "FERNET_KEYS_REFRESH_SECONDS",
        ),
    ];
    for (vars, variable) in refused {
        let error = set(&vars).unwrap_err();
        assert_eq!(error.var, variable, "{error}");
        assert!(
            !error.to_string().contains("c2VjcmV0LWJ1dC13cm9uZw"),
            "{error}"
        );
        assert!(!error.to_string().contains(&key), "{error}");
    }
}

#[tokio::test]
async fn a_key_added_to_the_secret_after_start_up_decrypts_without_a_restart() {
    let secrets = FakeSecretManager::start().await.unwrap();
    let (old, new) = (Key::generate(), Key::generate());
    secrets.add_version("projects/p/secrets/fernet-keys", old.to_base64());
    let mut config = config(&[&old]);
    config.keys = from_secret("projects/p/secrets/fernet-keys/versions/latest", &secrets);
    let gcs = FakeGcs::start(&[TRIGGER, OUTPUT]).await.unwrap();
    let app = sigma_decrypt::app::build(config, storage(&gcs).await, Events::disabled())
        .await
        .unwrap();
    let address = sigma_shared::server::spawn(app).await.unwrap();
    let http = reqwest::Client::new();
    let decrypt = |name: &'static str| {
        http.post(format!("http://{address}/decrypt"))
            .json(&json!({"bucket": TRIGGER, "name": name}))
            .send()
    };
    // The rotation: a new version whose newest key comes first.
    secrets.add_version(
        "projects/p/secrets/fernet-keys",
        format!("{}\n{}\n", new.to_base64(), old.to_base64()),
    );
    gcs.put(TRIGGER, SOURCE_NAME, token(&new, &gzip(b"rotated")))
        .await
        .unwrap();
    gcs.put(
        TRIGGER,
        "data/foreign.gz.encrypted",
        token(&Key::generate(), &gzip(b"x")),
    )
    .await
    .unwrap();

    let rotated = decrypt(SOURCE_NAME).await.unwrap();
    let foreign = decrypt("data/foreign.gz.encrypted").await.unwrap();

    assert_eq!(rotated.status(), 200, "{}", rotated.text().await.unwrap());
    assert_eq!(
        gcs.get(OUTPUT, OUTPUT_NAME).await.unwrap().unwrap(),
        gzip(b"rotated")
    );
    assert_eq!(foreign.status(), 422);
    assert_eq!(
        secrets.accesses(),
        2,
        "start-up and one re-read: the foreign key's failure soon after is rate-limited"
    );
}

#[tokio::test]
async fn keys_from_a_secret_are_refreshed_periodically() {
    let secrets = FakeSecretManager::start().await.unwrap();
    let (old, new) = (Key::generate(), Key::generate());
    secrets.add_version("projects/p/secrets/k", old.to_base64());
    let source = from_secret("projects/p/secrets/k/versions/latest", &secrets);
    let keys = std::sync::Arc::new(sigma_decrypt::keys::LiveKeys::load(source).await.unwrap());
    keys.clone()
        .refresh_every(std::time::Duration::from_millis(200));

    secrets.add_version(
        "projects/p/secrets/k",
        format!("{},{}", new.to_base64(), old.to_base64()),
    );
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;

    assert_eq!(keys.current().len(), 2);
    assert!(secrets.accesses() >= 2);
}
