"""The chain with a Dataform closure of 20,000 actions, on a stack of its own whose fake
Dataform serves a generated `dataform compile --json` graph.

Cloud Workflows fails an execution whose variables pass 512 KB, drops any string over 256 KB
and any HTTP response over 2 MB (the wrapper enforces all three). The workflow must carry
counts, the invocation's name and a bounded sample of the actions, never the list itself."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from sigma_stack.stack import TRIGGER_BUCKET, Stack

ACTIONS = 20_000
#: What this test demands of the workflow's variables (Cloud Workflows allows 512 KB).
VARIABLES_BUDGET = 64 * 1024
DATABASE = "acme-dwh-prod"
ENTITY = "big_source"
BIG_SOURCE = {
    "pattern": "data/{yyyymmdd}/{entity}.gz",
    "destination": {"table": "{project}.raw.big_source", "write_disposition": "WRITE_TRUNCATE"},
    "schema": [{"name": "id", "type": "STRING", "mode": "REQUIRED"}],
    "validations": [{"check": "row_count", "min": 1}],
}


def target(schema: str, name: str) -> dict:
    return {"database": DATABASE, "schema": schema, "name": name}


def table(name: str, depends_on: dict) -> dict:
    return {
        "type": "table", "enumType": "TABLE", "target": target("warehouse", name),
        "canonicalTarget": target("warehouse", name), "query": f"SELECT * FROM `{depends_on['name']}`",
        "disabled": False, "fileName": f"definitions/{name}.sqlx", "tags": ["generated"],
        "dependencyTargets": [depends_on], "hermeticity": "NON_HERMETIC",
    }


def generated_graph(path: Path, actions: int) -> Path:
    """A declared raw table with `actions` tables downstream: half read it, half read those."""
    source = target("raw", ENTITY)
    first = [table(f"stage_{i:05d}", source) for i in range(actions // 2)]
    second = [table(f"mart_{i:05d}", first[i]["target"]) for i in range(actions - len(first))]
    tables = first + second
    compiled = {
        "tables": tables, "operations": [], "assertions": [], "tests": [],
        "declarations": [{"target": source, "canonicalTarget": source}],
        "projectConfig": {"warehouse": "bigquery", "defaultSchema": "warehouse", "assertionSchema": "dataform_assertions",
                          "defaultDatabase": DATABASE, "defaultLocation": "US"},
        "graphErrors": {}, "dataformCoreVersion": "3.0.62", "jitData": {},
        "targets": [source] + [t["target"] for t in tables],
    }
    path.write_text(json.dumps(compiled))
    return path


@pytest.fixture(scope="module")
def large_stack(tmp_path_factory):
    graph = generated_graph(tmp_path_factory.mktemp("dataform") / "large.compiled.json", ACTIONS)
    with Stack(extra_pipelines={ENTITY: BIG_SOURCE}, dataform_graph=graph) as running:
        yield running


def test_a_closure_of_20000_actions_runs_with_the_workflow_variables_under_64_kb(large_stack):
    stack = large_stack
    plaintext = gzip.compress(b"id\n" + b"".join(f"{i}\n".encode() for i in range(10)))
    event = stack.upload(f"data/20240115/{ENTITY}.gz.encrypted", stack.encrypt(plaintext))
    workflow = stack.workflow()

    result = workflow.run(event)

    print(f"\nvariables of the execution at their peak: {workflow.peak_variable_bytes} bytes "
          f"for a closure of {ACTIONS} actions")
    assert result["status"] == "succeeded"
    dataform = result["dataform"]
    assert dataform["count"] == ACTIONS
    assert 0 < len(dataform["actions_sample"]) <= 20
    assert dataform["invocation"].startswith("projects/")
    (created,) = stack.fakes_api.invocations()
    assert len(created["invocationConfig"]["includedTargets"]) == ACTIONS
    assert workflow.peak_variable_bytes < VARIABLES_BUDGET
    source = f"gs://{TRIGGER_BUCKET}/{event['data']['name']}"
    (outcome,) = [m for m in stack.fakes_api.messages()
                  if m["attributes"].get("event_type") == "sigma.chain.succeeded" and m["attributes"]["object"] == source]
    assert outcome["data"]["detail"]["dataform"]["count"] == ACTIONS
