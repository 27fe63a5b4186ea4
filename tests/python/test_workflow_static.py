"""Static checks of workflows/sigma.yaml: what Cloud Workflows would refuse at deploy time, and
the constructs that behave differently under workflows-emulator (see shared notes)."""

from __future__ import annotations

import json
import re
from importlib import resources
from pathlib import Path
from typing import Any, Iterator

import jsonschema
import pytest
import yaml

WORKFLOW = Path(__file__).resolve().parents[2] / "workflows" / "sigma.yaml"
EMULATOR = resources.files("workflows_emulator")

HTTP_CALLS = {"http.get", "http.post", "http.put", "http.patch", "http.delete", "http.request"}
STDLIB_CALLS = {"sys.sleep", "sys.log"}
SPECIAL_TARGETS = {"end", "break", "continue"}
#: Keys of a step that hold nested step lists.
NESTED = ("steps",)


@pytest.fixture(scope="module")
def workflow() -> dict[str, Any]:
    return yaml.safe_load(WORKFLOW.read_text())


def step_lists(steps: list[dict], parents: tuple[list, ...] = ()) -> Iterator[tuple[str, dict, tuple[list, ...]]]:
    """Every step with the step lists that enclose it, innermost last."""
    scope = (*parents, steps)
    for entry in steps:
        ((name, step),) = entry.items()
        yield name, step, scope
        yield from nested(step, scope)


def nested(step: dict, scope: tuple[list, ...]) -> Iterator[tuple[str, dict, tuple[list, ...]]]:
    if "steps" in step:
        yield from step_lists(step["steps"], scope)
    if "try" in step:
        inner = step["try"]
        if "steps" in inner:
            yield from step_lists(inner["steps"], scope)
        else:
            yield "(try)", inner, scope
            yield from nested(inner, scope)
    if "except" in step:
        yield from step_lists(step["except"]["steps"], scope)
    if "for" in step:
        yield from step_lists(step["for"]["steps"], scope)
    for condition in step.get("switch", []):
        yield "(condition)", condition, scope
        yield from nested(condition, scope)


def all_steps(workflow: dict) -> Iterator[tuple[str, str, dict, tuple[list, ...]]]:
    for subworkflow, definition in workflow.items():
        for name, step, scope in step_lists(definition["steps"]):
            yield subworkflow, name, step, scope


def strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)


def test_workflow_matches_schemastore_schema(workflow):
    schema = json.loads(EMULATOR.joinpath("workflow-schema.json").read_text())
    jsonschema.validate(workflow, schema)


def test_every_next_target_exists_in_an_enclosing_step_list(workflow):
    missing = []
    for subworkflow, name, step, scope in all_steps(workflow):
        target = step.get("next")
        if target is None or target in SPECIAL_TARGETS:
            continue
        names = {next(iter(entry)) for steps in scope for entry in steps}
        if target not in names:
            missing.append(f"{subworkflow}/{name} -> {target}")
    assert not missing


def test_every_call_is_http_stdlib_a_subworkflow_or_a_known_connector(workflow):
    unknown = []
    for subworkflow, name, step, _ in all_steps(workflow):
        call = step.get("call")
        if call is None or call in HTTP_CALLS | STDLIB_CALLS or call in workflow:
            continue
        if not (call.startswith("googleapis.") and connector_exists(call)):
            unknown.append(f"{subworkflow}/{name}: {call}")
    assert not unknown


def connector_exists(call: str) -> bool:
    _, service, version, *resources_, method = call.split(".")
    document = EMULATOR.joinpath("discovery_documents", f"{service}_{version}.json")
    if not document.is_file():
        return False
    node = json.loads(document.read_text())
    for resource in resources_:
        node = node.get("resources", {}).get(resource, {})
    return method in node.get("methods", {})


def test_every_http_call_has_oidc_an_integer_timeout_and_the_transient_retry(workflow):
    calls = [(sub, name, step) for sub, name, step, _ in all_steps(workflow) if step.get("call") in HTTP_CALLS]
    assert calls
    for sub, name, step in calls:
        assert step["args"]["auth"] == {"type": "OIDC"}, (sub, name)
        assert isinstance(step["args"]["timeout"], int), (sub, name)
        assert step["args"]["url"].startswith("${sys.get_env(\""), (sub, name)
    retried = [
        step["try"]
        for _, _, step, _ in all_steps(workflow)
        if "retry" in step and step["try"].get("call") in HTTP_CALLS
    ]
    assert len(retried) == len(calls)
    policies = [step["retry"] for _, _, step, _ in all_steps(workflow) if "retry" in step]
    for policy in policies:
        assert policy["predicate"] == "${retry_if_transient}"
        assert all(isinstance(policy["backoff"][k], int) for k in ("initial_delay", "max_delay", "multiplier"))


def test_retry_predicate_parameter_is_named_e(workflow):
    assert workflow["retry_if_transient"]["params"] == ["e"]


def test_every_switch_condition_leaves_with_next_return_or_raise(workflow):
    """Without one, workflows-emulator runs every later true condition too."""
    loose = [
        f"{sub}/{name}"
        for sub, name, step, _ in all_steps(workflow)
        for condition in step.get("switch", [])
        if not {"next", "return", "raise"} & condition.keys()
    ]
    assert not loose


def test_no_next_on_try_for_or_steps_blocks(workflow):
    """workflows-emulator ignores `next` there."""
    ignored = [
        f"{sub}/{name}"
        for sub, name, step, _ in all_steps(workflow)
        if "next" in step and {"try", "for", "steps"} & step.keys()
    ]
    assert not ignored


def test_expressions_are_whole_values_without_literals_the_emulator_cannot_evaluate(workflow):
    bad = []
    for value in strings(workflow):
        if "${" not in value:
            continue
        if not (value.startswith("${") and value.endswith("}") and value.count("${") == 1):
            bad.append(f"interpolated string: {value}")
            continue
        body = re.sub(r'"[^"]*"', '""', value[2:-1])
        if re.search(r"\b(true|false|null|if)\b", body):
            bad.append(f"true/false/null/if() inside an expression: {value}")
    assert not bad


def test_sleeps_are_whole_seconds_from_the_integer_interval(workflow):
    sleeps = [step for _, _, step, _ in all_steps(workflow) if step.get("call") == "sys.sleep"]
    assert sleeps
    for step in sleeps:
        assert step["args"]["seconds"] == "${interval}"
    init = next(step for _, name, step, _ in all_steps(workflow) if name == "job_poll_start")
    assigned = {k: v for entry in init["assign"] for k, v in entry.items()}
    assert assigned["interval"].startswith("${int(")
