"""The Workflow Executions API (v1, REST/JSON) on this machine, backed by the real
workflows/sigma.yaml under the wrapped emulator, so that `sigma runs` and `sigma replay` (the
official `google-cloud-workflows-executions-v1` crate) work against the local stack as they do
against Google.

What it serves, as the discovery document `workflowexecutions_v1.json` defines it:

- `POST /v1/{parent}/executions` (create): the body is an `Execution`; only `argument` (a JSON
  *string*, at most 32 KB), `callLogLevel`, `labels` and
  `disableConcurrencyQuotaOverflowBuffering` are accepted, output-only fields are ignored, and
  any other field is refused with 400 INVALID_ARGUMENT, as Google refuses it;
- `GET /v1/{name}` (get; `view` FULL by default) and `GET /v1/{parent}/executions` (list;
  `view` BASIC by default, `pageSize` up to 1000 for BASIC and 100 for FULL, `pageToken`,
  `filter` in the AIP-160 subset `field OP value [AND ...]` over `executionId`, `state`,
  `createTime`, `startTime`, `endTime`, `duration`, `workflowRevisionId`, `stepName` and
  `labels.KEY`, and `orderBy` over the same fields, `createTime desc` by default);
- `POST /v1/{name}:cancel`: an ACTIVE or QUEUED execution ends CANCELLED at once and its run
  stops before its next step or sleep (an HTTP call in flight completes, as in Cloud
  Workflows; the workflow's `except` blocks do not run); a finished one is refused with
  400 FAILED_PRECONDITION;
- errors in Google's shape `{"error": {"code", "message", "status"[, "details"]}}`; enums as
  names, or as numbers when the client asks with `$alt=json;enum-encoding=int` (as the
  official clients do).

The emulator runs one workflow at a time in a process (it patches module globals for a run),
so executions run one after another on one worker thread: an execution waiting for its turn is
QUEUED (Cloud Workflows' state for a backlogged execution) and has no `startTime` yet.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import queue
import re
import threading
import time
import uuid
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Iterator
from urllib.parse import parse_qs, unquote, urlsplit

from workflows_emulator import main as emulator
from workflows_emulator.lib import sys_utils

from .emulator import Workflow, WorkflowFailed

#: The revision the emulator reports as GOOGLE_CLOUD_WORKFLOW_REVISION_ID.
REVISION = "000001-local"
MAX_ARGUMENT_BYTES = 32 * 1024
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = {"BASIC": 1000, "FULL": 100}
#: How long `stop()` waits for the execution in progress to notice it was cancelled.
STOP_TIMEOUT_SECONDS = 30

STATES = ["STATE_UNSPECIFIED", "ACTIVE", "SUCCEEDED", "FAILED", "CANCELLED", "UNAVAILABLE", "QUEUED"]
FINISHED = {"SUCCEEDED", "FAILED", "CANCELLED"}
CALL_LOG_LEVELS = ["CALL_LOG_LEVEL_UNSPECIFIED", "LOG_ALL_CALLS", "LOG_ERRORS_ONLY", "LOG_NONE"]
VIEWS = ["EXECUTION_VIEW_UNSPECIFIED", "BASIC", "FULL"]
#: The fields of the BASIC view (the discovery document's description of `view`).
BASIC_FIELDS = ("name", "startTime", "endTime", "duration", "state", "workflowRevisionId")
WRITABLE = {"argument", "callLogLevel", "labels", "disableConcurrencyQuotaOverflowBuffering"}
OUTPUT_ONLY = {"name", "createTime", "startTime", "endTime", "duration", "state", "result", "error",
               "workflowRevisionId", "status", "stateError"}
LABEL = re.compile(r"^[\w-]{0,63}$")
LABEL_KEY = re.compile(r"^[^\W\d_][\w-]{0,62}$")


class ApiError(Exception):
    """A refusal, answered as Google answers it."""

    HTTP = {"INVALID_ARGUMENT": 400, "FAILED_PRECONDITION": 400, "NOT_FOUND": 404}

    def __init__(self, status: str, message: str, field_name: str | None = None):
        super().__init__(message)
        self.status = status
        self.code = self.HTTP[status]
        self.field_name = field_name

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": str(self), "status": self.status}
        if self.field_name is not None:
            error["details"] = [{
                "@type": "type.googleapis.com/google.rpc.BadRequest",
                "fieldViolations": [{"field": self.field_name, "description": str(self)}],
            }]
        return {"error": error}


def invalid(message: str, field_name: str | None = None) -> ApiError:
    return ApiError("INVALID_ARGUMENT", message, field_name)


class ExecutionCancelled(BaseException):
    """Raised inside a cancelled run at its next step or sleep. A BaseException, so neither the
    workflow's `except` nor the emulator's error mapping can catch it, as in Cloud Workflows."""


@dataclass
class Execution:
    name: str
    argument: str | None
    labels: dict[str, str]
    call_log_level: str
    create_time: float = field(default_factory=time.time)
    start_time: float | None = None
    end_time: float | None = None
    state: str = "QUEUED"
    result: str | None = None
    error: dict[str, Any] | None = None
    #: The step running now or, once finished, the last one: (routine, step).
    current_step: tuple[str, str] | None = None
    cancelled: threading.Event = field(default_factory=threading.Event)

    @property
    def id(self) -> str:
        return self.name.rsplit("/", 1)[1]

    @property
    def duration(self) -> float | None:
        if self.start_time is None or self.end_time is None:
            return None
        return self.end_time - self.start_time

    def to_json(self, view: str, int_enums: bool) -> dict[str, Any]:
        def enum(values: list[str], value: str) -> str | int:
            return values.index(value) if int_enums else value

        full: dict[str, Any] = {
            "name": self.name,
            "createTime": _timestamp(self.create_time),
            "startTime": _timestamp(self.start_time),
            "endTime": _timestamp(self.end_time),
            "duration": None if self.duration is None else f"{self.duration:.6f}s",
            "state": enum(STATES, self.state),
            "argument": self.argument,
            "result": self.result,
            "error": self.error,
            "workflowRevisionId": REVISION,
            "callLogLevel": None if self.call_log_level == CALL_LOG_LEVELS[0]
            else enum(CALL_LOG_LEVELS, self.call_log_level),
            "labels": self.labels or None,
            "status": {"currentSteps": [{"routine": r, "step": s} for r, s in [self.current_step]]}
            if self.current_step else None,
        }
        if view == "BASIC":
            full = {name: full[name] for name in BASIC_FIELDS}
        # proto3 JSON: fields at their default (unset, unspecified, empty) are left out.
        return {name: value for name, value in full.items() if value is not None}

    def finish(self, state: str, result: str | None = None, error: dict[str, Any] | None = None) -> bool:
        """Ends the execution unless it already ended (a cancel wins over the run's own end)."""
        if self.state in FINISHED:
            return False
        self.state, self.result, self.error, self.end_time = state, result, error, time.time()
        if self.start_time is None:
            self.start_time = self.end_time
        return True


@dataclass
class _IdentifiedWorkflow(Workflow):
    """A Workflow whose run sees this execution's id as GOOGLE_CLOUD_WORKFLOW_EXECUTION_ID, so
    the failure events the workflow publishes name the execution the API lists."""

    execution_id: str = ""

    def _environment(self, _generated_id: str) -> contextlib.AbstractContextManager[None]:
        return super()._environment(self.execution_id)


class _Observer:
    """What one execution's run swaps into the emulator (around the strict wrapper's own
    swaps): the cancel check before every step and in every sleep, and the step being run."""

    def __init__(self, execution: Execution, definition: dict[str, Any]):
        self.execution = execution
        self.definition = definition
        self._routines: list[str] = []
        self._steps: list[tuple[str, str]] = []
        self._error: BaseException | None = None
        #: The steps (innermost last) where the error that ended the run was raised.
        self.trace: list[tuple[str, str]] = []

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        saved = (emulator.execute_step, emulator.execute_subworkflow, emulator.sleep, sys_utils.sleep)
        originals = saved[:2]
        emulator.execute_step = lambda *args: self.execute_step(originals[0], *args)
        emulator.execute_subworkflow = lambda *args, **kwargs: self.execute_subworkflow(originals[1], *args, **kwargs)
        emulator.sleep = sys_utils.sleep = self.sleep
        try:
            yield
        finally:
            emulator.execute_step, emulator.execute_subworkflow, emulator.sleep, sys_utils.sleep = saved

    def execute_step(self, original: Callable, step_id: Any, config: dict, context: dict) -> Any:
        self._check()
        step = (self._routines[-1] if self._routines else "main", str(step_id))
        self._steps.append(step)
        self.execution.current_step = step
        try:
            return original(step_id, config, context)
        except BaseException as err:
            if err is not self._error:
                self._error, self.trace = err, list(dict.fromkeys(self._steps))
            raise
        finally:
            self._steps.pop()

    def execute_subworkflow(self, original: Callable, workflow: dict, params: dict, context: dict) -> Any:
        name = next((n for n, body in self.definition.items() if body == workflow), "main")
        self._routines.append(name)
        try:
            return original(workflow, params, context)
        finally:
            self._routines.pop()

    def sleep(self, seconds: float) -> None:
        if self.execution.cancelled.wait(float(seconds)):
            raise ExecutionCancelled

    def _check(self) -> None:
        if self.execution.cancelled.is_set():
            raise ExecutionCancelled


class Executions:
    """The executions of one workflow, run one at a time by a worker thread."""

    def __init__(self, workflow_name: str, workflow: Callable[[], Workflow]):
        self.workflow_name = workflow_name
        self._workflow = workflow
        self._lock = threading.Lock()
        self._executions: dict[str, Execution] = {}
        self._queue: queue.Queue[Execution | None] = queue.Queue()
        self._worker = threading.Thread(target=self._work, name="workflow-executions", daemon=True)
        self._worker.start()

    def stop(self) -> None:
        with self._lock:
            for execution in self._executions.values():
                if execution.finish("CANCELLED", error=_cancelled_error()):
                    execution.cancelled.set()
        self._queue.put(None)
        self._worker.join(STOP_TIMEOUT_SECONDS)

    # --- the API's methods ------------------------------------------------------------------

    def create(self, parent: str, body: Any) -> Execution:
        self._workflow_of(parent)
        if not isinstance(body, dict):
            raise invalid("Invalid JSON payload received. Expected an object (Execution).", "execution")
        for name in body:
            if name not in WRITABLE | OUTPUT_ONLY:
                raise invalid(f"Invalid JSON payload received. Unknown name \"{name}\" at 'execution': "
                              "Cannot find field.", "execution")
        argument = body.get("argument")
        if argument is not None:
            if not isinstance(argument, str):
                raise invalid(f"Invalid value at 'execution.argument' (TYPE_STRING), {json.dumps(argument)}",
                              "execution.argument")
            if len(argument.encode()) > MAX_ARGUMENT_BYTES:
                raise invalid(f"execution.argument: {len(argument.encode())} bytes, more than the "
                              f"{MAX_ARGUMENT_BYTES}-byte limit", "execution.argument")
            try:
                json.loads(argument)
            except ValueError as err:
                raise invalid(f"execution.argument: not a valid JSON string: {err}", "execution.argument") from None
        if not isinstance(body.get("disableConcurrencyQuotaOverflowBuffering", False), bool):
            raise invalid("Invalid value at 'execution.disable_concurrency_quota_overflow_buffering' (TYPE_BOOL)",
                          "execution.disable_concurrency_quota_overflow_buffering")
        execution = Execution(
            name=f"{parent}/executions/{uuid.uuid4()}",
            argument=argument,
            labels=_labels(body.get("labels")),
            call_log_level=_enum(body.get("callLogLevel", CALL_LOG_LEVELS[0]), CALL_LOG_LEVELS,
                                 "execution.call_log_level"),
        )
        with self._lock:
            self._executions[execution.id] = execution
        self._queue.put(execution)
        return execution

    def get(self, name: str) -> Execution:
        parent, _, execution_id = name.rpartition("/executions/")
        self._workflow_of(parent)
        with self._lock:
            execution = self._executions.get(execution_id)
        if execution is None or execution.name != name:
            raise ApiError("NOT_FOUND", f"Resource '{name}' was not found")
        return execution

    def list(self, parent: str, query: dict[str, str], view: str) -> dict[str, Any]:
        self._workflow_of(parent)
        page_size = _integer(query.get("pageSize", "0"), "page_size") or DEFAULT_PAGE_SIZE
        page_size = min(page_size, MAX_PAGE_SIZE[view])
        matches = _filter(query.get("filter", ""))
        order = _order(query.get("orderBy", ""))
        fingerprint = hashlib.sha256(json.dumps([query.get("filter", ""), query.get("orderBy", "")]).encode()).hexdigest()[:16]
        offset = _offset(query.get("pageToken", ""), fingerprint)
        with self._lock:
            executions = [e for e in self._executions.values() if matches(e)]
        for key, descending in reversed(order):
            present = [e for e in executions if _field(e, key) is not None]
            absent = [e for e in executions if _field(e, key) is None]
            executions = sorted(present, key=lambda e: _field(e, key), reverse=descending) + absent
        page = executions[offset:offset + page_size]
        # proto3 JSON: an empty list is left out.
        answer: dict[str, Any] = {"executions": page} if page else {}
        if offset + page_size < len(executions):
            token = json.dumps({"offset": offset + page_size, "query": fingerprint})
            answer["nextPageToken"] = base64.urlsafe_b64encode(token.encode()).decode()
        return answer

    def cancel(self, name: str) -> Execution:
        execution = self.get(name)
        with self._lock:
            if not execution.finish("CANCELLED", error=_cancelled_error()):
                raise ApiError("FAILED_PRECONDITION",
                               f"Execution {name} cannot be cancelled: it is {execution.state}, not ACTIVE")
        execution.cancelled.set()
        return execution

    def _workflow_of(self, parent: str) -> None:
        if parent != self.workflow_name:
            raise ApiError("NOT_FOUND", f"Resource '{parent}' was not found")

    # --- the worker ---------------------------------------------------------------------------

    def _work(self) -> None:
        while (execution := self._queue.get()) is not None:
            with self._lock:
                if execution.state != "QUEUED":
                    continue
                execution.state, execution.start_time = "ACTIVE", time.time()
            self._run(execution)

    def _run(self, execution: Execution) -> None:
        template = self._workflow()
        workflow = _IdentifiedWorkflow(
            **{f.name: getattr(template, f.name) for f in fields(template) if f.init},
            execution_id=execution.id,
        )
        observer = _Observer(execution, workflow.definition or {})
        argument = json.loads(execution.argument) if execution.argument is not None else None
        outcome: tuple[str, str | None, dict[str, Any] | None]
        try:
            with observer.installed():
                result = workflow.run(argument)
            outcome = ("SUCCEEDED", json.dumps(result), None)
        except ExecutionCancelled:
            outcome = ("CANCELLED", None, _cancelled_error())
        except WorkflowFailed as failed:
            outcome = ("FAILED", None, _error(failed.error, observer.trace))
        except Exception as err:  # noqa: BLE001 - the emulator's own failures end the execution too
            outcome = ("FAILED", None, _error({"message": str(err), "tags": [type(err).__name__]}, observer.trace))
        with self._lock:
            execution.finish(*outcome)


class ExecutionsServer:
    """The HTTP face of `Executions`. Use as a context manager or call `stop()`;
    `endpoint` is `http://127.0.0.1:PORT`."""

    def __init__(self, workflow_name: str, workflow: Callable[[], Workflow]):
        self.executions = Executions(workflow_name, workflow)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self.executions))
        self._server.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="executions-api", daemon=True)
        self._thread.start()

    def __enter__(self) -> "ExecutionsServer":
        return self

    def __exit__(self, *_: Any) -> None:
        self.stop()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self.executions.stop()


