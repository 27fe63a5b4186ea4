"""The local stack: fake-gcs-server, the `sigma-fakes` process (Dataflow, Dataform, Pub/Sub,
metadata server), the three real service binaries, and the real workflow run by the emulator.

Production code has no fake mode: every service here is the release binary, pointed at the
fakes through the same env vars that point it at Google in the cloud.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import yaml
from cryptography.fernet import Fernet

from .emulator import REPO, Workflow
from .executions import ExecutionsServer
from .fakes import FakesApi
from .gcs import FakeGcs
from .processes import Process, StackError, answers, free_port

BIN_DIR_VAR = "SIGMA_BIN_DIR"
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
#: The real compiled Dataform project the fake Dataform serves by default.
SAMPLE_GRAPH = FIXTURES / "dataform" / "sample_v3.compiled.json"

PROJECT = "sigma-local"
REGION = "europe-west1"
# The bucket names of examples/pipelines.yaml and the README.
TRIGGER_BUCKET = "company_trigger_bucket"
OUTPUT_BUCKET = "company_output_bucket"
CONFIG_BUCKET = "company_config_bucket"
PIPELINES = REPO / "examples" / "pipelines.yaml"
EVENTS_TOPIC = f"projects/{PROJECT}/topics/sigma-events"
DATAFORM_REPOSITORY = f"projects/{PROJECT}/locations/{REGION}/repositories/sigma"
SERVICES = ("decrypt", "dataflow", "dataform")
#: The workflow the local Workflow Executions API serves (`SIGMA_WORKFLOW` of `sigma runs`).
WORKFLOW_NAME = f"projects/{PROJECT}/locations/local/workflows/sigma"


def bin_dir() -> Path:
    return Path(os.environ.get(BIN_DIR_VAR) or REPO / "target" / "release")


class Stack:
    """Everything the chain talks to, on this machine. Use as a context manager."""

    def __init__(
        self,
        logs: Path | None = None,
        fernet_key: str | None = None,
        extra_pipelines: dict | None = None,
        dataform_graph: Path = SAMPLE_GRAPH,
        dataform_settle_seconds: int = 0,
    ):
        """`extra_pipelines`: registry entries added to examples/pipelines.yaml for this stack;
        `dataform_graph`: the `dataform compile --json` output the fake Dataform compiles to;
        `dataform_settle_seconds`: how long a load waits for siblings (0: chains that do not
        overlap start their invocations at once, as most tests want)."""
        self.dataform_settle_seconds = dataform_settle_seconds
        self._own_logs = logs is None
        self.logs = Path(tempfile.mkdtemp(prefix="sigma-stack-")) if logs is None else logs
        self.logs.mkdir(parents=True, exist_ok=True)
        self.fernet_key = fernet_key or Fernet.generate_key().decode()
        self.pipelines = self._registry(extra_pipelines or {})
        self.dataform_graph = dataform_graph
        self.gcs: FakeGcs | None = None
        self.fakes: dict[str, str] = {}
        self.fakes_api: FakesApi | None = None
        self.urls: dict[str, str] = {}
        self._processes: list[Process] = []
        #: The Workflow Executions API running the real workflow against this stack.
        self.executions: ExecutionsServer | None = None

    # --- lifecycle -------------------------------------------------------------------------

    def __enter__(self) -> "Stack":
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *_: Any) -> None:
        self.stop()

    def start(self) -> None:
        binaries = bin_dir()
        missing = [b for b in ("sigma-fakes", *(f"sigma-{s}" for s in SERVICES)) if not (binaries / b).exists()]
        if missing:
            raise StackError(f"{', '.join(missing)} not in {binaries}: run `cargo build --release` or set {BIN_DIR_VAR}")
        self.gcs = FakeGcs([TRIGGER_BUCKET, OUTPUT_BUCKET, CONFIG_BUCKET], self.logs)
        self._processes.append(self.gcs.process)
        self._start_fakes(binaries)
        for service in SERVICES:
            self._start_service(binaries, service)
        self.executions = ExecutionsServer(WORKFLOW_NAME, self.workflow)

    def stop(self) -> None:
        if self.executions is not None:
            self.executions.stop()
            self.executions = None
        for process in reversed(self._processes):
            process.stop()
        self._processes.clear()
        if self._own_logs and os.environ.get("SIGMA_KEEP_LOGS") is None:
            shutil.rmtree(self.logs, ignore_errors=True)

    def _registry(self, extra: dict) -> Path:
        if not extra:
            return PIPELINES
        registry = yaml.safe_load(PIPELINES.read_text())
        registry["pipelines"].update(extra)
        path = self.logs / "pipelines.yaml"
        path.write_text(yaml.safe_dump(registry, sort_keys=False))
        return path

    def _start_fakes(self, binaries: Path) -> None:
        ready = self.logs / "sigma-fakes.ready.json"
        process = Process(
            "sigma-fakes",
            [str(binaries / "sigma-fakes"), "--ready-file", str(ready), "--topic", EVENTS_TOPIC,
             "--project", PROJECT,
             "--dataform-graph", str(self.dataform_graph)],
            {"RUST_LOG": os.environ.get("RUST_LOG", "info")},
            self.logs,
        )
        self._processes.append(process)
        process.wait_until(ready.exists, "ready file")
        self.fakes = json.loads(ready.read_text())
        self.fakes_api = FakesApi(self.fakes)

    def _start_service(self, binaries: Path, service: str) -> None:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        process = Process(f"sigma-{service}", [str(binaries / f"sigma-{service}")], self.service_env(service, port), self.logs)
        self._processes.append(process)
        process.wait_until(answers(f"{url}/healthz"), "answer on /healthz")
        self.urls[service] = url

    def service_env(self, service: str, port: int) -> dict[str, str]:
        """The env each service gets: exactly what Terraform sets in the cloud, pointed here."""
        common = {
            "PORT": str(port),
            "RUST_LOG": os.environ.get("RUST_LOG", "info"),
            "STORAGE_EMULATOR_HOST": self.gcs.endpoint,
            "GCE_METADATA_HOST": self.fakes["metadata"],
            "EVENTS_TOPIC": EVENTS_TOPIC,
            "PUBSUB_EMULATOR_HOST": self.fakes["pubsub_grpc"],
            "GOOGLE_CLOUD_PROJECT": PROJECT,
        }
        specific = {
            "decrypt": {
                "OUTPUT_BUCKET": OUTPUT_BUCKET,
                "TRIGGER_BUCKETS": TRIGGER_BUCKET,
                "FERNET_KEYS": self.fernet_key,
            },
            "dataflow": {
                "PIPELINES": str(self.pipelines),
                "CONFIG_BUCKET": CONFIG_BUCKET,
                "DATAFLOW_REGION": REGION,
                "DATAFLOW_ENDPOINT": self.fakes["dataflow"],
            },
            "dataform": {
                "DATAFORM_REPOSITORY": DATAFORM_REPOSITORY,
                "DATAFORM_RELEASE_CONFIG": "production",
                "DATAFORM_STATE_BUCKET": CONFIG_BUCKET,
                "DATAFORM_ENDPOINT": self.fakes["dataform"],
                "DATAFORM_SETTLE_SECONDS": str(self.dataform_settle_seconds),
            },
        }[service]
        return {**common, **specific}

    # --- what tests and the demo use ----------------------------------------------------------

    def workflow(self, **env: str) -> Workflow:
        """The real workflows/sigma.yaml with the env Terraform gives it, pointed at this stack."""
        return Workflow(
            env={
                "DECRYPT_URL": self.urls["decrypt"],
                "DATAFLOW_URL": self.urls["dataflow"],
                "DATAFORM_URL": self.urls["dataform"],
                "EVENTS_TOPIC": EVENTS_TOPIC,
                "OBJECT_PREFIX": "data/",
                "POLL_INTERVAL_SECONDS": "1",
                "POLL_DEADLINE_SECONDS": "30",
                **env,
            },
            googleapis={"pubsub": self.fakes["pubsub_rest"]},
            project=PROJECT,
            location=REGION,
        )

    def encrypt(self, plaintext: bytes) -> bytes:
        return Fernet(self.fernet_key.encode()).encrypt(plaintext)

    def upload(self, name: str, data: bytes) -> dict[str, Any]:
        """Uploads to the trigger bucket; returns the object-finalize CloudEvent Eventarc would send."""
        generation = self.gcs.put(TRIGGER_BUCKET, name, data)
        return finalize_event(TRIGGER_BUCKET, name, generation, len(data))

    def statuses(self, service: str, path: str, object_uri: str) -> list[int]:
        """HTTP statuses the service answered on `path` for the object, from its request log lines."""
        statuses = []
        for line in (self.logs / f"sigma-{service}.log").read_text(errors="replace").splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            request = entry.get("httpRequest") or {}
            if request.get("requestUrl") == path and entry.get("span", {}).get("object") == object_uri:
                statuses.append(request["status"])
        return statuses

    def logs_of(self, name: str, lines: int = 40) -> str:
        for process in self._processes:
            if process.name == name:
                return process.tail(lines)
        return ""


def finalize_event(bucket: str, name: str, generation: str, size: int) -> dict[str, Any]:
    """A google.cloud.storage.object.v1.finalized CloudEvent as Eventarc hands it to Workflows."""
    now = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
    return {
        "id": str(uuid.uuid4()),
        "source": f"//storage.googleapis.com/projects/_/buckets/{bucket}",
        "specversion": "1.0",
        "type": "google.cloud.storage.object.v1.finalized",
        "subject": f"objects/{name}",
        "time": now,
        "datacontenttype": "application/json",
        "data": {
            "kind": "storage#object",
            "id": f"{bucket}/{name}/{generation}",
            "bucket": bucket,
            "name": name,
            "generation": generation,
            "metageneration": "1",
            "size": str(size),
            "contentType": "application/octet-stream",
            "storageClass": "STANDARD",
            "timeCreated": now,
            "updated": now,
        },
    }
