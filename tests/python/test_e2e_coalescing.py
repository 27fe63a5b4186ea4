"""Batch coalescing end to end (issue 10), through the real workflows/sigma.yaml and the real
service binaries: a nightly extract's five loads started together share their downstream
actions instead of running them up to five times, and a load that lands while its dependents
run gets them run again after. The fake Dataform reports any two invocations that ran the same
action at the same time.

The emulator runs one execution per process, so each chain runs in a process of its own."""

from __future__ import annotations

import gzip
import multiprocessing
import time
from typing import Any

import pytest

from sigma_stack.emulator import Workflow, WorkflowFailed
from sigma_stack.stack import DATAFORM_REPOSITORY, Stack


def entry(table: str) -> dict[str, Any]:
    """A registry entry loading `raw.<table>`, the Dataform declaration of the same name (named
    with its schema: the sample project also has reporting, staging and warehouse `clientes`)."""
    return {
        "pattern": "data/{yyyymmdd}/{entity}.gz",
        "dataform_table": f"raw.{table}",
        "destination": {"table": f"{{project}}.raw.{table}", "write_disposition": "WRITE_TRUNCATE"},
        "schema": [{"name": "id", "type": "STRING", "mode": "REQUIRED"}],
        "validations": [{"check": "row_count", "min": 1}],
    }


#: The extract of the issue: each file's registry entity and the raw table it loads.
EXTRACT = {"agentes": "agentes", "clientes": "clientes", "lkp_fechas": "lkp_fechas",
           "poliza_detalle": "polizas", "siniestros": "siniestros"}
#: Long enough for five chains started together to reach /invoke inside it.
SETTLE_SECONDS = 8


@pytest.fixture(scope="module")
def stack():
    extra = {entity: entry(table) for entity, table in EXTRACT.items() if entity not in ("lkp_fechas", "poliza_detalle")}
    with Stack(extra_pipelines=extra, dataform_settle_seconds=SETTLE_SECONDS) as running:
        yield running


def run_chain(workflow: Workflow, event: dict) -> dict:
    """One execution, in a process of its own: its result, or the error it failed with."""
    try:
        return {"result": workflow.run(event)}
    except WorkflowFailed as failed:
        return {"error": failed.error}


def upload(stack: Stack, date: str, entity: str) -> dict:
    body = gzip.compress(b"id\n1\n2\n")
    return stack.upload(f"data/{date}/{entity}.gz.encrypted", stack.encrypt(body))


def included(created: dict) -> set[str]:
    return {f"{t['database']}.{t['schema']}.{t['name']}" for t in created["invocationConfig"]["includedTargets"]}


def test_five_loads_started_together_share_their_actions_and_never_run_one_twice_at_once(stack):
    events = [upload(stack, "20240301", entity) for entity in EXTRACT]
    before = len(stack.fakes_api.invocations())
    workflow = stack.workflow(POLL_DEADLINE_SECONDS="120")

    with multiprocessing.get_context("fork").Pool(len(events)) as pool:
        outcomes = pool.starmap(run_chain, [(workflow, event) for event in events])

    assert all("result" in o and o["result"]["status"] == "succeeded" for o in outcomes), outcomes
    created = stack.fakes_api.invocations()[before:]
    executions = sum(len(included(c)) for c in created)
    print(f"\nfive loads: {len(created)} invocation(s), {executions} action executions "
          f"(one per load would run {sum(o['result']['dataform']['count'] for o in outcomes)})")
    assert 1 <= len(created) <= 2, created
    assert executions <= 45
    assert stack.fakes_api.overlaps()["overlaps"] == []
    tickets = {o["result"]["dataform"]["ticket"] for o in outcomes}
    assert len(tickets) == 5, "one ticket per load"
    invoked = [m for m in stack.fakes_api.messages() if m["attributes"]["event_type"] == "sigma.dataform.invoked"]
    named = {t["ticket"] for m in invoked for t in m["data"]["detail"]["tickets"]}
    assert tickets <= named, "the invoked events name every load they serve"


def test_a_load_landing_while_its_dependents_run_gets_them_run_again_after(stack):
    stack.fakes_api.invocations_finish_after_reads(None)
    try:
        first = upload(stack, "20240302", "lkp_fechas")
        second = upload(stack, "20240303", "lkp_fechas")
        before = len(stack.fakes_api.invocations())
        workflow = stack.workflow(POLL_DEADLINE_SECONDS="120")
        with multiprocessing.get_context("fork").Pool(2) as pool:
            running = pool.apply_async(run_chain, (workflow, first))
            (invocation,) = wait_for_invocations(stack, before, 1)
            queued_before = queued_events(stack)
            later = pool.apply_async(run_chain, (workflow, second))
            wait_until(lambda: queued_events(stack) > queued_before, "the second load queued")
            assert len(stack.fakes_api.invocations()) == before + 1, "it waits while its dependents run"
            stack.fakes_api.complete_invocation(invocation, {})
            stack.fakes_api.invocations_finish_after_reads(1)
            outcomes = [running.get(timeout=180), later.get(timeout=180)]
    finally:
        stack.fakes_api.invocations_finish_after_reads(1)

    assert all(o.get("result", {}).get("status") == "succeeded" for o in outcomes), outcomes
    first_run, rerun = stack.fakes_api.invocations()[before:]
    assert included(rerun) == included(first_run), "every dependent runs again, after the new load"
    assert stack.fakes_api.overlaps()["overlaps"] == []


def queued_events(stack: Stack) -> int:
    return sum(1 for m in stack.fakes_api.messages() if m["attributes"]["event_type"] == "sigma.dataform.queued")


def wait_for_invocations(stack: Stack, before: int, count: int) -> list[str]:
    wait_until(lambda: len(stack.fakes_api.invocations()) >= before + count, f"{count} invocation(s)")
    return stack.fakes_api.invocation_names(DATAFORM_REPOSITORY)[before:before + count]


def wait_until(condition, what: str, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)
