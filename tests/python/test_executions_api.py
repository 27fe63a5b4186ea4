"""The local Workflow Executions API (sigma_stack/executions.py), through plain HTTP as the
`google-cloud-workflows-executions-v1` crate calls it: the real workflow runs behind it."""

from __future__ import annotations

import json
import time
import uuid
from datetime import datetime, timedelta, timezone

import pytest
import requests

from sigma_stack.stack import TRIGGER_BUCKET, WORKFLOW_NAME, Stack
from test_e2e import sample_gzip

WAIT_SECONDS = 60


# --- harness ------------------------------------------------------------------------------------


def api(stack: Stack, method: str, path: str, **kwargs) -> requests.Response:
    return requests.request(method, f"{stack.executions.endpoint}/v1/{path}", timeout=30, **kwargs)


def create(stack: Stack, argument: object, **fields) -> dict:
    """Starts an execution of the workflow with `argument` (sent, as Google wants it, as a JSON string)."""
    response = api(stack, "POST", f"{WORKFLOW_NAME}/executions", json={"argument": json.dumps(argument), **fields})
    assert response.status_code == 200, response.text
    return response.json()


def get(stack: Stack, name: str, **params) -> dict:
    response = api(stack, "GET", name, params=params)
    assert response.status_code == 200, response.text
    return response.json()


def finished(stack: Stack, name: str) -> dict:
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        execution = get(stack, name)
        if execution["state"] not in ("ACTIVE", "QUEUED"):
            return execution
        time.sleep(0.2)
    raise AssertionError(f"{name} still {execution['state']} after {WAIT_SECONDS} s")


def list_executions(stack: Stack, **params) -> dict:
    response = api(stack, "GET", f"{WORKFLOW_NAME}/executions", params=params)
    assert response.status_code == 200, response.text
    return response.json()


def assert_refused(response: requests.Response, code: int, status: str) -> dict:
    assert response.status_code == code, response.text
    error = response.json()["error"]
    assert (error["code"], error["status"]) == (code, status)
    assert error["message"]
    return error


def upload(stack: Stack, name: str) -> dict:
    return stack.upload(name, stack.encrypt(sample_gzip()))


def ignored_event(stack: Stack) -> dict:
    """An event the workflow ignores at once (outside the prefix): a quick SUCCEEDED execution."""
    return stack.upload(f"elsewhere/{uuid.uuid4().hex}.gz.encrypted", b"x")


# --- create, get, run ---------------------------------------------------------------------------


def test_execution_of_a_good_upload_succeeds_with_the_chain_result_as_a_json_string(stack):
    event = upload(stack, "data/20240301/lkp_fechas.gz.encrypted")

    created = create(stack, event, labels={"source": "test"})
    execution = finished(stack, created["name"])

    assert created["name"].startswith(f"{WORKFLOW_NAME}/executions/")
    assert created["state"] in ("QUEUED", "ACTIVE")
    assert execution["state"] == "SUCCEEDED"
    result = json.loads(execution["result"])
    assert result["status"] == "succeeded"
    assert result["job"]["state"] == "SUCCEEDED"
    assert json.loads(execution["argument"]) == event
    assert execution["labels"] == {"source": "test"}
    assert execution["workflowRevisionId"]
    assert execution["createTime"] <= execution["startTime"] < execution["endTime"]
    assert execution["duration"].endswith("s") and float(execution["duration"][:-1]) > 0
    assert "error" not in execution
    (current,) = execution["status"]["currentSteps"]
    assert current["routine"] == "main" and current["step"]