def _handler(executions: Executions) -> type[BaseHTTPRequestHandler]:
    collection = re.compile(r"^/v1/(projects/[^/]+/locations/[^/]+/workflows/[^/]+)/executions$")
    resource = re.compile(r"^/v1/(projects/[^/]+/locations/[^/]+/workflows/[^/]+/executions/[^/:]+)(:cancel)?$")

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            self._answer("GET")

        def do_POST(self) -> None:
            self._answer("POST")

        def _answer(self, method: str) -> None:
            parts = urlsplit(self.path)
            path = unquote(parts.path)
            query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
            int_enums = "enum-encoding=int" in query.get("$alt", "")
            try:
                body = self._body()
                status, answer = 200, self._route(method, path, query, body, int_enums)
            except ApiError as err:
                status, answer = err.code, err.body()
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=UTF-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _body(self) -> Any:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if not raw.strip():
                return None
            try:
                return json.loads(raw)
            except ValueError as err:
                raise invalid(f"Invalid JSON payload received. {err}") from None

        def _route(self, method: str, path: str, query: dict[str, str], body: Any, int_enums: bool) -> Any:
            if (match := collection.match(path)) and method == "POST":
                return executions.create(match[1], body if body is not None else {}).to_json("FULL", int_enums)
            if match and method == "GET":
                view = _view(query, "BASIC")
                answer = executions.list(match[1], query, view)
                if "executions" in answer:
                    answer["executions"] = [e.to_json(view, int_enums) for e in answer["executions"]]
                return answer
            if (match := resource.match(path)) and match[2] and method == "POST":
                return executions.cancel(match[1]).to_json("FULL", int_enums)
            if match and not match[2] and method == "GET":
                return executions.get(match[1]).to_json(_view(query, "FULL"), int_enums)
            raise ApiError("NOT_FOUND", f"The requested URL {path} was not found on this server ({method}).")

        def log_message(self, *_: Any) -> None:
            pass

    return Handler


