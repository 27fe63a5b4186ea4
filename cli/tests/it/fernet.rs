//! `sigma encrypt|decrypt|keygen` as a person runs them.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const SIGMA: &str = env!("CARGO_BIN_EXE_sigma");

fn sigma(args: &[&str], stdin: &[u8]) -> Output {
    run(
        Command::new(SIGMA).args(args).env_remove("FERNET_KEYS"),
        stdin,
    )
}

/// `sigma` with `FERNET_KEYS` set to `keys`.
fn sigma_with_env_keys(keys: &str, args: &[&str], stdin: &[u8]) -> Output {
    run(
        Command::new(SIGMA).args(args).env("FERNET_KEYS", keys),
        stdin,
    )
}

/// `sigma` started by a shell that set `umask` first, as a person's login shell does.
fn sigma_under_umask(umask: &str, args: &[&str]) -> Output {
    let script = format!("umask {umask} && exec \"$0\" \"$@\"");
    run(
        Command::new("sh")
            .args(["-c", &script, SIGMA])
            .args(args)
            .env_remove("FERNET_KEYS"),
        b"",
    )
}

fn run(command: &mut Command, stdin: &[u8]) -> Output {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A command that fails before reading stdin closes it: its exit status tells why.
    match child.stdin.take().unwrap().write_all(stdin) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        written => written.unwrap(),
    }
    child.wait_with_output().unwrap()
}

