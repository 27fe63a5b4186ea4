"""sigma-decrypt, the service, against the Python function it replaces, on one fake-gcs-server.

The Python function is what a Cloud Function doing this job runs:
`blob.download_as_bytes()` -> `Fernet(key).decrypt()` -> `blob.upload_from_string()`, with the
google-cloud-storage client pointed at the emulator. sigma-decrypt is the release binary,
called with POST /decrypt. Both decrypt the same token, and both outputs are compared
(SHA-256) with the plaintext.

Most of either side's wall time can be the emulator's: fake-gcs-server appends resumable
chunks in time that grows with the object. So the emulator's own cost is measured with
plain HTTP calls and no decryption at all, and subtracted:
  - read:   one streaming GET of the token (what both sides read);
  - put:    the plaintext in one single-request upload (the cheapest way to write it);
  - chunks: the plaintext as a resumable upload in sigma's chunk size, and in the Python
            client's (100 MiB), the way each side writes it.
"Own" time is wall time minus read and chunked-upload baselines of that side's chunk
size. sigma overlaps its read and its upload, so its own time is a lower bound (it may
come out at zero); Python's steps run one after the other.

Peak RSS is each process's VmHWM. Python is measured inside its process, warm (imports
and the client done before the clock starts), as a warm Cloud Function would run.

    .venv/bin/pip install -r bench/requirements.txt
    cargo build --release -p sigma-decrypt
    .venv/bin/python bench/service_bench.py --sizes 64 256 1024     # MiB
"""

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests
from cryptography.fernet import Fernet

# Token files and the emulator come from the RSS measurement script, so both measure the
# same bytes the same way.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "services/decrypt/scripts"))
from measure_rss import (  # noqa: E402
    fake_gcs_binary, free_port, peak_rss_mib, sha256_file, write_gzip, write_token,
)

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.78"
ENDPOINT = f"http://{HOST}"
BLOCK = 3 * 1024 * 1024
MIB = 1024 * 1024
SIGMA_CHUNK_MIB = 32  # UPLOAD_CHUNK_MIB's default
PYTHON_CHUNK_MIB = 100  # google-cloud-storage's _DEFAULT_CHUNKSIZE

PYTHON_FUNCTION = r"""
import hashlib, json, sys, time
from cryptography.fernet import Fernet
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

endpoint, key, name, output = sys.argv[1:5]
client = storage.Client(project="bench", credentials=AnonymousCredentials(),
                        client_options={"api_endpoint": endpoint})
started = time.perf_counter()
token = client.bucket("trig").blob(name).download_as_bytes()
plaintext = Fernet(key).decrypt(token)
del token
client.bucket("out").blob(output).upload_from_string(plaintext, content_type="application/gzip")
elapsed = time.perf_counter() - started
for line in open("/proc/self/status"):
    if line.startswith("VmHWM:"):
        peak = int(line.split()[1]) * 1024
print(json.dumps({"seconds": elapsed, "peak_rss": peak}))
"""


def sha256_object(bucket, name):
    response = requests.get(f"{ENDPOINT}/storage/v1/b/{bucket}/o/{requests.utils.quote(name, safe='')}",
                            params={"alt": "media"}, stream=True)
    response.raise_for_status()
    digest = hashlib.sha256()
    for block in response.iter_content(BLOCK):
        digest.update(block)
    return digest.hexdigest()


def delete(bucket, name):
    requests.delete(f"{ENDPOINT}/storage/v1/b/{bucket}/o/{requests.utils.quote(name, safe='')}")


def timed(action):
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def read_baseline(name):
    def read():
        response = requests.get(f"{ENDPOINT}/storage/v1/b/trig/o/{requests.utils.quote(name, safe='')}",
                                params={"alt": "media"}, stream=True)
        response.raise_for_status()
        for _ in response.iter_content(BLOCK):
            pass
    return timed(read)


def put_baseline(plain):
    def put():
        with open(plain, "rb") as body:
            requests.post(f"{ENDPOINT}/upload/storage/v1/b/out/o",
                          params={"uploadType": "media", "name": "baseline/put"},
                          data=body).raise_for_status()
    seconds = timed(put)
    delete("out", "baseline/put")
    return seconds


def chunked_baseline(plain, chunk_mib):
    """A resumable upload of the file in `chunk_mib` chunks, each waiting for its answer."""
    size = plain.stat().st_size
    chunk = chunk_mib * MIB

    def upload():
        session = requests.post(f"{ENDPOINT}/upload/storage/v1/b/out/o",
                                params={"uploadType": "resumable", "name": "baseline/chunks"},
                                json={"contentType": "application/gzip"})
        session.raise_for_status()
        url = session.headers["Location"]
        with open(plain, "rb") as f:
            offset = 0
            while offset < size:
                data = f.read(chunk)
                end = offset + len(data) - 1
                answer = requests.put(url, data=data,
                                      headers={"Content-Range": f"bytes {offset}-{end}/{size}"})
                if answer.status_code not in (200, 201, 308):
                    answer.raise_for_status()
                offset += len(data)
    seconds = timed(upload)
    delete("out", "baseline/chunks")
    return seconds


