"""`sigma runs` and `sigma replay` (the release binary) against the local Workflow Executions
API running the real workflow: a failed upload is listed with its step, error and replay
command, replayed as attempt 2 which succeeds, and a dry run starts nothing.

The stack is this module's own, so `sigma replay --failed` sees only the failures made here."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from sigma_stack.emulator import REPO
from sigma_stack.stack import PIPELINES, TRIGGER_BUCKET, WORKFLOW_NAME, Stack, bin_dir
from test_executions_api import create, finished, list_executions, upload

FAILED_NAME = "data/20240305/lkp_fechas.gz.encrypted"


# --- harness ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cli_stack():
    with Stack() as running:
        yield running


@pytest.fixture(scope="module")
def failed_run(cli_stack: Stack) -> dict:
    """An upload whose Dataflow job failed: its execution (attempt 1) and its event."""
    cli_stack.fakes_api.next_jobs_end("JOB_STATE_FAILED")
    try:
        event = upload(cli_stack, FAILED_NAME)
        execution = finished(cli_stack, create(cli_stack, event)["name"])
    finally:
        cli_stack.fakes_api.reset_jobs()
    assert execution["state"] == "FAILED", execution
    return {"execution": execution, "event": event}


def sigma(stack: Stack, *args: str) -> subprocess.CompletedProcess:
    """Runs the CLI as an operator would after `stack.py up`: pointed at the stack by env only."""
    env = {
        **os.environ,
        "WORKFLOW_EXECUTIONS_ENDPOINT": stack.executions.endpoint,
        "SIGMA_WORKFLOW": WORKFLOW_NAME,
        "STORAGE_EMULATOR_HOST": stack.gcs.endpoint,
        "TRIGGER_BUCKET": TRIGGER_BUCKET,
    }
    result = subprocess.run([str(bin_dir() / "sigma"), *args], env=env, capture_output=True, text=True,
                            timeout=60, cwd=REPO)
    assert result.returncode == 0, f"sigma {' '.join(args)}: {result.stderr}"
    return result


def json_lines(result: subprocess.CompletedProcess) -> list[dict]:
    return [json.loads(line) for line in result.stdout.splitlines()]


def execution_names(stack: Stack) -> set[str]:
    return {e["name"] for e in list_executions(stack, pageSize=1000).get("executions", [])}


def object_of(event: dict) -> dict:
    data = event["data"]
    return {"bucket": data["bucket"], "name": data["name"], "generation": str(data["generation"])}


# --- sigma runs ---------------------------------------------------------------------------------


def test_runs_lists_a_failed_run_with_its_step_error_and_the_command_that_replays_it(cli_stack, failed_run):
    execution_id = failed_run["execution"]["name"].rsplit("/", 1)[1]

    as_json = json_lines(sigma(cli_stack, "runs", "--failed", "--json"))
    as_text = sigma(cli_stack, "runs", "--failed").stdout.splitlines()

    (line,) = [line for line in as_json if line["id"] == execution_id]
    assert line["state"] == "FAILED"
    assert line["object"] == object_of(failed_run["event"])
    assert line["attempt"] == 1
    assert line["failure"]["step"] == "dataflow_job"
    assert line["failure"]["code"] == "dataflow_job_failed"
    assert line["failure"]["message"].endswith("ended FAILED")
    assert line["duration_seconds"] > 0
    assert line["start_time"] == failed_run["execution"]["startTime"][:23] + "Z"
    assert line["replay"] == f"sigma replay {execution_id}", "the environment names workflow and endpoint"
    assert line["console"] == ("https://console.cloud.google.com/workflows/workflow/local/sigma/execution/"
                               f"{execution_id}?project=sigma-local")
    (text,) = [text for text in as_text if FAILED_NAME in text]
    assert "attempt 1  FAILED" in text
    assert "failed at dataflow_job: dataflow_job_failed: Dataflow job" in text
    assert text.endswith(f"replay: sigma replay {execution_id}")


# --- sigma replay -------------------------------------------------------------------------------


def test_replay_of_the_failed_runs_starts_attempt_2_which_succeeds_and_runs_shows_it(cli_stack, failed_run):
    before = execution_names(cli_stack)

    replayed = json_lines(sigma(cli_stack, "replay", "--failed", "--since", "1h", "--reason", "job fixed", "--json"))

    (started,) = replayed
    assert started["status"] == "started"
    assert started["object"] == object_of(failed_run["event"])
    assert (started["attempt"], started["rerun"], started["reason"]) == (2, "failed", "job fixed")
    assert started["execution"] not in before
    assert started["console"].endswith(f"/execution/{started['execution'].rsplit('/', 1)[1]}?project=sigma-local")
    execution = finished(cli_stack, started["execution"])
    assert execution["state"] == "SUCCEEDED", execution.get("error")
    assert json.loads(execution["argument"]) == {
        "replay": object_of(failed_run["event"]), "attempt": 2, "rerun": "failed", "reason": "job fixed"}
    result = json.loads(execution["result"])
    assert result["attempt"] == 2 and result["job"]["name"].endswith("-a2")

    runs = json_lines(sigma(cli_stack, "runs", "--object", FAILED_NAME, "--json"))
    text = sigma(cli_stack, "runs", "--object", FAILED_NAME).stdout.splitlines()

    assert [(run["attempt"], run["state"]) for run in runs] == [(2, "SUCCEEDED"), (1, "FAILED")], "newest first"
    assert runs[0]["result"]["job"]["name"] == result["job"]["name"]
    assert runs[0]["result"]["dataform"]["state"] == "SUCCEEDED"
    assert runs[0]["reason"] == "job fixed" and "replay" not in runs[0]
    assert "attempt 2  SUCCEEDED" in text[0] and f"job {result['job']['name']}" in text[0]
    assert "actions (" in text[0]

    again = json_lines(sigma(cli_stack, "replay", "--failed", "--since", "1h", "--json"))

    assert [line["status"] for line in again] == ["skipped"], "a failure fixed since is not run again"
    assert "attempt 2 succeeded" in again[0]["why"]
    assert execution_names(cli_stack) == before | {started["execution"]}


def test_dry_run_prints_each_replay_and_starts_nothing(cli_stack):
    day_one = upload(cli_stack, "data/20240310/lkp_fechas.gz.encrypted")
    day_two = upload(cli_stack, "data/20240311/lkp_fechas.gz.encrypted")
    upload(cli_stack, "data/20240312/lkp_fechas.gz.encrypted")
    upload(cli_stack, "data/20240311/poliza_detalle.gz.encrypted")
    before = execution_names(cli_stack)

    by_object = json_lines(sigma(cli_stack, "replay", f"gs://{TRIGGER_BUCKET}/{day_one['data']['name']}",
                                 "--dry-run", "--json"))
    backfill = json_lines(sigma(cli_stack, "replay", "--entity", "lkp_fechas", "--from", "2024-03-10",
                                "--to", "2024-03-11", "--pipelines", str(PIPELINES), "--rerun", "all",
                                "--dry-run", "--json"))
    text = sigma(cli_stack, "replay", f"gs://{TRIGGER_BUCKET}/{day_two['data']['name']}#{day_two['data']['generation']}",
                 "--dry-run").stdout

    (one,) = by_object
    assert one["status"] == "dry_run"
    assert one["object"] == object_of(day_one), "without #GENERATION: the object's current generation"
    assert one["argument"] == {"replay": object_of(day_one), "attempt": 2, "rerun": "failed", "reason": ""}
    assert sorted(line["object"]["name"] for line in backfill) == [day_one["data"]["name"], day_two["data"]["name"]]
    assert all(line["status"] == "dry_run" and line["rerun"] == "all" for line in backfill)
    assert text.startswith(f"would start  gs://{TRIGGER_BUCKET}/{day_two['data']['name']}#")
    assert execution_names(cli_stack) == before, "a dry run starts nothing"
