//! The streaming Fernet core against the specification's vectors and, as the reference for
//! everything else, Python `cryptography` (run from the project's `.venv`).

use std::cell::{Cell, RefCell};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::rc::Rc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use sigma_decrypt::fernet::{
    DecryptError, Decryptor, Key, KeyRing, TokenError, encrypt, encrypt_at,
};

fn spec() -> Value {
    serde_json::from_str(include_str!("../fixtures/fernet_spec.json")).unwrap()
}

/// Hands out `data` in reads of the sizes given, cycling through them.
struct Chunked<'a> {
    data: &'a [u8],
    sizes: &'a [usize],
    next: usize,
}

impl Read for Chunked<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let size = self.sizes[self.next % self.sizes.len()]
            .min(buf.len())
            .min(self.data.len());
        self.next += 1;
        buf[..size].copy_from_slice(&self.data[..size]);
        self.data = &self.data[size..];
        Ok(size)
    }
}

fn decrypt_in_reads(
    decryptor: &Decryptor,
    token: &[u8],
    sizes: &[usize],
) -> Result<Vec<u8>, DecryptError> {
    decryptor
        .decrypt(
            || {
                Ok(Chunked {
                    data: token,
                    sizes,
                    next: 0,
                })
            },
            || Ok(Vec::new()),
        )
        .map(|d| d.output)
}

fn decrypt(decryptor: &Decryptor, token: &[u8]) -> Result<Vec<u8>, DecryptError> {
    decrypt_in_reads(decryptor, token, &[1 << 20])
}

fn token_error(result: Result<Vec<u8>, DecryptError>) -> TokenError {
    match result {
        Err(DecryptError::Token(e)) => e,
        other => panic!("expected a token error, got {other:?}"),
    }
}

/// A writer whose bytes stay inspectable after the decryptor dropped it.
struct Recorder(Rc<RefCell<Vec<u8>>>);

