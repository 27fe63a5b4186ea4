"""How workflows/sigma.yaml behaves for its operators, run for real (the whole `main`, under the
strict emulator wrapper) against canned service answers: the attempt a replay argument
carries into every call, the wait through 429s (backpressure) that spends none of the transient
retries, and the cancel of a job or invocation that outlived its poll deadline.

The clock is virtual (`Workflow(virtual_time=True)`): sleeps return at once and `sys.now` moves
on by what they would have slept, so an hour of backoff takes milliseconds; one test uses the
real clock."""

from __future__ import annotations

import time
from typing import Any

import pytest

from sigma_stack.answering import Answer, AnsweringServer
from sigma_stack.emulator import Workflow, WorkflowFailed
from sigma_stack.stack import finalize_event

BUCKET = "company_trigger_bucket"
NAME = "data/20240115/lkp_fechas.gz.encrypted"
GENERATION = "1705312800123456"
JOB_ID = "2024-01-15_04_05_06-1234567890"
REGION = "europe-west1"
INVOCATION_ID = "inv-20240115-1"
INVOCATION = f"projects/sigma-local/locations/{REGION}/repositories/warehouse/workflowInvocations/{INVOCATION_ID}"
JOB_PATH = f"/jobs/{JOB_ID}"
TICKET = "5f1c0e3a9d2b4c7e8f6a1b3c5d7e9f0a2b4c6d8e0f1a3b5c7d9e1f2a4b6c8d0e"
TICKET_PATH = f"/tickets/{TICKET}"

DECRYPTED = {"bucket": "company_output_bucket", "name": "data/20240115/lkp_fechas.gz", "generation": "22",
             "size": 1234, "skipped": False}
LAUNCHED = {"job_id": JOB_ID, "job_name": "sigma-lkp-fechas-20240115", "region": REGION, "entity": "lkp_fechas",
            "fecha_lote": "20240115", "adopted": False, "dataform_table": "sigma-local.raw.lkp_fechas"}
JOB_RUNNING = {"job_id": JOB_ID, "state": "RUNNING", "terminal": False, "errors": []}
JOB_SUCCEEDED = {"job_id": JOB_ID, "state": "SUCCEEDED", "terminal": True, "errors": []}
INVOKED = {"skipped": False, "invocation": INVOCATION, "count": 3, "actions": ["a", "b", "c"], "ticket": TICKET}
TICKET_RUNNING = {"ticket": TICKET, "invocation": INVOCATION, "invocation_state": "RUNNING", "state": "RUNNING",
                  "terminal": False, "count": 3, "actions": {"RUNNING": 3}, "failed": []}
TICKET_SUCCEEDED = {**TICKET_RUNNING, "invocation_state": "SUCCEEDED", "state": "SUCCEEDED", "terminal": True,
                    "actions": {"SUCCEEDED": 3}}

QUOTA_429 = Answer(429, {"error": {"code": "quota_exhausted", "message": "Dataflow's concurrent-job quota is full",
                                   "retryable": True}})
CLOUD_RUN_429 = Answer(429, "<html><body><h1>429 Too Many Requests</h1></body></html>", "text/html")
PROXY_503 = Answer(503, "<html><body>Service Unavailable</body></html>", "text/html")

SERVICE_CALLS = [("POST", "/decrypt"), ("POST", "/launch"), ("POST", "/invoke")]


@pytest.fixture
def server():
    """The three services on one port (their paths do not overlap), answering a successful chain."""
    with AnsweringServer() as running:
        running.route("POST", "/decrypt", Answer(200, DECRYPTED))
        running.route("POST", "/launch", Answer(200, LAUNCHED))
        running.route("GET", JOB_PATH, Answer(200, JOB_SUCCEEDED))
        running.route("POST", "/invoke", Answer(200, INVOKED))
        running.route("GET", TICKET_PATH, Answer(200, TICKET_SUCCEEDED))
        yield running