fn keygen() -> String {
    let out = sigma(&["keygen"], b"");
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// Encrypts `plaintext` with `key` into `dir/name`.
fn encrypt_file(key: &str, plaintext: &[u8], dir: &Path, name: &str) {
    let enc = sigma(&["encrypt", "--key", key, "-", &path(dir, name)], plaintext);
    assert!(
        enc.status.success(),
        "{}",
        String::from_utf8_lossy(&enc.stderr)
    );
}

fn entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
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

#[test]
fn an_interrupted_decryption_leaves_no_plaintext_and_dies_of_the_signal() {
    let input = tempfile::tempdir().unwrap();
    let key = keygen();
    let plaintext: Vec<u8> = (0..8u32 << 20).map(|i| (i % 253) as u8).collect();
    encrypt_file(&key, &plaintext, input.path(), "token");
    let token = std::fs::read(input.path().join("token")).unwrap();

    for (signal, name) in [(15, "TERM"), (2, "INT"), (1, "HUP")] {
        let output = tempfile::tempdir().unwrap();
        let out = path(output.path(), "plain");
        let mut child = Command::new(SIGMA)
            .args(["decrypt", "--key", &key, "-", &out])
            .env_remove("FERNET_KEYS")
            .stdin(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(&token[..token.len() * 3 / 4]).unwrap();
        wait_for_unverified_plaintext(output.path());
        assert!(
            !Path::new(&out).exists(),
            "OUT must not appear before the token has verified"
        );

        let kill = Command::new("kill")
            .args(["-s", name, &child.id().to_string()])
            .status()
            .unwrap();
        assert!(kill.success());
        let status = child.wait().unwrap();
        drop(stdin);

        assert_eq!(
            status.signal(),
            Some(signal),
            "SIG{name}: sigma dies of the signal, so a shell reports {}: {status:?}",
            128 + signal
        );
        assert_eq!(
            entries(output.path()),
            Vec::<String>::new(),
            "SIG{name} left files behind"
        );
    }
}

/// Waits until the staged output beside OUT holds some decrypted bytes.
fn wait_for_unverified_plaintext(dir: &Path) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let written: u64 = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap().len())
            .sum();
        if written > 0 {
            return;
        }
        assert!(Instant::now() < deadline, "no output was ever staged");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn out_gets_the_permissions_the_umask_gives_like_other_tools() {
    let dir = tempfile::tempdir().unwrap();
    let key = keygen();
    std::fs::write(dir.path().join("plain"), b"hola\n").unwrap();
    for (umask, mode) in [("022", 0o644), ("077", 0o600), ("002", 0o664)] {
        let token = path(dir.path(), &format!("token-{umask}"));
        let back = path(dir.path(), &format!("back-{umask}"));
        let plain = path(dir.path(), "plain");
        for (args, out) in [
            (["encrypt", "--key", &key, &plain, &token], &token),
            (["decrypt", "--key", &key, &token, &back], &back),
        ] {
            let run = sigma_under_umask(umask, &args);
            assert!(
                run.status.success(),
                "{}",
                String::from_utf8_lossy(&run.stderr)
            );
            let got = std::fs::metadata(out).unwrap().permissions().mode() & 0o777;
            assert_eq!(got, mode, "{} under umask {umask}: {got:o}", args[0]);
        }
    }
}

/// What strace shows of a run: each line a syscall, fd arguments with their paths (`-y`).
fn syscalls_of(args: &[&str]) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("strace.log");
    let traced = Command::new("strace")
        .args([
            "-f",
            "-y",
            "-qq",
            "-e",
            "trace=fsync,fdatasync,rename,renameat,renameat2",
        ])
        .arg("-o")
        .arg(&log)
        .arg(SIGMA)
        .args(args)
        .env_remove("FERNET_KEYS")
        .output()
        .expect("strace runs (it is on every machine of this project's kind)");
    assert!(
        traced.status.success(),
        "{}",
        String::from_utf8_lossy(&traced.stderr)
    );
    std::fs::read_to_string(log)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn out_reaches_the_disk_before_its_name_and_the_rename_is_made_durable() {
    let dir = tempfile::tempdir().unwrap();
    let dir_path = dir.path().canonicalize().unwrap();
    let key = keygen();
    encrypt_file(&key, &vec![7u8; 1 << 20], &dir_path, "token");
    let out = path(&dir_path, "plain");
    let calls = syscalls_of(&["decrypt", "--key", &key, &path(&dir_path, "token"), &out]);

    let rename = calls
        .iter()
        .position(|c| c.contains("rename") && c.contains(&format!("\"{out}\"")))
        .unwrap_or_else(|| panic!("OUT is renamed into place: {calls:#?}"));
    let staged = format!("{}/.sigma-", dir_path.display());
    assert!(
        calls[..rename]
            .iter()
            .any(|c| c.contains("fsync(") && c.contains(&staged) && c.ends_with("= 0")),
        "the staged file is synced before the rename: {calls:#?}"
    );
    let directory = format!("<{}>)", dir_path.display());
    assert!(
        calls[rename + 1..]
            .iter()
            .any(|c| c.contains("fsync(") && c.contains(&directory) && c.ends_with("= 0")),
        "the directory is synced after the rename: {calls:#?}"
    );
    assert_eq!(std::fs::read(&out).unwrap(), vec![7u8; 1 << 20]);
}

/// Runs `sigma ARGS` with stdin, the keys coming from one source or another.
type Runner<'a> = dyn Fn(&[&str], &[u8]) -> Output + 'a;

#[test]
fn a_key_list_means_the_same_from_every_source_and_in_every_separator_style() {
    let dir = tempfile::tempdir().unwrap();
    let (newest, older) = (keygen(), keygen());
    let plaintext = b"fecha;importe\n2024-01-15;10\n".to_vec();
    encrypt_file(&newest, &plaintext, dir.path(), "by-newest");
    encrypt_file(&older, &plaintext, dir.path(), "by-older");
    let by_older = std::fs::read(dir.path().join("by-older")).unwrap();

    let styles = [
        format!("{newest},{older}"),
        format!("{newest}, {older}"),
        format!("{newest} {older}"),
        format!("{newest}\n{older}"),
        format!("{newest}\n{older}\n"),
        format!("{newest}\r\n{older}\r\n"),
        format!("{newest},{older},\n"),
    ];
    for list in &styles {
        let sources: [(&str, &Runner); 2] = [
            ("--key", &|args, stdin| {
                let mut with_key = vec![args[0], "--key", list.as_str()];
                with_key.extend(&args[1..]);
                sigma(&with_key, stdin)
            }),
            ("FERNET_KEYS", &|args, stdin| {
                sigma_with_env_keys(list, args, stdin)
            }),
        ];
        for (source, run) in sources {
            let case = format!("{list:?} in {source}");
            let ok = |out: Output, what: &str| {
                assert!(
                    out.status.success(),
                    "{what}, {case}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                out
            };

            let token = ok(run(&["encrypt", "-", "-"], &plaintext), "encrypt");
            let by_newest_only = sigma(&["decrypt", "--key", &newest, "-", "-"], &token.stdout);
            assert_eq!(
                ok(by_newest_only, "encrypt uses the newest key").stdout,
                plaintext,
                "{case}"
            );
            let from_file = run(&["decrypt", &path(dir.path(), "by-older"), "-"], b"");
            assert_eq!(ok(from_file, "older key, file").stdout, plaintext, "{case}");
            let from_stdin = run(&["decrypt", "-", "-"], &by_older);
            assert_eq!(
                ok(from_stdin, "older key, stdin").stdout,
                plaintext,
                "{case}"
            );
            let newest_from_file = run(&["decrypt", &path(dir.path(), "by-newest"), "-"], b"");
            assert_eq!(
                ok(newest_from_file, "newest key, file").stdout,
                plaintext,
                "{case}"
            );
        }
    }
}
