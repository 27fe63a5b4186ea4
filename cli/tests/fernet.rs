//! `sigma encrypt|decrypt|keygen` as a person runs them.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn sigma(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sigma"))
        .args(args)
        .env_remove("FERNET_KEYS")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

fn keygen() -> String {
    let out = sigma(&["keygen"], b"");
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn path(dir: &Path, name: &str) -> String {
    dir.join(name).to_str().unwrap().to_owned()
}

fn python() -> PathBuf {
    std::env::var("SIGMA_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python"))
}

#[test]
fn a_file_round_trips_and_python_reads_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let key = keygen();
    let plaintext: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(dir.path().join("plain"), &plaintext).unwrap();
    let enc = sigma(
        &[
            "encrypt",
            "--key",
            &key,
            &path(dir.path(), "plain"),
            &path(dir.path(), "token"),
        ],
        b"",
    );
    assert!(
        enc.status.success(),
        "{}",
        String::from_utf8_lossy(&enc.stderr)
    );
    let dec = sigma(
        &[
            "decrypt",
            "--key",
            &key,
            &path(dir.path(), "token"),
            &path(dir.path(), "back"),
        ],
        b"",
    );
    assert!(
        dec.status.success(),
        "{}",
        String::from_utf8_lossy(&dec.stderr)
    );
    assert_eq!(std::fs::read(dir.path().join("back")).unwrap(), plaintext);

    let script = "import sys; from cryptography.fernet import Fernet; sys.stdout.buffer.write(Fernet(sys.argv[1]).decrypt(open(sys.argv[2], 'rb').read()))";
    let by_python = Command::new(python())
        .args(["-c", script, &key, &path(dir.path(), "token")])
        .output()
        .unwrap();
    assert!(
        by_python.status.success(),
        "{}",
        String::from_utf8_lossy(&by_python.stderr)
    );
    assert_eq!(by_python.stdout, plaintext);
}

#[test]
fn a_failed_decryption_leaves_no_output_and_says_why_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let key = keygen();
    std::fs::write(dir.path().join("plain"), vec![5u8; 100_000]).unwrap();
    assert!(
        sigma(
            &[
                "encrypt",
                "--key",
                &key,
                &path(dir.path(), "plain"),
                &path(dir.path(), "token")
            ],
            b""
        )
        .status
        .success()
    );
    let mut token = std::fs::read(dir.path().join("token")).unwrap();
    let middle = token.len() / 2;
    token[middle] = if token[middle] == b'A' { b'B' } else { b'A' };
    std::fs::write(dir.path().join("tampered"), &token).unwrap();

    for (keys, input) in [
        (vec![key.clone()], "tampered"),
        (vec![keygen()], "token"),
        (vec![keygen(), keygen()], "token"),
    ] {
        let mut args = vec!["decrypt".to_owned()];
        for k in &keys {
            args.extend(["--key".to_owned(), k.clone()]);
        }
        args.extend([path(dir.path(), input), path(dir.path(), "out")]);
        let out = sigma(&args.iter().map(String::as_str).collect::<Vec<_>>(), b"");
        assert!(!out.status.success());
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains("signature"), "{stderr}");
        assert!(!stderr.contains(&key), "the key must never be printed");
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            left.len(),
            3,
            "only plain, token and tampered remain: {left:?}"
        );
    }
}

#[test]
fn dash_means_stdin_and_stdout_even_with_several_keys() {
    let (old, new) = (keygen(), keygen());
    let enc = sigma(&["encrypt", "--key", &old, "-", "-"], b"hola, mundo\n");
    assert!(enc.status.success());
    let dec = sigma(
        &["decrypt", "--key", &new, "--key", &old, "-", "-"],
        &enc.stdout,
    );
    assert!(
        dec.status.success(),
        "{}",
        String::from_utf8_lossy(&dec.stderr)
    );
    assert_eq!(dec.stdout, b"hola, mundo\n");
    let wrong = sigma(&["decrypt", "--key", &new, "-", "-"], &enc.stdout);
    assert!(!wrong.status.success());
    assert!(wrong.stdout.is_empty(), "nothing unverified reaches stdout");
}

#[test]
fn ttl_and_bad_keys_are_refused_with_a_reason() {
    let key = keygen();
    let enc = sigma(&["encrypt", "--key", &key, "-", "-"], b"x");
    let fresh = sigma(
        &["decrypt", "--key", &key, "--ttl", "60", "-", "-"],
        &enc.stdout,
    );
    assert!(fresh.status.success());
    let bad = sigma(&["decrypt", "--key", "not-a-key", "-", "-"], &enc.stdout);
    assert!(!bad.status.success());
    let stderr = String::from_utf8(bad.stderr).unwrap();
    assert!(
        stderr.contains("--key") && !stderr.contains("not-a-key"),
        "{stderr}"
    );
}