def sigma(server: AnsweringServer, virtual_time: bool = True, **env: str) -> Workflow:
    return Workflow(
        env={
            "DECRYPT_URL": server.url, "DATAFLOW_URL": server.url, "DATAFORM_URL": server.url,
            "POLL_INTERVAL_SECONDS": "1", "POLL_DEADLINE_SECONDS": "5", **env,
        },
        virtual_time=virtual_time,
    )


def replay(attempt: Any = 2, **fields: Any) -> dict:
    return {"replay": {"bucket": BUCKET, "name": NAME, "generation": GENERATION}, "attempt": attempt, **fields}


def run(workflow: Workflow, argument: Any) -> Any:
    """The execution's result, or the error it failed with."""
    try:
        return workflow.run(argument)
    except WorkflowFailed as failed:
        return failed.error


def chain_events(workflow: Workflow) -> list[dict]:
    """The chain events the run published (publish_event logs each one, topic or not)."""
    return [e.payload for e in workflow.logs if isinstance(e.payload, dict) and "event_type" in e.payload]


def backpressure_waits(workflow: Workflow) -> list[dict]:
    return [e.payload for e in workflow.logs
            if isinstance(e.payload, dict) and e.payload.get("message") == "waiting on backpressure"]


def bodies(server: AnsweringServer, method: str, path: str) -> list[Any]:
    return [r.body for r in server.seen(method, path)]


# --- the argument: an Eventarc event, or a replay ---------------------------------------------

def test_a_replay_carries_its_attempt_and_rerun_into_every_service_call_and_the_outcome(server):
    workflow = sigma(server)

    result = run(workflow, replay(attempt=3, rerun="all", reason="registry fixed (INC-42)"))

    assert result["status"] == "succeeded"
    assert (result["attempt"], result["rerun"], result["reason"]) == (3, "all", "registry fixed (INC-42)")
    assert result["object"] == {"bucket": BUCKET, "name": NAME, "generation": GENERATION}
    assert bodies(server, "POST", "/decrypt") == [{"bucket": BUCKET, "name": NAME, "generation": GENERATION, "attempt": 3}]
    assert bodies(server, "POST", "/launch") == [{**{k: DECRYPTED[k] for k in ("bucket", "name", "generation")}, "attempt": 3}]
    (invoke,) = bodies(server, "POST", "/invoke")
    assert (invoke["attempt"], invoke["rerun"]) == (3, "all")
    # sigma-dataform keeps the attempts under the upload's own key
    assert invoke["idempotency_key"] == f"{BUCKET}/{NAME}/{GENERATION}"
    (event,) = chain_events(workflow)
    assert event["event_type"] == "sigma.chain.succeeded"
    assert (event["detail"]["attempt"], event["detail"]["rerun"], event["detail"]["reason"]) == (3, "all", "registry fixed (INC-42)")


def test_a_replay_reruns_the_failed_actions_with_no_reason_by_default(server):
    result = run(sigma(server), replay(attempt=2))

    assert (result["attempt"], result["rerun"], result["reason"]) == (2, "failed", "")
    assert bodies(server, "POST", "/invoke")[0]["rerun"] == "failed"


@pytest.mark.parametrize("attempt", [1, 999])
def test_a_replay_accepts_attempts_from_1_to_999(server, attempt):
    assert run(sigma(server), replay(attempt=attempt))["attempt"] == attempt


def test_the_eventarc_event_is_attempt_1_rerunning_failed_actions(server):
    workflow = sigma(server)

    result = run(workflow, finalize_event(BUCKET, NAME, GENERATION, 10))

    assert (result["attempt"], result["rerun"], result["reason"]) == (1, "failed", "")
    for method, path in SERVICE_CALLS:
        assert bodies(server, method, path)[0]["attempt"] == 1, path
    assert bodies(server, "POST", "/invoke")[0]["rerun"] == "failed"


