"""workflows/sigma.yaml run in-process by workflows-emulator, made as strict as Cloud Workflows.

The emulator is an installed test tool, used unchanged. It is kinder than Cloud Workflows in
ways a workflow can come to depend on, so for the duration of a run this module swaps in,
around it, what Cloud Workflows documents:

- **HTTP** (`http.*` calls and `googleapis.*` connectors go through `_Run.request`):
  - `auth` is dropped (the emulator refuses OIDC) and a fake bearer token is sent, as Cloud
    Workflows would attach a real one; the OIDC audience each call would get (its
    `auth.audience`, or by default the full URL) is recorded in `Workflow.calls`;
  - `https://NAME.googleapis.com/` goes to the local fake for NAME; any other Google URL is
    refused, so no test ever calls Google;
  - an error status raises the error map Cloud Workflows raises: tags `["HttpError"]` (the
    emulator says `HTTPError`), message `HTTP server responded with error code N`, `code`,
    `headers`, and `body` parsed as JSON only when the response's Content-Type says JSON (else
    the text). A refused connection raises `ConnectionFailedError`, a broken one
    `ConnectionError`, a timed-out call `TimeoutError` (the emulator lets all three escape as
    uncatchable Python exceptions);
- **types**: `get_type` answers Cloud Workflows' names (`integer`, `double`, `string`, `bool`,
  `null`, `list`, `map`, `bytes`) where the emulator answers Python's (`int`, `float`) and
  fails on its own attribute dicts, so a workflow written against the emulator's names fails
  here as it would in the cloud;
- **`hash.compute_checksum`**, which the emulator lacks (MD5, SHA1, SHA224, SHA256, SHA384,
  SHA512; bytes in, bytes out; TypeError/ValueError as documented);
- **limits** (Cloud Workflows' quotas page): an HTTP response over 2 MB, any string value over
  256 KB (stored or only computed, e.g. a message's base64 data), and the variables of all
  live frames together over 512 KB raise a `ResourceLimitError`. The variables' size (their
  compact JSON) is measured after every step; the peak of a run is `Workflow.peak_variable_bytes`;
- **`sys.log`**: Cloud Logging's severities (`DEFAULT` ... `EMERGENCY`; the emulator fails on
  `NOTICE` and its kin, and accepts names Cloud Workflows refuses) and exactly one of `text`,
  `json`, `data`; every entry is recorded in `Workflow.logs`;
- **time**, on request: with `virtual_time=True`, `sys.sleep` and the backoff of `retry` policies
  return at once and `sys.now` moves on by the time they would have slept, so a test of hours of
  backoff runs in milliseconds (and still sees the clock the workflow reads move). Every sleep,
  virtual or not, is recorded in `Workflow.sleeps`; `sys.sleep` takes whole seconds only, as in
  the emulator;
- the process environment: the workflow's env vars and the built-in
  `GOOGLE_CLOUD_WORKFLOW_EXECUTION_ID` etc. that `sys.get_env` reads;
- its assign lock, with a re-entrant one: after an expression error inside `assign` the
  emulator never releases it, and the next `assign` in the process would hang;
- how a map value turns into text when a whole-value expression (`${e}`) yields a map: the
  emulator prints it as a Python repr and parses that back as YAML, which breaks on strings
  holding both kinds of quotes (error messages do) and turns nested nulls into "None"; as
  JSON it round-trips exactly. Its JSON keeps non-ASCII characters as they are: escaped, a
  character outside the BMP becomes two escaped surrogates that YAML does not join again.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import hashlib
import json
import logging
import os
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Iterator

import requests
from urllib3.exceptions import NewConnectionError
from workflows_emulator import main as emulator
from workflows_emulator import render
from workflows_emulator.lib import http_utils, sys_utils
from workflows_emulator.utils import ContextDict, WorkflowError

REPO = Path(__file__).resolve().parents[3]
WORKFLOW = REPO / "workflows" / "sigma.yaml"

FAKE_TOKEN = "sigma-local-fake-token"

KB = 1024
#: Cloud Workflows' resource limits (quotas page).
MAX_HTTP_RESPONSE_BYTES = 2 * KB * KB
MAX_STRING_BYTES = 256 * KB
MAX_VARIABLE_BYTES = 512 * KB

#: Cloud Logging's severities, which `sys.log` accepts, with the Python level they are logged at.
SEVERITIES = {
    "DEFAULT": logging.INFO, "DEBUG": logging.DEBUG, "INFO": logging.INFO, "NOTICE": logging.INFO + 5,
    "WARNING": logging.WARNING, "ERROR": logging.ERROR, "CRITICAL": logging.CRITICAL,
    "ALERT": logging.CRITICAL + 5, "EMERGENCY": logging.CRITICAL + 9,
}

_run_lock = threading.Lock()
#: The `json` the emulator's renderer uses, minus the escaping of non-ASCII characters.
_RENDER_JSON = SimpleNamespace(dumps=functools.partial(json.dumps, ensure_ascii=False), loads=json.loads)


class WorkflowFailed(Exception):
    """The execution ended in an error: `error` is the error map the workflow raised."""

    def __init__(self, error: Any):
        super().__init__(json.dumps(error, default=str))
        self.error = error


@dataclass(frozen=True)
class Call:
    """One HTTP call the workflow made: what it asked for and the OIDC audience it would carry."""

    method: str
    url: str
    audience: str | None


@dataclass(frozen=True)
class LogEntry:
    """One `sys.log` call: its severity and its `json`, `data` or `text`."""

    severity: str
    payload: Any


@dataclass(frozen=True)
class Sleep:
    """One wait: `seconds`, and `by` "sys.sleep" or "retry" (a retry policy's backoff)."""

    seconds: float
    by: str


@dataclass
class Workflow:
    """One deployed workflow: its source, its env vars, and where Google APIs are reached."""

    env: dict[str, str]
    #: `https://NAME.googleapis.com/` is rewritten to `googleapis[NAME]` (e.g. `http://127.0.0.1:9/`).
    googleapis: dict[str, str] = field(default_factory=dict)
    source: Path = WORKFLOW
    project: str = "sigma-local"
    location: str = "europe-west1"
    #: A definition to run instead of `source` (tests of single subworkflows or of this wrapper).
    definition: dict[str, Any] | None = None
    #: Sleeps return at once and `sys.now` jumps ahead by what they would have slept.
    virtual_time: bool = False
    #: Every HTTP call of the last run, in order.
    calls: list[Call] = field(default_factory=list, init=False)
    #: Every `sys.log` entry of the last run, in order.
    logs: list[LogEntry] = field(default_factory=list, init=False)
    #: Every sleep of the last run (sys.sleep, retry backoff), in order.
    sleeps: list[Sleep] = field(default_factory=list, init=False)
    #: The largest size, in bytes of compact JSON, that the variables of all live frames
    #: reached during the last run.
    peak_variable_bytes: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        if self.definition is None:
            self.definition = emulator.load_workflow(str(self.source))

    def run(self, event: dict[str, Any] | None = None, **params: Any) -> Any:
        """Executes `main(event)` (or `main(**params)`) and returns its result, or raises
        `WorkflowFailed`."""
        arguments = {"event": event} if event is not None else params
        with _run_lock:
            run = _Run(self)
            with self._environment(str(uuid.uuid4())), run.patched():
                try:
                    result = emulator.execute_workflow(copy.deepcopy(self.definition), arguments)
                except WorkflowError as err:
                    raise WorkflowFailed(_plain(err.payload)) from None
                finally:
                    self.calls = run.calls
                    self.logs = run.logs
                    self.sleeps = run.sleeps
                    self.peak_variable_bytes = run.peak_variable_bytes
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


class _Run:
    """What one execution swaps into the emulator, and what it observes."""

    def __init__(self, workflow: Workflow):
        self.workflow = workflow
        self.subworkflows = set(workflow.definition or {})
        self.calls: list[Call] = []
        self.logs: list[LogEntry] = []
        self.sleeps: list[Sleep] = []
        self.skipped_seconds = 0.0
        self.peak_variable_bytes = 0
        self._frames: list[dict] = []
        self._execute_step = emulator.execute_step
        self._execute_subworkflow = emulator.execute_subworkflow
        self._run_code = render.run_code
        self._assign_var = emulator.assign_var

    @contextlib.contextmanager
    def patched(self) -> Iterator[None]:
        library = render.STANDARD_LIBRARY
        saved = (
            http_utils.request, emulator.authenticated_request, emulator.LOCK, ContextDict.__str__,
            emulator.execute_step, emulator.execute_subworkflow, emulator.run_code, render.run_code,
            library["get_type"], library.get("hash"), render.json,
            sys_utils.log, sys_utils.sleep, sys_utils.now, emulator.sleep, emulator.assign_var,
        )
        http_utils.request = self.request
        emulator.authenticated_request = self.request
        emulator.LOCK = threading.RLock()
        ContextDict.__str__ = _as_json
        emulator.execute_step = self.execute_step
        emulator.execute_subworkflow = self.execute_subworkflow
        emulator.run_code = render.run_code = self.run_code
        library["get_type"] = get_type
        library["hash"] = Hash
        render.json = _RENDER_JSON
        # Real sleeps go to whatever slept before (the emulator's, or a caller's own, such as the
        # local Executions API's cancellable one).
        self._sleeps_before = {"sys.sleep": sys_utils.sleep, "retry": emulator.sleep}
        sys_utils.log = self.log
        sys_utils.sleep = self.sleep
        sys_utils.now = self.now
        emulator.sleep = self.retry_sleep
        emulator.assign_var = self.assign_var
        try:
            yield
        finally:
            (
                http_utils.request, emulator.authenticated_request, emulator.LOCK, ContextDict.__str__,
                emulator.execute_step, emulator.execute_subworkflow, emulator.run_code, render.run_code,
                library["get_type"], hashes, render.json,
                sys_utils.log, sys_utils.sleep, sys_utils.now, emulator.sleep, emulator.assign_var,
            ) = saved
            if hashes is None:
                library.pop("hash", None)
            else:
                library["hash"] = hashes

    # --- HTTP ---------------------------------------------------------------------------------

    def request(
        self,
        method: str,
        url: str,
        timeout: float = 300,
        body: Any = None,
        headers: dict | None = None,
        query: dict | None = None,
        auth: dict | None = None,
        **_: Any,
    ) -> dict:
        headers = dict(headers or {})
        audience = None
        if auth is not None:
            headers["Authorization"] = f"Bearer {FAKE_TOKEN}"
            if auth.get("type") == "OIDC":
                audience = auth.get("audience", url)
        self.calls.append(Call(method.upper(), url, audience))
        payload = {"json": body} if isinstance(body, dict) else {"data": body} if body is not None else {}
        try:
            response = requests.request(method, self._route(url), headers=headers, params=query or {},
                                        timeout=timeout, **payload)
        except requests.Timeout as err:
            raise WorkflowError(message=f"{method} {url}: the call timed out after {timeout} s ({err})",
                                tags=["TimeoutError"]) from None
        except requests.ConnectionError as err:
            tag = "ConnectionFailedError" if _never_connected(err) else "ConnectionError"
            raise WorkflowError(message=f"{method} {url}: {err}", tags=[tag]) from None
        if len(response.content) > MAX_HTTP_RESPONSE_BYTES:
            raise _resource_limit(f"HTTP response of {len(response.content)} bytes from {url} exceeds "
                                  f"the {MAX_HTTP_RESPONSE_BYTES}-byte limit")
        answer = {"code": response.status_code, "headers": dict(response.headers), "body": _body(response)}
        if response.status_code >= 400:
            raise WorkflowError(message=f"HTTP server responded with error code {response.status_code}",
                                tags=["HttpError"], **answer)
        return answer

    def _route(self, url: str) -> str:
        for name, base in self.workflow.googleapis.items():
            prefix = f"https://{name}.googleapis.com/"
            if url.startswith(prefix):
                return base.rstrip("/") + "/" + url[len(prefix):]
        if ".googleapis.com" in url:
            raise WorkflowError(message=f"no local fake for {url}: refusing to call Google",
                                tags=["ConnectionFailedError"])
        return url

    # --- sys.log, sys.sleep, sys.now ----------------------------------------------------------

    def log(self, text: Any = None, severity: Any = "DEFAULT", json: Any = None, data: Any = None,
            timeout: Any = None) -> None:
        given = [value for value in (text, json, data) if value is not None]
        if len(given) != 1:
            raise ValueError("sys.log: exactly one of text, json and data is required")
        if severity not in SEVERITIES:
            raise ValueError(f"sys.log: unknown severity {severity!r} (Cloud Logging's: {', '.join(SEVERITIES)})")
        payload = _plain(given[0])
        self.logs.append(LogEntry(severity, payload))
        logging.getLogger("workflows").log(SEVERITIES[severity], _json_text(payload))

    def sleep(self, seconds: Any) -> None:
        if isinstance(seconds, bool) or not isinstance(seconds, int) or seconds < 0:
            raise TypeError(f"sys.sleep: seconds must be a whole number >= 0, got {seconds!r}")
        self._wait(seconds, "sys.sleep")

    def retry_sleep(self, seconds: float) -> None:
        self._wait(seconds, "retry")

    def now(self) -> float:
        return time.time() + self.skipped_seconds

    def _wait(self, seconds: float, by: str) -> None:
        self.sleeps.append(Sleep(seconds, by))
        if self.workflow.virtual_time:
            self.skipped_seconds += seconds
        else:
            self._sleeps_before[by](seconds)

    # --- limits -------------------------------------------------------------------------------

    def execute_subworkflow(self, workflow: dict, params: dict, context: dict) -> Any:
        """Keeps the stack of live frames (the main workflow's, then each call's)."""
        self._frames.append(context)
        try:
            return self._execute_subworkflow(workflow, params, context)
        finally:
            self._frames.pop()

    def execute_step(self, step_id: Any, config: dict, context: dict) -> Any:
        outcome = self._execute_step(step_id, config, context)
        self._measure()
        return outcome

    def run_code(self, code: str, context: dict) -> Any:
        """Every expression's value, even one never stored, obeys the string limit."""
        value = self._run_code(code, self._slim(context, keep=code))
        _check_strings(value)
        return value

    def assign_var(self, key: str, value: Any, context: dict) -> tuple[str, Any]:
        return self._assign_var(key, value, self._slim(context))

    def _slim(self, context: dict, keep: str = "") -> dict:
        """The context without the subworkflow definitions an expression does not name (a retry
        predicate is one). The emulator deep-copies the whole context for every expression and
        every assignment; with the definitions in it a run took several times longer."""
        return {name: value for name, value in context.items() if name not in self.subworkflows or name in keep}

    def _measure(self) -> None:
        variables = [
            {name: value for name, value in frame.items() if name not in self.subworkflows}
            for frame in self._frames
        ]
        size = sum(_json_bytes(frame) for frame in variables)
        self.peak_variable_bytes = max(self.peak_variable_bytes, size)
        if size > MAX_VARIABLE_BYTES:
            raise _resource_limit(f"Memory usage limit exceeded: the variables take {size} bytes, "
                                  f"more than {MAX_VARIABLE_BYTES}")
        _check_strings(variables)


def get_type(value: Any) -> str:
    """Cloud Workflows' `get_type`: its own type names, and maps of any dict class."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "double"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bytes):
        return "bytes"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "map"
    raise TypeError(f"get_type: a value of unknown type {type(value).__name__}")


class Hash:
    """Cloud Workflows' `hash` module (the part sigma uses)."""

    ALGORITHMS = {"MD5": "md5", "SHA1": "sha1", "SHA224": "sha224", "SHA256": "sha256",
                  "SHA384": "sha384", "SHA512": "sha512"}

    @staticmethod
    def compute_checksum(data: Any, algorithm: Any) -> bytes:
        if not isinstance(data, bytes) or not isinstance(algorithm, str):
            raise TypeError("hash.compute_checksum: data must be bytes and algorithm a string")
        if algorithm not in Hash.ALGORITHMS:
            raise ValueError(f"hash.compute_checksum: unsupported algorithm {algorithm!r}")
        return hashlib.new(Hash.ALGORITHMS[algorithm], data).digest()


def _never_connected(err: requests.ConnectionError) -> bool:
    """Whether the connection was never made (refused, no route, no such host)."""
    cause: Any = err.args[0] if err.args else None
    return isinstance(getattr(cause, "reason", cause), NewConnectionError)


def _body(response: requests.Response) -> Any:
    if "json" in response.headers.get("Content-Type", "").split(";")[0] and response.content:
        return response.json()
    return response.text


def _resource_limit(message: str) -> WorkflowError:
    return WorkflowError(message=message, tags=["ResourceLimitError"])


def _check_strings(value: Any) -> None:
    if isinstance(value, str | bytes):
        size = len(value.encode()) if isinstance(value, str) else len(value)
        if size > MAX_STRING_BYTES:
            raise _resource_limit(f"a string of {size} bytes exceeds the {MAX_STRING_BYTES}-byte limit")
    elif isinstance(value, dict):
        for item in value.values():
            _check_strings(item)
    elif isinstance(value, list | tuple):
        for item in value:
            _check_strings(item)


def _json_bytes(value: Any) -> int:
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False,
                      default=lambda b: "x" * len(b) if isinstance(b, bytes) else str(b))
    return len(text.encode())


def _json_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _as_json(value: ContextDict) -> str:
    return json.dumps(value.to_dict(), default=str, ensure_ascii=False)


def _plain(value: Any) -> Any:
    """The emulator's attribute dicts (and anything else) as plain JSON values."""
    return json.loads(json.dumps(value, default=str))
