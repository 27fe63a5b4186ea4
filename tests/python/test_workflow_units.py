"""Parts of workflows/sigma.yaml run on their own under the strict emulator wrapper, against
errors shaped exactly as Cloud Workflows shapes them: the error classification every retry
and failure event relies on, the settings checked before any call, and the Pub/Sub
attributes of the events."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
from typing import Any

import pytest
import yaml

from sigma_stack.answering import AnsweringServer
from sigma_stack.emulator import WORKFLOW, Workflow, WorkflowFailed
from sigma_stack.stack import finalize_event

SIGMA = yaml.safe_load(WORKFLOW.read_text())
TOPIC = "projects/sigma-local/topics/sigma-events"
CLOSED_PORT_URL = "http://127.0.0.1:1"
VALID_ENV = {
    "DECRYPT_URL": "https://sigma-decrypt-abc-ew.a.run.app",
    "DATAFLOW_URL": "https://sigma-dataflow-abc-ew.a.run.app",
    "DATAFORM_URL": "https://sigma-dataform-abc-ew.a.run.app",
    "POLL_INTERVAL_SECONDS": "30",
    "POLL_DEADLINE_SECONDS": "21600",
}
IGNORED_EVENT = finalize_event("company_trigger_bucket", "elsewhere/file.txt", "1", 10)


@pytest.fixture(scope="module")
def server():
    with AnsweringServer() as running:
        yield running


def sigma_with_main(steps: list[dict], params: list[str], **workflow: Any) -> Workflow:
    """sigma.yaml's subworkflows under a test's own `main`."""
    definition = copy.deepcopy(SIGMA)
    definition["main"] = {"params": params, "steps": steps}
    return Workflow(definition=definition, **{"env": {}, **workflow})


def described(call: dict, **params: Any) -> dict:
    """What describe_error and retry_if_transient make of the error `call` raises."""
    workflow = sigma_with_main(
        [
            {"fail": {"try": call, "except": {"as": "e", "steps": [
                {"describe": {"call": "describe_error", "args": {"e": "${e}"}, "result": "d"}},
                {"decide": {"call": "retry_if_transient", "args": {"e": "${e}"}, "result": "retrying"}},
                {"give": {"return": {"described": "${d}", "retry": "${retrying}"}}},
            ]}}},
        ],
        list(params),
    )
    outcome = workflow.run(**params)
    assert outcome["retry"] == outcome["described"]["retryable"]
    return outcome["described"]


def answer(status: int, content_type: str, body: Any) -> dict:
    text = body if isinstance(body, str) else json.dumps(body)
    return {"call": "http.get", "args": {"url": "${url}", "query": {"status": str(status), "type": content_type, "body": text}}, "result": "r"}


def service_error(code: str, retryable: bool) -> dict:
    return {"error": {"code": code, "message": f"{code} happened", "retryable": retryable}}


HTTP_MESSAGE = "HTTP server responded with error code {}"


@pytest.mark.parametrize(
    ("status", "content_type", "body", "expected"),
    [
        pytest.param(503, "application/json", service_error("storage_unavailable", True),
                     {"status": 503, "code": "storage_unavailable", "message": "storage_unavailable happened", "retryable": True},
                     id="service-retryable-503"),
        pytest.param(503, "application/json", service_error("quota_exhausted", False),
                     {"status": 503, "code": "quota_exhausted", "message": "quota_exhausted happened", "retryable": False},
                     id="service-flag-wins-over-5xx"),
        pytest.param(422, "application/json; charset=utf-8", service_error("invalid_token", False),
                     {"status": 422, "code": "invalid_token", "message": "invalid_token happened", "retryable": False},
                     id="service-4xx"),
        pytest.param(409, "application/json", service_error("invocation_in_progress", True),
                     {"status": 409, "code": "invocation_in_progress", "message": "invocation_in_progress happened", "retryable": True},
                     id="service-flag-wins-over-4xx"),
        pytest.param(503, "text/html", "<html><body>Service Unavailable</body></html>",
                     {"status": 503, "code": "http_503", "message": HTTP_MESSAGE.format(503), "retryable": True},
                     id="proxy-html-503"),
        pytest.param(429, "text/plain", "Too Many Requests",
                     {"status": 429, "code": "http_429", "message": HTTP_MESSAGE.format(429), "retryable": True},
                     id="text-429"),
        pytest.param(404, "application/json", {"error": {"code": 404, "message": "Topic not found", "status": "NOT_FOUND"}},
                     {"status": 404, "code": "http_404", "message": "Topic not found", "retryable": False},
                     id="google-api-404"),
        pytest.param(500, "application/json", [1, 2],
                     {"status": 500, "code": "http_500", "message": HTTP_MESSAGE.format(500), "retryable": True},
                     id="json-list-body"),
        pytest.param(502, "application/json", {"error": "bad gateway"},
                     {"status": 502, "code": "http_502", "message": HTTP_MESSAGE.format(502), "retryable": True},
                     id="json-error-not-a-map"),
        pytest.param(400, "application/json", {"detail": "no error key"},
                     {"status": 400, "code": "http_400", "message": HTTP_MESSAGE.format(400), "retryable": False},
                     id="json-without-error"),
    ],
)
def test_http_errors_are_classified_from_code_and_a_guarded_body(server, status, content_type, body, expected):
    assert described(answer(status, content_type, body), url=server.url + "/answer") == expected


def test_a_refused_connection_is_retried():
    result = described({"call": "http.get", "args": {"url": CLOSED_PORT_URL}, "result": "r"})

    assert result["code"] == "ConnectionFailedError"
    assert result["status"] == 0
    assert result["retryable"] is True


def test_a_timed_out_call_is_retried(server):
    call = {"call": "http.get", "args": {"url": server.url + "/answer", "query": {"delay": "3"}, "timeout": 1}, "result": "r"}

    result = described(call)

    assert result["code"] == "TimeoutError"
    assert result["retryable"] is True


def test_an_error_the_workflow_raises_is_described_by_its_reason_and_not_retried():
    raised = {"raise": {"reason": "poll_deadline_exceeded", "message": "still RUNNING after 30 s", "tags": ["SigmaError"]}}

    assert described(raised) == {"status": 0, "code": "poll_deadline_exceeded", "message": "still RUNNING after 30 s", "retryable": False}


# --- settings: checked in init, before any call ---------------------------------------------

def run_sigma(env: dict[str, str], event: dict = IGNORED_EVENT) -> tuple[Workflow, Any]:
    workflow = Workflow(env=env)
    try:
        return workflow, workflow.run(event)
    except WorkflowFailed as failed:
        return workflow, failed.error


@pytest.mark.parametrize(
    ("setting", "value", "message"),
    [
        ("POLL_INTERVAL_SECONDS", "0", "POLL_INTERVAL_SECONDS must be at least 1"),
        ("POLL_INTERVAL_SECONDS", "-5", "POLL_INTERVAL_SECONDS must be a whole number of seconds"),
        ("POLL_INTERVAL_SECONDS", "thirty", "POLL_INTERVAL_SECONDS must be a whole number of seconds"),
        ("POLL_DEADLINE_SECONDS", "", "POLL_DEADLINE_SECONDS must be a whole number of seconds"),
        ("POLL_DEADLINE_SECONDS", "10", "POLL_DEADLINE_SECONDS (10) must be at least POLL_INTERVAL_SECONDS (30)"),
        ("POLL_DEADLINE_SECONDS", "60030", "POLL_DEADLINE_SECONDS / POLL_INTERVAL_SECONDS (60030 / 30) must be at most 2000 polls"),
        ("DECRYPT_URL", "", "DECRYPT_URL must be the service's root URL"),
        ("DATAFLOW_URL", "https://sigma-dataflow-abc-ew.a.run.app/launch", "DATAFLOW_URL must be the service's root URL"),
        ("DATAFORM_URL", "sigma-dataform-abc-ew.a.run.app", "DATAFORM_URL must be the service's root URL"),
    ],
)
def test_invalid_settings_fail_the_execution_before_any_call(setting, value, message):
    workflow, error = run_sigma({**VALID_ENV, setting: value})

    assert error["reason"] == "invalid_settings"
    assert error["message"].startswith(message)
    assert workflow.calls == []


def test_a_real_object_with_interval_0_fails_before_decrypt_is_called():
    event = finalize_event("company_trigger_bucket", "data/20240115/lkp_fechas.gz.encrypted", "1", 10)

    workflow, error = run_sigma({**VALID_ENV, "POLL_INTERVAL_SECONDS": "0"}, event)

    assert error["reason"] == "invalid_settings"
    assert workflow.calls == []


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"POLL_INTERVAL_SECONDS": "1", "POLL_DEADLINE_SECONDS": "2000"},
        {"POLL_INTERVAL_SECONDS": "60", "POLL_DEADLINE_SECONDS": "60"},
        {"DECRYPT_URL": VALID_ENV["DECRYPT_URL"] + "/", "DATAFORM_URL": "http://127.0.0.1:8080"},
    ],
)
def test_valid_settings_pass_the_checks(changes):
    _, result = run_sigma({**VALID_ENV, **changes})

    assert result["status"] == "ignored"


def test_a_service_url_with_a_trailing_slash_is_called_and_authenticated_at_its_root():
    workflow = sigma_with_main(
        [{"init": {"assign": [{"decrypt_url": '${text.replace_all_regex(sys.get_env("DECRYPT_URL", ""), "/+$", "")}'}]}},
         {"give": {"return": "${decrypt_url}"}}],
        [],
        env={"DECRYPT_URL": "https://sigma-decrypt-abc-ew.a.run.app//"},
    )

    assert workflow.run() == "https://sigma-decrypt-abc-ew.a.run.app"


# --- Pub/Sub attributes ----------------------------------------------------------------------

def published(server: AnsweringServer, object_uri: str) -> dict:
    """The message publish_event sends for an event about `object_uri`."""
    workflow = sigma_with_main(
        [{"send": {"call": "publish_event", "args": {"event": {
            "event_type": "sigma.chain.failed", "service": "sigma-workflow", "object": "${uri}",
            "generation": "1", "entity": "", "time": "2024-01-15T10:00:00Z", "detail": {}}}, "result": "ok"}},
         {"give": {"return": "${ok}"}}],
        ["uri"],
        env={"EVENTS_TOPIC": TOPIC},
        googleapis={"pubsub": server.url},
    )
    assert workflow.run(uri=object_uri) is True
    request = server.requests[-1]
    assert request.path == f"/v1/{TOPIC}:publish"
    (message,) = request.body["messages"]
    return {"attributes": message["attributes"], "data": json.loads(base64.b64decode(message["data"]))}


def sha256_b64(text: str) -> str:
    return base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()


def test_a_short_object_uri_is_the_attribute_as_is(server):
    uri = "gs://company_trigger_bucket/data/20240115/lkp_fechas.gz.encrypted"

    message = published(server, uri)

    assert message["attributes"]["object"] == uri


@pytest.mark.parametrize("character", ["x", "ñ", "€", "𝄞"], ids=["ascii", "2-byte", "3-byte", "4-byte"])
def test_a_long_object_uri_is_shortened_to_fit_and_stay_unique(server, character):
    uri = "gs://company_trigger_bucket/data/20240115/" + character * 1000 + ".gz.encrypted"
    sibling = uri.replace(".gz.encrypted", "2.gz.encrypted")

    message = published(server, uri)
    other = published(server, sibling)

    attribute = message["attributes"]["object"]
    assert len(attribute.encode()) <= 1024
    assert attribute == uri[:240] + "...sha256:" + sha256_b64(uri)
    assert other["attributes"]["object"] != attribute
    assert message["data"]["object"] == uri


def test_an_object_uri_of_exactly_1023_bytes_is_kept_whole(server):
    prefix = "gs://company_trigger_bucket/data/"
    uri = prefix + "x" * (1023 - len(prefix))

    assert published(server, uri)["attributes"]["object"] == uri