def test_a_replay_passes_the_same_name_filters_but_no_size_filter(server):
    outside = replay()
    outside["replay"]["name"] = "elsewhere/lkp_fechas.gz.encrypted"

    assert run(sigma(server), outside)["status"] == "ignored"
    assert server.requests == []
    # an event of size 0 is ignored; a replay has no size and runs
    assert run(sigma(server), finalize_event(BUCKET, NAME, GENERATION, 0))["reason"] == "empty object"
    assert run(sigma(server), replay())["status"] == "succeeded"


def with_replay(**changes: Any) -> dict:
    argument = replay()
    argument["replay"].update(changes)
    return argument


def without(field: str, argument: dict) -> dict:
    return {k: v for k, v in argument.items() if k != field}


@pytest.mark.parametrize(
    ("argument", "message"),
    [
        pytest.param(replay(attempt=0), "attempt must be a whole number from 1 to 999, got 0", id="attempt-0"),
        pytest.param(replay(attempt=-1), "attempt must be a whole number from 1 to 999, got -1", id="attempt-negative"),
        pytest.param(replay(attempt=1000), "attempt must be a whole number from 1 to 999, got 1000", id="attempt-1000"),
        pytest.param(replay(attempt="2"), 'attempt must be a whole number from 1 to 999, got "2"', id="attempt-string"),
        pytest.param(replay(attempt=2.5), "attempt must be a whole number from 1 to 999, got 2.5", id="attempt-fraction"),
        pytest.param(replay(attempt=True), "attempt must be a whole number from 1 to 999, got true", id="attempt-bool"),
        pytest.param(without("attempt", replay()), "attempt is required with replay", id="attempt-missing"),
        pytest.param(replay(rerun="some"), 'rerun must be failed or all, got "some"', id="rerun-some"),
        pytest.param(replay(rerun=""), 'rerun must be failed or all, got ""', id="rerun-empty"),
        pytest.param(replay(rerun=1), "rerun must be failed or all, got 1", id="rerun-number"),
        pytest.param(replay(reason=5), "reason must be a string, got integer", id="reason-number"),
        pytest.param(replay(re_run="all"), "the replay argument has an unknown field re_run", id="misspelt-field"),
        pytest.param({"replay": {"bucket": BUCKET, "name": NAME}, "attempt": 2},
                     "replay.generation must be the upload's generation as a string of digits, got null",
                     id="generation-missing"),
        pytest.param(with_replay(generation="17O5"),
                     'replay.generation must be the upload\'s generation as a string of digits, got "17O5"',
                     id="generation-not-digits"),
        pytest.param(with_replay(generation=""), "replay.generation must be", id="generation-empty"),
        pytest.param(with_replay(generation=1705312800123456),
                     "replay.generation must be the upload's generation as a string of digits, got 1705312800123456",
                     id="generation-number"),
        pytest.param(with_replay(bucket=""), "replay.bucket must be a non-empty string", id="bucket-empty"),
        pytest.param(with_replay(name=None), "replay.name must be a non-empty string", id="name-null"),
        pytest.param({"replay": f"gs://{BUCKET}/{NAME}#{GENERATION}", "attempt": 2},
                     "replay must be a map of bucket, name and generation naming one upload, got string", id="replay-uri"),
        pytest.param({"attempt": 2}, "the argument is neither an Eventarc event", id="neither"),
        pytest.param(["replay"], "the argument must be an Eventarc event or a replay argument (a map), got list",
                     id="a-list"),
    ],
)
def test_an_invalid_replay_argument_fails_before_any_call(server, argument, message):
    workflow = sigma(server)

    error = run(workflow, argument)

    assert error["reason"] == "invalid_argument", error
    assert error["message"].startswith(message)
    assert workflow.calls == [] and server.requests == []
    assert chain_events(workflow) == []


# --- backpressure: a 429 is a wait --------------------------------------------------------------