def test_execution_of_a_tampered_upload_fails_with_the_workflow_error_as_payload(stack):
    token = bytearray(stack.encrypt(sample_gzip()))
    token[len(token) // 2] ^= 1
    event = stack.upload("data/20240302/lkp_fechas.gz.encrypted", bytes(token))

    execution = finished(stack, create(stack, event)["name"])

    assert execution["state"] == "FAILED"
    assert "result" not in execution
    payload = json.loads(execution["error"]["payload"])
    assert payload["code"] == 422
    assert payload["body"]["error"]["code"] == "invalid_token"
    assert execution["error"]["context"]
    assert execution["error"]["stackTrace"]["elements"][-1]["routine"] == "main"
    (failure,) = [
        m for m in stack.fakes_api.messages()
        if m["attributes"]["event_type"] == "sigma.chain.failed"
        and m["attributes"].get("object") == f"gs://{TRIGGER_BUCKET}/{event['data']['name']}"
    ]
    assert failure["data"]["detail"]["execution_id"] == execution["name"].rsplit("/", 1)[1], \
        "the failure event names the execution the API lists"


def test_get_full_has_everything_and_basic_only_name_times_state_and_revision(stack):
    name = create(stack, ignored_event(stack), labels={"view": "test"}, callLogLevel="LOG_ERRORS_ONLY")["name"]
    finished(stack, name)

    full = get(stack, name, view="FULL")
    basic = get(stack, name, view="BASIC")
    default = get(stack, name)

    assert default == full
    assert {"argument", "result", "labels", "status", "createTime", "callLogLevel"} <= set(full)
    assert set(basic) == {"name", "startTime", "endTime", "duration", "state", "workflowRevisionId"}
    assert {key: full[key] for key in basic} == basic


def test_enums_are_numbers_when_the_client_asks_as_the_official_clients_do(stack):
    name = create(stack, ignored_event(stack), callLogLevel="LOG_ALL_CALLS")["name"]
    finished(stack, name)

    execution = get(stack, name, **{"$alt": "json;enum-encoding=int"})

    assert execution["state"] == 2, "SUCCEEDED"
    assert execution["callLogLevel"] == 1, "LOG_ALL_CALLS"


def test_list_filters_by_state_start_time_and_label_orders_by_start_time_and_pages(stack):
    batch = f"b{uuid.uuid4().hex[:8]}"
    since = (datetime.now(timezone.utc) - timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    succeeded = [create(stack, ignored_event(stack), labels={"batch": batch})["name"] for _ in range(3)]
    failed = create(stack, {"not": "an event"}, labels={"batch": batch})["name"]
    for name in [*succeeded, failed]:
        finished(stack, name)

    only_failed = list_executions(stack, filter=f'labels.batch="{batch}" AND state="FAILED"')
    recent = list_executions(stack, filter=f'startTime>"{since}" AND labels.batch="{batch}"',
                             orderBy="startTime desc", view="FULL")
    first = list_executions(stack, filter=f'labels.batch="{batch}"', orderBy="startTime desc", pageSize=3)
    second = list_executions(stack, filter=f'labels.batch="{batch}"', orderBy="startTime desc", pageSize=3,
                             pageToken=first["nextPageToken"])
    later = list_executions(stack, filter=f'startTime>"{datetime.now(timezone.utc).isoformat()}" '
                                          f'AND labels.batch="{batch}"')

    assert [e["name"] for e in only_failed["executions"]] == [failed]
    assert set(only_failed["executions"][0]) == {"name", "startTime", "endTime", "duration", "state",
                                                 "workflowRevisionId"}, "BASIC by default"
    assert [e["name"] for e in recent["executions"]] == [failed, *reversed(succeeded)]
    assert all(e["labels"] == {"batch": batch} for e in recent["executions"])
    assert [e["name"] for e in first["executions"] + second["executions"]] == [failed, *reversed(succeeded)]
    assert "nextPageToken" not in second
    assert later == {}, "an empty list is left out, as in proto3 JSON"


# --- cancel -------------------------------------------------------------------------------------


def test_cancel_stops_an_active_execution_before_its_next_step(stack):
    stack.fakes_api.next_jobs_end(None)
    event = upload(stack, "data/20240303/lkp_fechas.gz.encrypted")
    name = create(stack, event)["name"]
    deadline = time.monotonic() + WAIT_SECONDS
    while not stack.fakes_api.launches("lkp-fechas-2024-03-03") and time.monotonic() < deadline:
        time.sleep(0.2)
    assert get(stack, name)["state"] == "ACTIVE", "polling a job that never ends"

    response = api(stack, "POST", f"{name}:cancel", json={})
    next_one = create(stack, ignored_event(stack))["name"]
    after_next = finished(stack, next_one)

    assert response.status_code == 200, response.text
    assert response.json()["state"] == "CANCELLED"
    execution = get(stack, name)
    assert execution["state"] == "CANCELLED"
    assert "endTime" in execution and "result" not in execution
    assert after_next["state"] == "SUCCEEDED"
    started_waiting = datetime.fromisoformat(execution["endTime"].replace("Z", "+00:00"))
    next_started = datetime.fromisoformat(after_next["startTime"].replace("Z", "+00:00"))
    assert next_started - started_waiting < timedelta(seconds=5), \
        "the cancelled run stopped at once instead of polling to its 30 s deadline"
    source = f"gs://{TRIGGER_BUCKET}/{event['data']['name']}"
    assert not [m for m in stack.fakes_api.messages() if m["attributes"].get("object") == source
                and m["attributes"]["event_type"].startswith("sigma.chain.")], \
        "a cancelled execution runs none of its except blocks"


def test_cancel_of_a_finished_execution_is_a_failed_precondition(stack):
    name = create(stack, ignored_event(stack))["name"]
    finished(stack, name)

    error = assert_refused(api(stack, "POST", f"{name}:cancel", json={}), 400, "FAILED_PRECONDITION")

    assert "SUCCEEDED" in error["message"]
    assert get(stack, name)["state"] == "SUCCEEDED"


# --- refusals -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"argument": "{}", "priority": 1}, "unknown field"),
        ({"argument": "{not json"}, "argument not JSON"),
        ({"argument": {"event": 1}}, "argument not a string"),
        ({"argument": "{}", "callLogLevel": "LOG_SOMETIMES"}, "unknown call log level"),
        ({"argument": "{}", "labels": {"Batch": "x"}}, "label key not lowercase"),
        ({"argument": json.dumps({"pad": "x" * 33000})}, "argument over 32 KB"),
    ],
)
def test_create_refuses_what_google_refuses_and_starts_nothing(stack, body, reason):
    before = list_executions(stack, pageSize=1000).get("executions")

    error = assert_refused(api(stack, "POST", f"{WORKFLOW_NAME}/executions", json=body), 400, "INVALID_ARGUMENT")

    assert error["details"][0]["@type"] == "type.googleapis.com/google.rpc.BadRequest", reason
    assert list_executions(stack, pageSize=1000).get("executions") == before


