"""workflows/sigma.yaml run in-process by workflows-emulator, wrapped for what it cannot do offline.

The emulator is used as an installed test tool, unchanged, with three things swapped in around
it for the duration of a run:

- its HTTP request function: `auth: {type: OIDC}` (which it refuses) and OAuth2 are replaced by
  a fake bearer token, as Cloud Workflows would attach a real one; `https://*.googleapis.com`
  connector URLs go to the local fakes; and connection errors and timeouts become the
  `ConnectionError`/`TimeoutError` workflow errors Cloud Workflows raises (the emulator lets
  them escape as uncatchable Python exceptions);
- the process environment: the workflow's env vars and the built-in
  `GOOGLE_CLOUD_WORKFLOW_EXECUTION_ID` etc. that `sys.get_env` reads;
- its assign lock, with a re-entrant one: after an expression error inside `assign` the
  emulator never releases it, and the next `assign` in the process would hang;
- how a map value turns into text when a whole-value expression (`${e}`) yields a map: the
  emulator prints it as a Python repr and parses that back as YAML, which breaks on strings
  holding both kinds of quotes (error messages do) and turns nested nulls into "None"; as
  JSON it round-trips exactly.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import requests
from workflows_emulator import main as emulator
from workflows_emulator.lib import http_utils
from workflows_emulator.utils import ContextDict, WorkflowError

REPO = Path(__file__).resolve().parents[3]
WORKFLOW = REPO / "workflows" / "sigma.yaml"

FAKE_TOKEN = "sigma-local-fake-token"

_original_request = http_utils.request
_run_lock = threading.Lock()


class WorkflowFailed(Exception):
    """The execution ended in an error: `error` is the error map the workflow raised."""

    def __init__(self, error: Any):
        super().__init__(json.dumps(error, default=str))
        self.error = error


@dataclass
class Workflow:
    """One deployed workflow: its source, its env vars, and where Google APIs are reached."""

    env: dict[str, str]
    #: `https://NAME.googleapis.com/` is rewritten to `googleapis[NAME]` (e.g. `http://127.0.0.1:9/`).
    googleapis: dict[str, str] = field(default_factory=dict)
    source: Path = WORKFLOW
    project: str = "sigma-local"
    location: str = "europe-west1"

    def __post_init__(self) -> None:
        self._definition = emulator.load_workflow(str(self.source))

    def run(self, event: dict[str, Any]) -> Any:
        """Executes `main(event)` and returns its result, or raises `WorkflowFailed`."""
        execution_id = str(uuid.uuid4())
        with _run_lock, self._environment(execution_id), self._patched():
            try:
                result = emulator.execute_workflow(copy.deepcopy(self._definition), {"event": event})
            except WorkflowError as err:
                raise WorkflowFailed(_plain(err.payload)) from None
        return _plain(result)

    @contextlib.contextmanager
    def _environment(self, execution_id: str) -> Iterator[None]:
        values = {
            **self.env,
            "GOOGLE_CLOUD_PROJECT_ID": self.project,
            "GOOGLE_CLOUD_LOCATION": self.location,
            "GOOGLE_CLOUD_WORKFLOW_ID": "sigma",
            "GOOGLE_CLOUD_WORKFLOW_REVISION_ID": "000001-local",
            "GOOGLE_CLOUD_WORKFLOW_EXECUTION_ID": execution_id,
        }
        saved = {name: os.environ.get(name) for name in values}
        os.environ.update(values)
        try:
            yield
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value

    @contextlib.contextmanager
    def _patched(self) -> Iterator[None]:
        request = self._request
        saved = (http_utils.request, emulator.authenticated_request, emulator.LOCK, ContextDict.__str__)
        http_utils.request = request
        emulator.authenticated_request = request
        emulator.LOCK = threading.RLock()
        ContextDict.__str__ = _as_json
        try:
            yield
        finally:
            http_utils.request, emulator.authenticated_request, emulator.LOCK, ContextDict.__str__ = saved

    def _request(self, method: str, url: str, auth: dict | None = None, headers: dict | None = None, **kwargs: Any) -> dict:
        headers = dict(headers or {})
        if auth is not None:
            headers["Authorization"] = f"Bearer {FAKE_TOKEN}"
        kwargs.pop("scopes", None)
        try:
            return _original_request(method, self._route(url), headers=headers, **kwargs)
        except requests.Timeout as err:
            raise TimeoutError(f"{method} {url}: {err}") from None
        except requests.ConnectionError as err:
            raise ConnectionError(f"{method} {url}: {err}") from None

    def _route(self, url: str) -> str:
        for name, base in self.googleapis.items():
            prefix = f"https://{name}.googleapis.com/"
            if url.startswith(prefix):
                return base.rstrip("/") + "/" + url[len(prefix):]
        if ".googleapis.com" in url:
            raise ConnectionError(f"no local fake for {url}: refusing to call Google")
        return url


def _as_json(value: ContextDict) -> str:
    return json.dumps(value.to_dict(), default=str)


def _plain(value: Any) -> Any:
    """The emulator's attribute dicts (and anything else) as plain JSON values."""
    return json.loads(json.dumps(value, default=str))