def test_429s_from_launch_are_waited_through_with_capped_backoff_without_spending_retries(server):
    server.route("POST", "/launch", *[QUOTA_429] * 7, Answer(200, LAUNCHED))
    workflow = sigma(server)

    result = run(workflow, replay())

    assert result["status"] == "succeeded"
    assert len(server.seen("POST", "/launch")) == 8
    pauses = [s.seconds for s in workflow.sleeps if s.by == "sys.sleep"]
    assert pauses == [2, 4, 8, 16, 32, 60, 60]
    assert [s for s in workflow.sleeps if s.by == "retry"] == []
    waits = backpressure_waits(workflow)
    assert [w["next_delay_seconds"] for w in waits] == [2, 4, 8, 16, 32, 60, 60]
    waited = [w["waited_seconds"] for w in waits]
    assert waited[0] == 0 and all(sum(pauses[:i]) <= w <= sum(pauses[:i]) + 1 for i, w in enumerate(waited))
    assert {(w["step"], w["method"], w["path"], w["status"], w["code"]) for w in waits} == {
        ("launch", "POST", "/launch", 429, "quota_exhausted")}
    assert {e.severity for e in workflow.logs if e.payload in waits} == {"NOTICE"}


def test_six_503s_in_a_row_still_fail_after_the_5_transient_retries(server):
    server.route("POST", "/launch", *[PROXY_503] * 6, Answer(200, LAUNCHED))
    workflow = sigma(server)

    error = run(workflow, replay())

    assert error["code"] == 503
    assert len(server.seen("POST", "/launch")) == 6
    assert backpressure_waits(workflow) == []
    (event,) = chain_events(workflow)
    assert (event["detail"]["step"], event["detail"]["error"]["code"]) == ("launch", "http_503")


def test_every_try_after_a_429_gets_all_5_transient_retries_again(server):
    server.route("POST", "/launch", QUOTA_429, *[PROXY_503] * 5, QUOTA_429, *[PROXY_503] * 5, Answer(200, LAUNCHED))
    workflow = sigma(server)

    assert run(workflow, replay())["status"] == "succeeded"
    assert len(server.seen("POST", "/launch")) == 13
    assert len(backpressure_waits(workflow)) == 2


def test_cloud_runs_own_html_429_is_backpressure_too(server):
    server.route("POST", "/decrypt", CLOUD_RUN_429, CLOUD_RUN_429, Answer(200, DECRYPTED))
    workflow = sigma(server)

    assert run(workflow, replay())["status"] == "succeeded"
    assert [(w["step"], w["path"], w["code"]) for w in backpressure_waits(workflow)] == [
        ("decrypt", "/decrypt", "http_429")] * 2


@pytest.mark.parametrize(
    ("method", "path", "ok", "step"),
    [
        ("POST", "/decrypt", DECRYPTED, "decrypt"),
        ("POST", "/launch", LAUNCHED, "launch"),
        ("GET", JOB_PATH, JOB_SUCCEEDED, "dataflow_job"),
        ("POST", "/invoke", INVOKED, "dataform_invoke"),
        ("GET", TICKET_PATH, TICKET_SUCCEEDED, "dataform_invocation"),
    ],
)
def test_every_service_call_and_poll_waits_on_backpressure(server, method, path, ok, step):
    server.route(method, path, QUOTA_429, Answer(200, ok))
    workflow = sigma(server)

    assert run(workflow, replay())["status"] == "succeeded"
    assert [(w["step"], w["path"]) for w in backpressure_waits(workflow)] == [(step, path)]


def test_429_past_the_window_fails_with_backpressure_timeout(server):
    server.route("POST", "/invoke", QUOTA_429)
    workflow = sigma(server, BACKPRESSURE_WINDOW_SECONDS="3")

    error = run(workflow, replay())

    assert error["reason"] == "backpressure_timeout"
    waited = error["waited_seconds"]
    assert error["message"] == (f"POST /invoke (step dataform_invoke) still answered 429 (quota_exhausted) after {waited} s "
                                "of backpressure (BACKPRESSURE_WINDOW_SECONDS is 3)")
    assert (error["step"], error["path"]) == ("dataform_invoke", "/invoke")
    assert 3 <= waited <= 4  # the clock: the sleeps, plus the (real) time the tries took
    assert error["last_error"]["code"] == "quota_exhausted"
    # the last wait is cut to end the window: 2 s, then (unless the tries took a second) 1 s
    pauses = [s.seconds for s in workflow.sleeps if s.by == "sys.sleep"]
    assert pauses[0] == 2 and sum(pauses) <= 3
    (event,) = chain_events(workflow)
    assert event["event_type"] == "sigma.chain.failed"
    assert (event["detail"]["step"], event["detail"]["error"]["code"]) == ("dataform_invoke", "backpressure_timeout")