def test_unknown_execution_and_unknown_workflow_are_not_found(stack):
    unknown = f"{WORKFLOW_NAME}/executions/{uuid.uuid4()}"
    other = WORKFLOW_NAME.replace("/sigma", "/other")

    assert_refused(api(stack, "GET", unknown), 404, "NOT_FOUND")
    assert_refused(api(stack, "POST", f"{unknown}:cancel", json={}), 404, "NOT_FOUND")
    assert_refused(api(stack, "GET", f"{other}/executions"), 404, "NOT_FOUND")
    assert_refused(api(stack, "POST", f"{other}/executions", json={"argument": "{}"}), 404, "NOT_FOUND")


@pytest.mark.parametrize(
    "params",
    [
        {"filter": 'colour="blue"'},
        {"filter": 'state="DONE"'},
        {"filter": 'startTime>"yesterday"'},
        {"filter": 'state="FAILED" OR state="SUCCEEDED"'},
        {"orderBy": "name desc"},
        {"pageToken": "not-a-token"},
        {"pageSize": "-1"},
    ],
)
def test_list_refuses_filters_orders_and_tokens_it_cannot_honour(stack, params):
    assert_refused(api(stack, "GET", f"{WORKFLOW_NAME}/executions", params=params), 400, "INVALID_ARGUMENT")


def test_page_token_is_refused_with_another_filter(stack):
    for _ in range(2):
        finished(stack, create(stack, ignored_event(stack))["name"])
    first = list_executions(stack, pageSize=1)

    response = api(stack, "GET", f"{WORKFLOW_NAME}/executions",
                   params={"pageSize": 1, "pageToken": first["nextPageToken"], "filter": 'state="FAILED"'})

    assert_refused(response, 400, "INVALID_ARGUMENT")


def test_requests_shaped_as_the_official_rust_crate_sends_them(stack):
    """google-cloud-workflows-executions-v1 (transport.rs) sends every query parameter, empty
    ones included, the view as a number, enums asked as numbers, and the whole
    CancelExecutionRequest (with `name`) as the cancel body."""
    crate = {"$alt": "json;enum-encoding=int"}
    created = api(stack, "POST", f"{WORKFLOW_NAME}/executions", params=crate,
                  json={"argument": json.dumps(ignored_event(stack)), "labels": {"crate": "yes"}}).json()
    finished(stack, created["name"])

    listed = api(stack, "GET", f"{WORKFLOW_NAME}/executions",
                 params={**crate, "pageSize": 0, "pageToken": "", "view": 2, "filter": 'labels.crate="yes"',
                         "orderBy": ""}).json()
    got = api(stack, "GET", created["name"], params={**crate, "view": 1}).json()
    cancelled = api(stack, "POST", f"{created['name']}:cancel", params=crate, json={"name": created["name"]})

    assert created["state"] in (1, 6), "ACTIVE or QUEUED"
    (execution,) = [e for e in listed["executions"] if e["name"] == created["name"]]
    assert execution["state"] == 2 and execution["labels"] == {"crate": "yes"}, "FULL view, SUCCEEDED"
    assert set(got) == {"name", "startTime", "endTime", "duration", "state", "workflowRevisionId"}, "BASIC view"
    assert_refused(cancelled, 400, "FAILED_PRECONDITION")