# --- values -------------------------------------------------------------------------------------


def _timestamp(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse_time(text: str) -> float:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise invalid(f"invalid filter: {text!r} is not an RFC 3339 timestamp", "filter") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


def _parse_duration(text: str) -> float:
    if not re.fullmatch(r"\d+(\.\d+)?s", text):
        raise invalid(f"invalid filter: {text!r} is not a duration such as \"3.5s\"", "filter")
    return float(text[:-1])


def _enum(value: Any, values: list[str], field_name: str) -> str:
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(values):
        return values[value]
    if isinstance(value, str) and value.isdigit() and int(value) < len(values):
        return values[int(value)]
    if value in values:
        return value
    raise invalid(f"Invalid value at '{field_name}', {json.dumps(value)}: not one of {', '.join(values)}", field_name)


def _view(query: dict[str, str], default: str) -> str:
    view = _enum(query.get("view", VIEWS[0]), VIEWS, "view")
    return default if view == VIEWS[0] else view


def _integer(text: str, field_name: str) -> int:
    if not re.fullmatch(r"\d+", text):
        raise invalid(f"Invalid value at '{field_name}' (TYPE_INT32), \"{text}\"", field_name)
    return int(text)


def _labels(labels: Any) -> dict[str, str]:
    if labels is None:
        return {}
    if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
        raise invalid("Invalid value at 'execution.labels': a map of strings", "execution.labels")
    if len(labels) > 64:
        raise invalid(f"execution.labels: {len(labels)} labels, at most 64", "execution.labels")
    for key, value in labels.items():
        if not LABEL_KEY.match(key) or not LABEL.match(value) or key.lower() != key or value.lower() != value:
            raise invalid(f"execution.labels: {key}={value}: keys and values are at most 63 lowercase "
                          "letters, digits, '_' and '-', and keys start with a letter", "execution.labels")
    return dict(labels)


def _offset(token: str, fingerprint: str) -> int:
    if not token:
        return 0
    try:
        parsed = json.loads(base64.urlsafe_b64decode(token.encode()))
        offset, query = int(parsed["offset"]), parsed["query"]
    except (ValueError, KeyError, TypeError):
        raise invalid("The page token is invalid.", "page_token") from None
    if query != fingerprint:
        raise invalid("The page token does not belong to this filter and order.", "page_token")
    return offset


# --- filter and order -----------------------------------------------------------------------------

ORDERABLE = ("executionId", "state", "createTime", "startTime", "endTime", "duration", "workflowRevisionId")
TERM = re.compile(r'\s*([A-Za-z][\w.]*(?:\."[^"]*")?)\s*(>=|<=|!=|=|>|<|:)\s*("(?:[^"\\]|\\.)*"|[^\s"]+)\s*')


def _field(execution: Execution, name: str) -> Any:
    if name.startswith(("labels.", "label.")):
        return execution.labels.get(name.split(".", 1)[1].strip('"'))
    return {
        "executionId": execution.id,
        "state": execution.state,
        "createTime": execution.create_time,
        "startTime": execution.start_time,
        "endTime": execution.end_time,
        "duration": execution.duration,
        "workflowRevisionId": REVISION,
        "stepName": execution.current_step[1] if execution.current_step else None,
    }[name]


def _filter(text: str) -> Callable[[Execution], bool]:
    """AIP-160's conjunctions of comparisons: `state="FAILED" AND startTime>"2024-01-01T00:00:00Z"`."""
    if not text.strip():
        return lambda _: True
    tests = []
    for term in re.split(r"\s+AND\s+", text.strip()):
        match = TERM.fullmatch(term)
        if match is None:
            raise invalid(f"invalid filter {text!r}: {term!r} is not `field OP value` (terms are joined by AND)",
                          "filter")
        name, operator, raw = match.groups()
        value = json.loads(raw) if raw.startswith('"') else raw
        if not (name in ORDERABLE or name == "stepName" or name.startswith(("labels.", "label."))):
            raise invalid(f"invalid filter {text!r}: cannot filter on {name!r}", "filter")
        if name in ("createTime", "startTime", "endTime"):
            value = _parse_time(value)
        elif name == "duration":
            value = _parse_duration(value)
        elif name == "state" and value not in STATES:
            raise invalid(f"invalid filter {text!r}: {value!r} is not a state", "filter")
        tests.append((name, operator, value))

    def matches(execution: Execution) -> bool:
        for name, operator, value in tests:
            actual = _field(execution, name)
            if actual is None:
                return False
            if operator == ":":
                operator = "=" if not isinstance(actual, str) else ":"
            ok = {
                "=": lambda: actual == value, "!=": lambda: actual != value,
                ">": lambda: actual > value, "<": lambda: actual < value,
                ">=": lambda: actual >= value, "<=": lambda: actual <= value,
                ":": lambda: str(value) in actual,
            }[operator]()
            if not ok:
                return False
        return True

    return matches


def _order(text: str) -> list[tuple[str, bool]]:
    if not text.strip():
        return [("createTime", True)]
    order = []
    for part in text.split(","):
        words = part.split()
        if not words or len(words) > 2 or words[0] not in ORDERABLE or words[1:] not in ([], ["asc"], ["desc"]):
            raise invalid(f"invalid order_by {text!r}: fields are {', '.join(ORDERABLE)}, each optionally "
                          "followed by asc or desc", "order_by")
        order.append((words[0], words[1:] == ["desc"]))
    return order


# --- errors of executions --------------------------------------------------------------------------


def _error(payload: Any, trace: list[tuple[str, str]]) -> dict[str, Any]:
    """Cloud Workflows' `Error`: the raised value as a JSON string, a readable context and the
    steps (innermost first) it came from."""
    innermost_first = list(reversed(trace))
    if isinstance(payload, dict) and payload.get("tags"):
        headline = f"{', '.join(map(str, payload['tags']))}: {payload.get('message', '')}"
    else:
        headline = f"Error: {json.dumps(payload)}"
    context = "\n".join([headline] + [f'in step "{step}", routine "{routine}"' for routine, step in innermost_first])
    return {
        "payload": json.dumps(payload),
        "context": context,
        "stackTrace": {"elements": [{"step": step, "routine": routine} for routine, step in innermost_first]},
    }


def _cancelled_error() -> dict[str, Any]:
    return {"payload": json.dumps({"message": "Execution cancelled", "tags": ["CancelledError"]}),
            "context": "Execution cancelled by a cancel request"}