def test_the_default_window_is_an_hour_of_waits_of_at_most_60_s(server):
    server.route("POST", "/launch", QUOTA_429)
    workflow = sigma(server)

    started = time.monotonic()
    error = run(workflow, replay())
    real_seconds = time.monotonic() - started

    assert error["reason"] == "backpressure_timeout"
    assert 3600 <= error["waited_seconds"] <= 3600 + real_seconds
    pauses = [s.seconds for s in workflow.sleeps if s.by == "sys.sleep"]
    assert pauses[:6] == [2, 4, 8, 16, 32, 60] and max(pauses) == 60
    # the window is clock time: the (virtual) sleeps plus the real time the tries took
    assert 3600 - real_seconds - 1 <= sum(pauses) <= 3600


def test_the_window_is_measured_on_the_real_clock_too(server):
    server.route("POST", "/decrypt", CLOUD_RUN_429)
    workflow = sigma(server, virtual_time=False, BACKPRESSURE_WINDOW_SECONDS="2")

    error = run(workflow, replay())

    assert error["reason"] == "backpressure_timeout"
    assert error["waited_seconds"] >= 2
    assert len(server.seen("POST", "/decrypt")) in (2, 3)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("0", "BACKPRESSURE_WINDOW_SECONDS must be at least 1, got 0"),
        ("-5", "BACKPRESSURE_WINDOW_SECONDS must be a whole number of seconds, got -5"),
        ("1h", "BACKPRESSURE_WINDOW_SECONDS must be a whole number of seconds, got 1h"),
        ("", "BACKPRESSURE_WINDOW_SECONDS must be a whole number of seconds, got "),
    ],
)
def test_an_invalid_backpressure_window_fails_before_any_call(server, value, message):
    workflow = sigma(server, BACKPRESSURE_WINDOW_SECONDS=value)

    error = run(workflow, replay())

    assert (error["reason"], error["message"]) == ("invalid_settings", message)
    assert server.requests == []


# --- the poll deadline cancels what it gave up on ---------------------------------------------

def cancel_answer(status: dict, state: str, requested: bool) -> Answer:
    """A :cancel answer: the status body, now in `state`, plus cancel_requested."""
    return Answer(200, {**status, "state": state, "terminal": state != "CANCELLING", "cancel_requested": requested})


PHASES = {
    "dataflow": {"path": JOB_PATH, "running": JOB_RUNNING, "query": {"region": REGION},
                 "target": {"job_id": JOB_ID}, "step": "dataflow_job", "succeeded": JOB_SUCCEEDED,
                 "summary": ("job", {"state": "SUCCEEDED", "states": ["RUNNING", "SUCCEEDED"]}),
                 "message": f"Dataflow job {JOB_ID} still RUNNING after 3 s; cancelled at the deadline, now CANCELLING"},
    "dataform": {"path": TICKET_PATH, "running": TICKET_RUNNING, "query": {"actions_sample": "20"},
                 "target": {"ticket": TICKET, "invocation": INVOCATION}, "step": "dataform_invocation",
                 "succeeded": TICKET_SUCCEEDED,
                 "summary": ("dataform", {"state": "SUCCEEDED", "action_states": {"SUCCEEDED": 3}}),
                 "message": f"Dataform ticket {TICKET} still RUNNING after 3 s; cancelled at the deadline, now CANCELLING"},
}


