"""Operating the chain end to end, through the real workflow and services: a failed Dataflow
job, and a failed Dataform invocation, each finished by a replay that redoes only what did not
succeed; a batch larger than the Dataflow quota waited through instead of dropped."""

from __future__ import annotations

import multiprocessing
import threading
import time
from typing import Any


from sigma_stack.emulator import WorkflowFailed
from sigma_stack.stack import DATAFORM_REPOSITORY, OUTPUT_BUCKET, Stack
from test_e2e import run_failing, sample_gzip, upload

TERMINAL = {"JOB_STATE_DONE", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED", "JOB_STATE_UPDATED", "JOB_STATE_DRAINED"}


def replay_of(event: dict, attempt: int, **extra) -> dict:
    data = event["data"]
    return {
        "replay": {"bucket": data["bucket"], "name": data["name"], "generation": str(data["generation"])},
        "attempt": attempt,
        **extra,
    }


def test_a_failed_job_is_finished_by_a_replay_with_one_new_job_and_no_second_decrypt(stack: Stack):
    stack.fakes_api.next_jobs_end("JOB_STATE_FAILED")
    event = upload(stack, "data/20240601/lkp_fechas.gz.encrypted")
    error = run_failing(stack.workflow(), event)
    assert error["reason"] == "dataflow_job_failed"

    stack.fakes_api.reset_jobs()
    result = stack.workflow().run(replay_of(event, 2, reason="schema fixed"))

    assert result["status"] == "succeeded"
    assert (result["attempt"], result["rerun"], result["reason"]) == (2, "failed", "schema fixed")
    assert result["decrypted"]["skipped"] is True, "the verified output is not decrypted again"
    assert result["job"]["name"].endswith("-a2")
    assert result["dataform"]["state"] == "SUCCEEDED"
    assert len(stack.fakes_api.launches("lkp-fechas-2024-06-01")) == 2

    again = stack.workflow().run(replay_of(event, 3))
    assert again["job"]["id"] == result["job"]["id"], "a loaded file is never loaded twice"
    assert len(stack.fakes_api.launches("lkp-fechas-2024-06-01")) == 2


def test_a_failed_invocation_is_rerun_by_a_replay_for_only_the_actions_that_did_not_succeed(stack: Stack):
    failing = "acme-dwh-prod.warehouse.cal_resumen"
    event = upload(stack, "data/20240602/lkp_fechas.gz.encrypted")
    created_before = len(stack.fakes_api.invocations())
    stack.fakes_api.invocations_finish_after_reads(None)
    outcome: dict[str, Any] = {}

    def first_attempt() -> None:
        try:
            outcome["error"] = run_failing(stack.workflow(POLL_DEADLINE_SECONDS="60"), event)
        except BaseException as broken:  # noqa: BLE001 - reported by the assertions below
            outcome["broken"] = broken

    try:
        runner = threading.Thread(target=first_attempt)
        runner.start()
        deadline = time.monotonic() + 60
        while len(stack.fakes_api.invocations()) == created_before and time.monotonic() < deadline:
            time.sleep(0.2)
        (invocation,) = stack.fakes_api.invocation_names(DATAFORM_REPOSITORY)[created_before:]
        stack.fakes_api.complete_invocation(invocation, {failing: "division by zero"})
        runner.join(timeout=60)
    finally:
        stack.fakes_api.invocations_finish_after_reads(1)
    assert outcome.get("error", {}).get("reason") == "dataform_invocation_failed", outcome

    result = stack.workflow().run(replay_of(event, 2))

    assert result["status"] == "succeeded" and result["dataform"]["state"] == "SUCCEEDED"
    assert result["job"]["adopted"] is True, "the loaded file is not loaded again"
    first, rerun = stack.fakes_api.invocations()[created_before:]
    targets = lambda created: {  # noqa: E731
        f"{t['database']}.{t['schema']}.{t['name']}" for t in created["invocationConfig"]["includedTargets"]}
    assert failing in targets(rerun)
    assert targets(rerun) < targets(first), "only what did not succeed, and what depends on it"
    assert result["dataform"]["count"] == len(targets(rerun))


#: What the forked chains of the batch test read: set before forking, inherited by each child.
_BATCH: dict[str, Any] = {}


def _run_chain(index: int, outcomes: multiprocessing.Queue) -> None:
    """One chain of the batch, in a process of its own: the emulator runs one workflow at a
    time per process, and the point of the test is 40 chains at once."""
    stack, env, event = _BATCH["stack"], _BATCH["env"], _BATCH["events"][index]
    try:
        outcomes.put((index, "succeeded", stack.workflow(**env).run(event)))
    except WorkflowFailed as failed:
        outcomes.put((index, "failed", failed.error))
    except Exception as broken:  # noqa: BLE001 - reported to the parent, which fails the test
        outcomes.put((index, "broken", repr(broken)))


def test_a_batch_over_the_dataflow_quota_waits_and_every_upload_loads_once(stack: Stack):
    uploads, quota = 40, 8
    events = [upload(stack, f"data/2024{4 + day // 28:02d}{day % 28 + 1:02d}/lkp_fechas.gz.encrypted", sample_gzip(5))
              for day in range(uploads)]
    launches_before = len(stack.fakes_api.launches())
    # Jobs other tests left active (cancelling, say) hold quota too, as they would in Dataflow.
    held = sum(1 for job in stack.fakes_api.jobs() if job["state"] not in TERMINAL)
    stack.fakes_api.limit_active_jobs(quota + held)
    _BATCH.update(stack=stack, events=events,
                  env={"POLL_DEADLINE_SECONDS": "600", "BACKPRESSURE_WINDOW_SECONDS": "600"})
    context = multiprocessing.get_context("fork")
    outcomes = context.Queue()
    started = time.monotonic()
    try:
        chains = [context.Process(target=_run_chain, args=(i, outcomes)) for i in range(uploads)]
        for chain in chains:
            chain.start()
        ended = [outcomes.get(timeout=900) for _ in chains]
        for chain in chains:
            chain.join(timeout=60)
        wall = time.monotonic() - started
        stats = stack.fakes_api.dataflow_stats()
    finally:
        stack.fakes_api.limit_active_jobs(None)
        _BATCH.clear()
    results = [outcome for _, how, outcome in ended if how == "succeeded"]
    failures = [(how, outcome) for _, how, outcome in ended if how != "succeeded"]
    print(f"\n{uploads} uploads at once under a quota of {quota} (+{held} held by earlier tests): "
          f"{wall:.0f} s, peak {stats['peak_active']} active jobs, {stats['quota_refusals']} launches "
          f"refused and waited on, {len(failures)} failures")

    assert not failures, failures[:3]
    assert len(results) == uploads and all(r["status"] == "succeeded" for r in results)
    assert stats["peak_active"] <= quota + held
    assert stats["quota_refusals"] > 0, "the quota was reached, so the wait was exercised"
    new_launches = stack.fakes_api.launches()[launches_before:]
    names = [launch["launchParameter"]["jobName"] for launch in new_launches]
    assert len(names) == uploads == len(set(names)), "one job per upload, no duplicates"
    assert {r["job"]["id"] for r in results} == {j["id"] for j in stack.fakes_api.jobs() if j["name"] in names}
