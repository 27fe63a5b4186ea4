"""The emulator wrapper (sigma_stack/emulator.py) is as strict as Cloud Workflows where the
emulator is kinder: type names, the shape of call errors, `hash`, and the resource limits.
A workflow that leans on one of the emulator's quirks fails here, as it would in the cloud."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import pytest

from sigma_stack.answering import AnsweringServer
from sigma_stack.emulator import MAX_VARIABLE_BYTES, Workflow, WorkflowFailed

CLOSED_PORT_URL = "http://127.0.0.1:1/nothing-listens-here"


@pytest.fixture(scope="module")
def server():
    with AnsweringServer() as running:
        yield running


def tiny(steps: list[dict], params: list[str] | None = None) -> Workflow:
    return Workflow(env={}, definition={"main": {"params": params or [], "steps": steps}})


def caught(call: dict) -> list[dict]:
    """Steps that make `call` and return the error it raised."""
    return [{"call_it": {"try": call, "except": {"as": "e", "steps": [{"give": {"return": "${e}"}}]}}}]


def get(url: str, **query: Any) -> dict:
    return {"call": "http.get", "args": {"url": url, "query": {k: str(v) for k, v in query.items()}}, "result": "r"}


def failure(workflow: Workflow, **params: Any) -> dict:
    with pytest.raises(WorkflowFailed) as failed:
        workflow.run(**params)
    return failed.value.error


def test_get_type_answers_cloud_workflows_type_names():
    workflow = tiny([
        {"values": {"assign": [{"i": 1}, {"d": 1.5}, {"s": "x"}, {"b": True}, {"n": None}, {"l": [1]}, {"m": {"k": 1}}]}},
        {"types": {"return": {
            "i": "${get_type(i)}", "d": "${get_type(d)}", "s": "${get_type(s)}", "b": "${get_type(b)}",
            "n": "${get_type(n)}", "l": "${get_type(l)}", "m": "${get_type(m)}",
            "bytes": '${get_type(text.encode("x"))}',
        }}},
    ])

    assert workflow.run() == {
        "i": "integer", "d": "double", "s": "string", "b": "bool", "n": "null", "l": "list", "m": "map", "bytes": "bytes",
    }


def test_a_workflow_relying_on_the_emulators_python_type_names_sees_them_fail():
    workflow = tiny([{"compare": {"return": '${get_type(1) == "int" or get_type(1.5) == "float"}'}}])

    assert workflow.run() is False


def test_http_error_is_tagged_HttpError_with_code_headers_and_the_json_body_parsed(server):
    body = {"error": {"code": "storage_unavailable", "message": "GCS is down", "retryable": True}}
    workflow = tiny(caught(get(server.url + "/answer", status=503, type="application/json", body=json.dumps(body))))

    error = workflow.run()

    assert error["tags"] == ["HttpError"]
    assert error["message"] == "HTTP server responded with error code 503"
    assert error["code"] == 503
    assert error["headers"]["Content-Type"] == "application/json"
    assert error["body"] == body


def test_http_error_body_that_is_not_json_stays_text(server):
    workflow = tiny(caught(get(server.url + "/answer", status=503, type="text/html", body='{"looks": "like json"}')))

    error = workflow.run()

    assert error["tags"] == ["HttpError"]
    assert error["body"] == '{"looks": "like json"}'


def test_a_refused_connection_is_a_catchable_ConnectionFailedError():
    error = tiny(caught(get(CLOSED_PORT_URL))).run()

    assert error["tags"] == ["ConnectionFailedError"]
    assert "code" not in error and "body" not in error


def test_a_call_past_its_timeout_is_a_catchable_TimeoutError(server):
    call = get(server.url + "/answer", delay=3)
    call["args"]["timeout"] = 1

    error = tiny(caught(call)).run()

    assert error["tags"] == ["TimeoutError"]


def test_oidc_calls_are_recorded_with_the_audience_cloud_workflows_would_use(server):
    explicit = get(server.url + "/answer")
    explicit["args"]["auth"] = {"type": "OIDC", "audience": server.url}
    default = get(server.url + "/answer")
    default["args"]["auth"] = {"type": "OIDC"}
    workflow = tiny([{"explicit": explicit}, {"default": default}, {"done": {"return": "${r.code}"}}])

    assert workflow.run() == 200

    assert [call.audience for call in workflow.calls] == [server.url, server.url + "/answer"]
    assert server.requests[-1].headers["Authorization"].startswith("Bearer ")


def test_hash_compute_checksum_is_available_as_in_cloud_workflows():
    workflow = tiny([{"checksum": {"return": '${base64.encode(hash.compute_checksum(text.encode("Hello World"), "SHA256"))}'}}])

    assert workflow.run() == base64.b64encode(hashlib.sha256(b"Hello World").digest()).decode()


def test_hash_compute_checksum_refuses_an_unknown_algorithm():
    workflow = tiny([{"checksum": {"return": '${hash.compute_checksum(text.encode("x"), "CRC32")}'}}])

    assert failure(workflow)["tags"] == ["ValueError"]


def test_an_http_response_over_2_mb_fails(server):
    error = failure(tiny([{"fetch": get(server.url + "/answer", type="text/plain", bytes=2 * 1024 * 1024 + 1)}]))

    assert error["tags"] == ["ResourceLimitError"]


def test_a_string_over_256_kb_fails_even_if_never_stored(server):
    fetch = get(server.url + "/answer", type="text/plain", bytes=300 * 1024)
    del fetch["result"]

    error = failure(tiny([{"fetch": fetch}]))

    assert error["tags"] == ["ResourceLimitError"]
    assert "string" in error["message"]


def test_variables_over_512_kb_together_fail(server):
    fetch = get(server.url + "/answer", type="text/plain", bytes=200 * 1024)
    steps = [{f"fetch_{i}": {**fetch, "result": f"r{i}"}} for i in range(3)]

    error = failure(tiny(steps + [{"done": {"return": "unreachable"}}]))

    assert error["tags"] == ["ResourceLimitError"]
    assert "Memory usage limit exceeded" in error["message"]


def test_the_peak_size_of_the_variables_is_measured(server):
    fetch = get(server.url + "/answer", type="text/plain", bytes=100 * 1024)
    workflow = tiny([{"fetch": fetch}, {"done": {"return": "${len(r.body)}"}}])

    assert workflow.run() == 100 * 1024

    assert 100 * 1024 < workflow.peak_variable_bytes < MAX_VARIABLE_BYTES


def test_sys_log_takes_cloud_loggings_severities_and_records_each_entry():
    workflow = tiny([
        {"notice": {"call": "sys.log", "args": {"severity": "NOTICE", "json": {"message": "waiting", "n": 1}}}},
        {"text": {"call": "sys.log", "args": {"severity": "WARNING", "text": "careful"}}},
        {"done": {"return": "ok"}},
    ])

    assert workflow.run() == "ok"

    assert [(e.severity, e.payload) for e in workflow.logs] == [("NOTICE", {"message": "waiting", "n": 1}),
                                                                ("WARNING", "careful")]


@pytest.mark.parametrize("args", [{"severity": "WARN", "text": "x"}, {"severity": "INFO", "text": "x", "json": {"a": 1}}],
                         ids=["unknown-severity", "text-and-json"])
def test_sys_log_refuses_what_cloud_workflows_refuses(args):
    workflow = tiny([{"log": {"call": "sys.log", "args": args}}])

    assert failure(workflow)["tags"] == ["ValueError"]


def test_virtual_time_skips_sleeps_and_moves_the_clock_on():
    workflow = tiny([
        {"before": {"assign": [{"t0": "${sys.now()}"}]}},
        {"nap": {"call": "sys.sleep", "args": {"seconds": 3600}}},
        {"done": {"return": "${sys.now() - t0}"}},
    ])
    workflow.virtual_time = True

    assert 3600 <= workflow.run() < 3610

    assert [(s.seconds, s.by) for s in workflow.sleeps] == [(3600, "sys.sleep")]


def test_virtual_time_skips_the_backoff_of_retry_policies_too(server):
    retried = {"try": get(server.url + "/answer", status=503), "retry": {"max_retries": 2, "backoff": {
        "initial_delay": 1, "max_delay": 60, "multiplier": 10}}}
    workflow = tiny([{"fetch": retried}])
    workflow.virtual_time = True

    assert failure(workflow)["code"] == 503

    assert {s.by for s in workflow.sleeps} == {"retry"} and sum(s.seconds for s in workflow.sleeps) >= 10


def test_sys_sleep_takes_whole_seconds_only():
    workflow = tiny([{"nap": {"call": "sys.sleep", "args": {"seconds": 0.5}}}])

    assert failure(workflow)["tags"] == ["TypeError"]