def peak_rss(pid):
    return peak_rss_mib(pid) * MIB


def run_sigma(key, name):
    port = free_port()
    env = dict(os.environ, PORT=str(port), OUTPUT_BUCKET="out", TRIGGER_BUCKETS="trig",
               FERNET_KEYS=key, STORAGE_EMULATOR_HOST=ENDPOINT, RUST_LOG="warn")
    binary = ROOT / os.environ.get("CARGO_TARGET_DIR", "target") / "release/sigma-decrypt"
    service = subprocess.Popen([str(binary)], env=env, stdout=subprocess.DEVNULL)
    try:
        for _ in range(200):
            try:
                requests.get(f"http://127.0.0.1:{port}/healthz").raise_for_status()
                break
            except requests.ConnectionError:
                time.sleep(0.05)
        started = time.perf_counter()
        answer = requests.post(f"http://127.0.0.1:{port}/decrypt", json={"bucket": "trig", "name": name})
        seconds = time.perf_counter() - started
        peak = peak_rss(service.pid)
    finally:
        service.terminate()
        service.wait()
    answer.raise_for_status()
    return seconds, peak, answer.json()["name"]


def run_python(key, name, output):
    result = subprocess.run([sys.executable, "-c", PYTHON_FUNCTION, ENDPOINT, key, name, output],
                            check=True, capture_output=True, text=True)
    measured = json.loads(result.stdout.strip().splitlines()[-1])
    return measured["seconds"], measured["peak_rss"]


def measure(mib, work):
    key = Fernet.generate_key().decode()
    plain, token = work / "plain.gz", work / "token"
    write_gzip(plain, mib)
    write_token(key, plain, token)
    name = f"data/{mib}/file.gz.encrypted"
    with open(token, "rb") as body:
        requests.post(f"{ENDPOINT}/upload/storage/v1/b/trig/o",
                      params={"uploadType": "media", "name": name}, data=body).raise_for_status()
    expected = sha256_file(plain)

    read = read_baseline(name)
    put = put_baseline(plain)
    sigma_chunks = chunked_baseline(plain, SIGMA_CHUNK_MIB)
    python_chunks = chunked_baseline(plain, PYTHON_CHUNK_MIB)

    sigma_seconds, sigma_peak, output = run_sigma(key, name)
    sigma_ok = sha256_object("out", output) == expected
    delete("out", output)
    python_seconds, python_peak = run_python(key, name, output)
    python_ok = sha256_object("out", output) == expected
    delete("out", output)

    row = {
        "mib": mib,
        "read_s": read, "put_s": put,
        "chunks_sigma_s": sigma_chunks, "chunks_python_s": python_chunks,
        "sigma_s": sigma_seconds, "sigma_own_s": max(0.0, sigma_seconds - read - sigma_chunks),
        "sigma_rss_mib": sigma_peak / MIB,
        "python_s": python_seconds, "python_own_s": max(0.0, python_seconds - read - python_chunks),
        "python_rss_mib": python_peak / MIB,
        "outputs_identical": sigma_ok and python_ok,
    }
    print(json.dumps({k: round(v, 2) if isinstance(v, float) else v for k, v in row.items()}), flush=True)
    for path in (plain, token):
        path.unlink()
    delete("trig", name)
    return row


def table(rows):
    print()
    print("| file | emulator: read / one PUT / chunks 32 MiB / chunks 100 MiB | sigma-decrypt wall | sigma own | sigma peak RSS "
          "| Python wall | Python own | Python peak RSS | own time ratio | memory ratio |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        ratio = r["python_own_s"] / r["sigma_own_s"] if r["sigma_own_s"] > 0 else float("inf")
        print(f"| {r['mib']} MiB | {r['read_s']:.2f} / {r['put_s']:.2f} / {r['chunks_sigma_s']:.2f} / "
              f"{r['chunks_python_s']:.2f} s | {r['sigma_s']:.2f} s | {r['sigma_own_s']:.2f} s | "
              f"{r['sigma_rss_mib']:.0f} MiB | {r['python_s']:.2f} s | {r['python_own_s']:.2f} s | "
              f"{r['python_rss_mib']:.0f} MiB | {ratio:.1f}x | {r['python_rss_mib'] / r['sigma_rss_mib']:.1f}x |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 256, 1024], help="MiB")
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "gcs").mkdir()
        emulator = subprocess.Popen([fake_gcs_binary(), "-scheme", "http", "-host", HOST, "-port", "80",
                                     "-backend", "filesystem", "-filesystem-root", str(work / "gcs"),
                                     "-external-url", ENDPOINT, "-log-level", "error"])
        try:
            for _ in range(100):
                try:
                    requests.get(f"{ENDPOINT}/storage/v1/b").raise_for_status()
                    break
                except requests.ConnectionError:
                    time.sleep(0.05)
            for bucket in ("trig", "out"):
                requests.post(f"{ENDPOINT}/storage/v1/b", json={"name": bucket}).raise_for_status()
            rows = [measure(mib, work) for mib in args.sizes]
        finally:
            emulator.terminate()
            emulator.wait()
    table(rows)
    print(f"\nload average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