impl Write for Recorder {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.borrow_mut().write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn make_token(key: &Key, plaintext: &[u8]) -> Vec<u8> {
    let mut token = Vec::new();
    encrypt(key, plaintext, &mut token).unwrap();
    token
}

fn ring(keys: &[&Key]) -> KeyRing {
    KeyRing::new(keys.iter().map(|k| (*k).clone()).collect()).unwrap()
}

/// Python `cryptography`, one long-lived process answering JSON lines.
struct Python {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Python {
    fn start() -> Self {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let python = std::env::var("SIGMA_PYTHON")
            .map(PathBuf::from)
            .unwrap_or_else(|_| root.join("../../.venv/bin/python"));
        let mut child = Command::new(&python)
            .arg(root.join("tests/fernet_oracle.py"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{} (run `make deps`): {e}", python.display()));
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Self {
            child,
            stdin,
            stdout,
        }
    }

    fn ask(&mut self, request: Value) -> Value {
        writeln!(self.stdin, "{request}").unwrap();
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        serde_json::from_str(&line).unwrap()
    }

    /// Python's plaintext, or `None` where it raises `InvalidToken`.
    fn decrypt(
        &mut self,
        keys: &[&Key],
        token: &[u8],
        ttl_now: Option<(u64, u64)>,
    ) -> Option<Vec<u8>> {
        let keys: Vec<String> = keys.iter().map(|k| k.to_base64()).collect();
        let (ttl, now) = ttl_now.map_or((None, None), |(t, n)| (Some(t), Some(n)));
        let answer = self.ask(json!({"op": "decrypt", "keys": keys, "token": STANDARD.encode(token), "ttl": ttl, "now": now}));
        (answer["ok"] == true).then(|| {
            STANDARD
                .decode(answer["plaintext"].as_str().unwrap())
                .unwrap()
        })
    }

    fn encrypt(&mut self, key: &Key, plaintext: &[u8]) -> Vec<u8> {
        let answer = self.ask(json!({"op": "encrypt", "key": key.to_base64(), "plaintext": STANDARD.encode(plaintext)}));
        STANDARD.decode(answer["token"].as_str().unwrap()).unwrap()
    }
}

impl Drop for Python {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

#[test]
fn encryption_reproduces_the_specs_generate_vectors() {
    let spec = spec();
    let key: Key = spec["secret"].as_str().unwrap().parse().unwrap();
    for vector in spec["generate"].as_array().unwrap() {
        let iv: Vec<u8> = vector["iv"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b.as_u64().unwrap() as u8)
            .collect();
        let mut token = Vec::new();
        encrypt_at(
            &key,
            vector["now"].as_u64().unwrap(),
            iv.try_into().unwrap(),
            vector["src"].as_str().unwrap().as_bytes(),
            &mut token,
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(token).unwrap(),
            vector["token"].as_str().unwrap()
        );
    }
}

#[test]
fn the_specs_verify_and_invalid_vectors_get_pythons_verdict() {
    let spec = spec();
    let key: Key = spec["secret"].as_str().unwrap().parse().unwrap();
    let vectors = spec["verify"]
        .as_array()
        .unwrap()
        .iter()
        .chain(spec["invalid"].as_array().unwrap());
    for vector in vectors {
        let decryptor = Decryptor::new(ring(&[&key]))
            .with_ttl(Some(Duration::from_secs(
                vector["ttl_sec"].as_u64().unwrap(),
            )))
            .with_clock(vector["now"].as_u64().unwrap());
        let token = vector["token"].as_str().unwrap().as_bytes();
        let result = decrypt(&decryptor, token);
        let desc = vector["desc"].as_str().unwrap_or("verify");
        assert_eq!(
            result.is_ok(),
            vector["python_accepts"].as_bool().unwrap(),
            "{desc}: {result:?}"
        );
        if let Ok(plaintext) = result {
            assert_eq!(plaintext, b"hello", "{desc}");
        }
    }
}

#[test]
fn every_read_split_decrypts_the_same() {
    let key = Key::generate();
    let decryptor = Decryptor::new(ring(&[&key]));
    for len in [0, 1, 15, 16, 17, 31, 32, 33, 100] {
        let plaintext: Vec<u8> = (0..len as u8).collect();
        let token = make_token(&key, &plaintext);
        for split in 0..=token.len() {
            let (a, b) = token.split_at(split);
            let reads = [a.len().max(1), b.len().max(1)];
            assert_eq!(
                decrypt_in_reads(&decryptor, &token, &reads).unwrap(),
                plaintext,
                "len {len} split {split}"
            );
        }
        for size in 1..=70 {
            assert_eq!(
                decrypt_in_reads(&decryptor, &token, &[size]).unwrap(),
                plaintext,
                "len {len} reads of {size}"
            );
        }
    }
}

#[test]
fn large_tokens_decrypt_in_uneven_reads() {
    let key = Key::generate();
    let decryptor = Decryptor::new(ring(&[&key]));
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let plaintext: Vec<u8> = (0..(3 << 20) + 5).map(|_| rng.random()).collect();
    let token = make_token(&key, &plaintext);
    for sizes in [&[1 << 20][..], &[65_537, 3, 1_000_003], &[4096]] {
        assert_eq!(
            decrypt_in_reads(&decryptor, &token, sizes).unwrap(),
            plaintext
        );
    }
}

#[test]
fn a_trailing_newline_is_accepted_as_python_accepts_it() {
    let key = Key::generate();
    let mut token = make_token(&key, b"fecha;valor\n");
    token.extend_from_slice(b"\r\n");
    assert_eq!(
        decrypt(&Decryptor::new(ring(&[&key])), &token).unwrap(),
        b"fecha;valor\n"
    );
}

#[test]
fn tokens_cross_between_python_and_sigma_in_both_directions() {
    let mut python = Python::start();
    let key = Key::generate();
    let decryptor = Decryptor::new(ring(&[&key]));
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    for len in [0usize, 1, 15, 16, 17, 4095, 100_003, (1 << 20) + 3] {
        let plaintext: Vec<u8> = (0..len).map(|_| rng.random()).collect();
        let from_python = python.encrypt(&key, &plaintext);
        assert_eq!(
            decrypt(&decryptor, &from_python).unwrap(),
            plaintext,
            "python's token of {len} bytes"
        );
        let ours = make_token(&key, &plaintext);
        assert_eq!(
            python.decrypt(&[&key], &ours, None).unwrap(),
            plaintext,
            "our token of {len} bytes"
        );
    }
}

/// Random damage of the kinds files suffer (bit flips, truncation, stray bytes, line
/// breaks, padding games): whatever Python accepts, we accept with the same plaintext, and
/// whatever it rejects, we reject.
#[test]
fn damaged_tokens_get_the_same_verdict_as_python() {
    let mut python = Python::start();
    let key = Key::generate();
    let other = Key::generate();
    let decryptor = Decryptor::new(ring(&[&key]));
    let mut rng = rand::rngs::StdRng::seed_from_u64(2024);
    let mut accepted = 0;
    for case in 0..400 {
        let plaintext: Vec<u8> = (0..rng.random_range(0..80)).map(|_| rng.random()).collect();
        let mut token = make_token(if case % 17 == 0 { &other } else { &key }, &plaintext);
        for _ in 0..rng.random_range(1..=3) {
            let at = rng.random_range(0..=token.len());
            match rng.random_range(0..8) {
                0 if at < token.len() => token[at] ^= 1 << rng.random_range(0..8),
                1 => token.truncate(at),
                2 => token.insert(at, *b"=\n +/-_*A".get(rng.random_range(0..9)).unwrap()),
                3 if at < token.len() => {
                    token.remove(at);
                }
                4 => token.extend_from_slice(b"=="),
                5 => token.extend_from_slice(b"\n"),
                6 => {
                    let junk: Vec<u8> = (0..rng.random_range(1..5)).map(|_| rng.random()).collect();
                    token.extend(junk);
                }
                _ => {}
            }
        }
        let ours = decrypt_in_reads(&decryptor, &token, &[rng.random_range(1..40)]).ok();
        let theirs = python.decrypt(&[&key], &token, None);
        assert_eq!(
            ours,
            theirs,
            "case {case}: token {:?}",
            String::from_utf8_lossy(&token)
        );
        accepted += usize::from(theirs.is_some());
    }
    assert!(
        accepted > 20,
        "the damage should leave some tokens valid, as Python's lenient decoding does"
    );
}

#[test]
fn every_truncation_is_rejected() {
    let key = Key::generate();
    let decryptor = Decryptor::new(ring(&[&key]));
    let token = make_token(&key, &[7u8; 50]);
    for len in 0..token.len() - 2 {
        assert!(
            decrypt(&decryptor, &token[..len]).is_err(),
            "prefix of {len} accepted"
        );
    }
}

#[test]
fn ttl_follows_pythons_rules_including_clock_skew() {
    let mut python = Python::start();
    let key = Key::generate();
    let mut token = Vec::new();
    let created = 1_700_000_000;
    encrypt_at(&key, created, [3; 16], &b"x"[..], &mut token).unwrap();
    for (ttl, now) in [
        (60, created),
        (60, created + 60),
        (60, created + 61),
        (60, created - 60),
        (60, created - 61),
        (0, created),
        (0, created + 1),
    ] {
        let decryptor = Decryptor::new(ring(&[&key]))
            .with_ttl(Some(Duration::from_secs(ttl)))
            .with_clock(now);
        let ours = decrypt(&decryptor, &token);
        let theirs = python.decrypt(&[&key], &token, Some((ttl, now)));
        assert_eq!(
            ours.is_ok(),
            theirs.is_some(),
            "ttl {ttl} now {now}: {ours:?}"
        );
        if let Err(e) = ours {
            assert_eq!(token_error(Err(e)).code(), "token_expired");
        }
    }
    let no_ttl = Decryptor::new(ring(&[&key])).with_clock(created + 10_000_000);
    assert!(
        decrypt(&no_ttl, &token).is_ok(),
        "without a TTL, age does not matter"
    );
}

#[test]
fn a_token_only_an_older_key_opens_is_decrypted_with_it() {
    let (newest, middle, oldest) = (Key::generate(), Key::generate(), Key::generate());
    let decryptor = Decryptor::new(ring(&[&newest, &middle, &oldest]));
    let token = make_token(&oldest, b"rotated");
    let opens = Cell::new(0);
    let creates = Cell::new(0);
    let decrypted = decryptor
        .decrypt(
            || {
                opens.set(opens.get() + 1);
                Ok(&token[..])
            },
            || {
                creates.set(creates.get() + 1);
                Ok(Vec::new())
            },
        )
        .unwrap();
    assert_eq!(decrypted.output, b"rotated");
    assert_eq!(decrypted.key_index, 2);
    assert_eq!(
        (opens.get(), creates.get()),
        (3, 2),
        "decrypt with the newest, identify, decrypt with the match"
    );
}

#[test]
fn the_newest_key_costs_a_single_pass() {
    let (newest, older) = (Key::generate(), Key::generate());
    let token = make_token(&newest, b"common case");
    let opens = Cell::new(0);
    let decrypted = Decryptor::new(ring(&[&newest, &older]))
        .decrypt(
            || {
                opens.set(opens.get() + 1);
                Ok(&token[..])
            },
            || Ok(Vec::new()),
        )
        .unwrap();
    assert_eq!((decrypted.key_index, opens.get()), (0, 1));
}

#[test]
fn no_configured_key_means_a_signature_error_and_the_last_block_is_never_written() {
    let token = make_token(&Key::generate(), &[9u8; 4096]);
    let decryptor = Decryptor::new(ring(&[&Key::generate(), &Key::generate()]));
    assert_eq!(
        token_error(decrypt(&decryptor, &token)),
        TokenError::Signature
    );

    let key = Key::generate();
    let mut tampered = make_token(&key, &[9u8; 4100]);
    let last = tampered.len() - 10;
    tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
    let seen = Rc::new(RefCell::new(Vec::new()));
    let result =
        Decryptor::new(ring(&[&key])).decrypt(|| Ok(&tampered[..]), || Ok(Recorder(seen.clone())));
    assert!(matches!(
        result,
        Err(DecryptError::Token(TokenError::Signature))
    ));
    let seen = seen.borrow().len();
    assert_eq!(
        seen, 4096,
        "everything but the final block streams; that block waits for the tag"
    );
}

#[test]
fn read_and_write_failures_are_reported_as_such() {
    let key = Key::generate();
    let token = make_token(&key, &[1u8; 100_000]);
    let decryptor = Decryptor::new(ring(&[&key]));
    struct Failing;
    impl Read for Failing {
        fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
            Err(io::Error::other("connection reset"))
        }
    }
    impl Write for Failing {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::other("disk full"))
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    assert!(matches!(
        decryptor.decrypt(|| Ok(Failing), || Ok(Vec::new())),
        Err(DecryptError::Read(_))
    ));
    assert!(matches!(
        decryptor.decrypt(|| Ok(&token[..]), || Ok(Failing)),
        Err(DecryptError::Write(_))
    ));
}

/// The `fernet` crate (RustCrypto backend) as a second, independent implementation.
fn crate_fernet(key: &Key) -> fernet::Fernet {
    fernet::Fernet::new(&key.to_base64()).unwrap()
}

/// The crate's verdict; it takes tokens as text, so bytes that are not UTF-8 are refused.
fn crate_decrypt(key: &Key, token: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(token).ok()?;
    crate_fernet(key).decrypt(text).ok()
}

#[test]
fn tokens_cross_between_the_fernet_crate_and_sigma_byte_for_byte() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    for case in 0..200 {
        let key = Key::generate();
        let len = match case % 4 {
            0 => rng.random_range(0..64),
            1 => rng.random_range(0..4096),
            2 => rng.random_range(0..100_000),
            _ => (1 << 20) + rng.random_range(0..33),
        };
        let plaintext: Vec<u8> = (0..len).map(|_| rng.random()).collect();
        let decryptor = Decryptor::new(ring(&[&key]));

        let from_crate = crate_fernet(&key).encrypt(&plaintext);
        let ours = make_token(&key, &plaintext);

        assert_eq!(
            decrypt_in_reads(
                &decryptor,
                from_crate.as_bytes(),
                &[rng.random_range(1..70_000)]
            )
            .unwrap(),
            plaintext,
            "case {case}: the crate's token of {len} bytes"
        );
        assert_eq!(
            crate_decrypt(&key, &ours).unwrap(),
            plaintext,
            "case {case}: our token of {len} bytes"
        );
    }
}

/// Where the crate and Python disagree, sigma sides with Python (the function it replaces).
/// The crate decodes base64 its own way (`URL_SAFE_NO_PAD` after trimming every `=`):
/// - stricter: Python's `urlsafe_b64decode` skips characters outside the alphabet and
///   tolerates extra padding, so a token with a line break, a space or a stray `*` inside,
///   or `==` in the middle, opens in Python and sigma and not in the crate;
/// - more lenient: a token missing its `=` padding opens in the crate, while Python (and
///   sigma) refuse it ("Incorrect padding"); padded again, Python opens it too.
#[test]
fn damaged_tokens_get_the_crates_verdict_except_where_its_base64_differs_from_pythons() {
    let mut python = Python::start();
    let key = Key::generate();
    let other = Key::generate();
    let decryptor = Decryptor::new(ring(&[&key]));
    let mut rng = rand::rngs::StdRng::seed_from_u64(4242);
    let (mut agreed, mut stricter, mut lenient) = (0, 0, 0);
    for case in 0..600 {
        let plaintext: Vec<u8> = (0..rng.random_range(0..80)).map(|_| rng.random()).collect();
        let mut token = make_token(if case % 13 == 0 { &other } else { &key }, &plaintext);
        for _ in 0..rng.random_range(1..=3) {
            let at = rng.random_range(0..=token.len());
            match rng.random_range(0..8) {
                0 if at < token.len() => token[at] ^= 1 << rng.random_range(0..8),
                1 => token.truncate(at),
                2 => token.insert(at, *b"=\n +/-_*A".get(rng.random_range(0..9)).unwrap()),
                3 if at < token.len() => {
                    token.remove(at);
                }
                4 => token.extend_from_slice(b"=="),
                5 => token.extend_from_slice(b"\n"),
                6 => {
                    let junk: Vec<u8> = (0..rng.random_range(1..5)).map(|_| rng.random()).collect();
                    token.extend(junk);
                }
                _ => {}
            }
        }
        let ours = decrypt_in_reads(&decryptor, &token, &[rng.random_range(1..40)]).ok();
        let from_crate = crate_decrypt(&key, &token);
        if ours == from_crate {
            agreed += 1;
            continue;
        }
        let from_python = python.decrypt(&[&key], &token, None);
        let text = String::from_utf8_lossy(&token);
        assert_eq!(
            ours, from_python,
            "case {case}: sigma and Python differ on {text:?}"
        );
        if from_crate.is_none() {
            stricter += 1;
            continue;
        }
        let unpadded = text.trim_end_matches('=');
        let padded = format!("{unpadded}{}", "=".repeat((4 - unpadded.len() % 4) % 4));
        assert_eq!(
            python.decrypt(&[&key], padded.as_bytes(), None),
            from_crate,
            "case {case}: the crate accepts {text:?}, which is not merely missing its padding"
        );
        lenient += 1;
    }
    assert!(agreed > 400, "{agreed} agreements");
    assert!(
        stricter > 0,
        "the damage should include what only the crate refuses"
    );
    assert!(lenient > 0, "the damage should include missing padding");
}

/// The other difference: without a TTL, Python (and sigma) accept a token stamped in the
/// future; the crate refuses one more than 60 s ahead, TTL or not.
#[test]
fn without_a_ttl_a_future_token_opens_in_sigma_and_python_but_not_in_the_crate() {
    let mut python = Python::start();
    let key = Key::generate();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut token = Vec::new();
    encrypt_at(
        &key,
        now + 3600,
        rand::random(),
        &b"from the future"[..],
        &mut token,
    )
    .unwrap();

    let ours = decrypt(&Decryptor::new(ring(&[&key])), &token).ok();

    assert_eq!(ours.as_deref(), Some(&b"from the future"[..]));
    assert_eq!(python.decrypt(&[&key], &token, None), ours);
    assert_eq!(crate_decrypt(&key, &token), None);
}