@pytest.mark.parametrize("phase", PHASES.values(), ids=PHASES.keys())
def test_work_past_the_poll_deadline_is_cancelled_and_the_execution_fails(server, phase):
    server.route("GET", phase["path"], Answer(200, phase["running"]))
    server.route("POST", f"{phase['path']}:cancel", cancel_answer(phase["running"], "CANCELLING", True))
    workflow = sigma(server, POLL_DEADLINE_SECONDS="3")

    error = run(workflow, replay())

    assert (error["reason"], error["message"]) == ("poll_deadline_exceeded", phase["message"])
    assert error["cancelled"] == {**phase["target"], "state": "CANCELLING", "cancel_requested": True}
    (cancel,) = server.seen("POST", f"{phase['path']}:cancel")
    assert cancel.query == phase["query"]
    assert cancel.headers["Authorization"].startswith("Bearer ")
    assert [c.audience for c in workflow.calls if c.url.endswith(":cancel")] == [server.url]
    (event,) = chain_events(workflow)
    assert (event["detail"]["step"], event["detail"]["error"]["code"]) == (phase["step"], "poll_deadline_exceeded")
    assert event["detail"]["error"]["cancelled"] == error["cancelled"]


def test_a_job_cancelled_at_the_deadline_runs_no_dataform(server):
    server.route("GET", JOB_PATH, Answer(200, JOB_RUNNING))
    server.route("POST", f"{JOB_PATH}:cancel", cancel_answer(JOB_RUNNING, "CANCELLING", True))

    assert run(sigma(server, POLL_DEADLINE_SECONDS="2"), replay())["reason"] == "poll_deadline_exceeded"
    assert server.seen("POST", "/invoke") == []


def test_a_job_that_ended_badly_before_the_cancel_is_reported_as_it_is(server):
    server.route("GET", JOB_PATH, Answer(200, JOB_RUNNING))
    server.route("POST", f"{JOB_PATH}:cancel", cancel_answer(JOB_RUNNING, "FAILED", False))

    error = run(sigma(server, POLL_DEADLINE_SECONDS="2"), replay())

    assert error["reason"] == "poll_deadline_exceeded"
    assert error["cancelled"] == {"job_id": JOB_ID, "state": "FAILED", "cancel_requested": False}


@pytest.mark.parametrize(
    ("failure", "code", "tries"),
    [(PROXY_503, "http_503", 6), (Answer(404, {"error": {"code": "not_found", "message": "no such job"}}), "not_found", 1)],
    ids=["503-after-retries", "404-at-once"],
)
def test_a_failed_cancel_still_fails_the_execution_and_says_so(server, failure, code, tries):
    server.route("GET", JOB_PATH, Answer(200, JOB_RUNNING))
    server.route("POST", f"{JOB_PATH}:cancel", failure)
    workflow = sigma(server, POLL_DEADLINE_SECONDS="2")

    error = run(workflow, replay())

    assert error["reason"] == "poll_deadline_exceeded"
    assert error["message"].endswith(f"; the cancel failed ({code})")
    assert error["cancelled"] is None
    assert error["cancel_error"]["code"] == code
    assert len(server.seen("POST", f"{JOB_PATH}:cancel")) == tries
    (event,) = chain_events(workflow)
    assert event["detail"]["error"]["cancelled"] is None
    assert event["detail"]["error"]["cancel_error"]["code"] == code


@pytest.mark.parametrize("phase", PHASES.values(), ids=PHASES.keys())
def test_work_that_succeeded_just_before_the_cancel_lets_the_chain_succeed(server, phase):
    server.route("GET", phase["path"], Answer(200, phase["running"]))
    server.route("POST", f"{phase['path']}:cancel", Answer(200, {**phase["succeeded"], "cancel_requested": False}))
    workflow = sigma(server, POLL_DEADLINE_SECONDS="2")

    result = run(workflow, replay())

    assert result["status"] == "succeeded"
    part, expected = phase["summary"]
    assert {k: result[part][k] for k in expected} == expected
    assert len(server.seen("POST", "/invoke")) == 1
    assert [e["event_type"] for e in chain_events(workflow)] == ["sigma.chain.succeeded"]
