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
#: Cloud Workflows' standard library modules and helpers: a variable of one of these names
#: would hide it (workflows-emulator resolves the library first, Cloud Workflows refuses it).
STDLIB_NAMES = {
    "base64", "events", "hash", "http", "json", "list", "map", "math", "retry", "sys", "text", "time", "uuid",
    "default", "double", "get_type", "int", "keys", "len", "string",
}
#: What Cloud Workflows' get_type returns (workflows-emulator returns Python's names instead).
CLOUD_TYPE_NAMES = {"bool", "bytes", "double", "integer", "list", "map", "null", "string"}
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


def http_calls(workflow: dict) -> list[tuple[str, str, dict]]:
    return [(sub, name, step) for sub, name, step, _ in all_steps(workflow) if step.get("call") in HTTP_CALLS]


def init_assignments(workflow: dict) -> dict[str, Any]:
    (init,) = [step for sub, name, step, _ in all_steps(workflow) if sub == "main" and name == "init"]
    return {k: v for entry in init["assign"] for k, v in entry.items()}


def assignments(workflow: dict, subworkflow: str) -> dict[str, list[Any]]:
    """Every value assigned to each variable of `subworkflow`, in any step."""
    assigned: dict[str, list[Any]] = {}
    for sub, _, step, _ in all_steps(workflow):
        if sub == subworkflow:
            for entry in step.get("assign", []):
                for variable, value in entry.items():
                    assigned.setdefault(variable, []).append(value)
    return assigned


def params(workflow: dict, subworkflow: str) -> list[str]:
    return [p if isinstance(p, str) else next(iter(p)) for p in workflow[subworkflow].get("params", [])]


def service_callers(workflow: dict) -> set[str]:
    """The subworkflows that call a service for their caller: they take its URL and audience."""
    return {sub for sub in workflow if {"url", "audience"} <= set(params(workflow, sub))}


def test_http_calls_are_made_only_by_call_service(workflow):
    """One place holds the auth, the timeouts, the transient retry and the 429 wait."""
    calls = http_calls(workflow)
    assert calls
    assert {sub for sub, _, _ in calls} == {"call_service"}
    assert service_callers(workflow) == {"call_service", "cancel_at_deadline"}


def test_every_oidc_call_has_its_service_root_as_audience(workflow):
    """Cloud Run checks the token's audience; the default one is the full URL with its path."""
    roots = {
        f"${{{variable}}}": value
        for variable, value in init_assignments(workflow).items()
        if variable.endswith("_url")
    }
    assert set(roots) == {"${decrypt_url}", "${dataflow_url}", "${dataform_url}"}
    for audience, value in roots.items():
        env = audience[2:-5].upper() + "_URL"
        assert value == f'${{text.replace_all_regex(sys.get_env("{env}", ""), "/+$", "")}}', audience
    for sub, name, step in http_calls(workflow):
        assert step["args"]["auth"] == {"type": "OIDC", "audience": "${audience}"}, (sub, name)
        assert step["args"]["url"] == "${url}", (sub, name)
    callers = service_callers(workflow)
    sites = [(sub, name, step) for sub, name, step, _ in all_steps(workflow) if step.get("call") in callers]
    assert {sub for sub, _, _ in sites} >= {"main"}
    for sub, name, step in sites:
        args = step["args"]
        if sub in callers:
            # passed through by a subworkflow that was itself given a root and a URL under it
            assert (args["audience"], args["url"]) == ("${audience}", "${url}"), (sub, name)
        else:
            assert args["audience"] in roots, (sub, name)
            assert args["url"].startswith(args["audience"][:-1] + ' + "/'), (sub, name)


def test_every_service_request_has_a_literal_timeout_and_the_transient_retry(workflow):
    """Cloud Workflows takes only a literal timeout: call_service has a request step per
    (method, timeout), and every call site asks for one of those."""
    (send,) = [step for sub, name, step, _ in all_steps(workflow) if sub == "call_service" and name == "send"]
    assert send["retry"]["predicate"] == "${retry_if_transient_except_429}"
    assert send["retry"]["max_retries"] == 5
    inside = {name: step for name, step, _ in step_lists(send["try"]["steps"])}
    requests = {}
    for sub, name, step in http_calls(workflow):
        assert name in inside, f"{sub}/{name} is outside call_service's retried try"
        assert isinstance(step["args"]["timeout"], int), (sub, name)
        requests[name] = (step["call"].split(".")[1].upper(), step["args"]["timeout"])
    offered = {}
    for condition in inside["pick_request"]["switch"]:
        method, timeout = re.fullmatch(r'\$\{method == "(\w+)" and timeout == (\d+)\}', condition["condition"]).groups()
        offered[(method, int(timeout))] = condition["next"]
    assert {requests[target] for target in offered.values()} == set(requests.values())
    assert all(requests[target] == key for key, target in offered.items())
    sites = [(sub, name, step) for sub, name, step, _ in all_steps(workflow) if step.get("call") == "call_service"]
    assert sites
    for sub, name, step in sites:
        assert (step["args"]["method"], step["args"]["timeout"]) in offered, (sub, name)


def test_retry_policies_use_the_transient_predicates_with_integer_backoff(workflow):
    policies = [step["retry"] for _, _, step, _ in all_steps(workflow) if "retry" in step]
    assert policies
    for policy in policies:
        assert policy["predicate"] in {"${retry_if_transient}", "${retry_if_transient_except_429}"}
        assert all(isinstance(policy["backoff"][k], int) for k in ("initial_delay", "max_delay", "multiplier"))


def test_retry_predicate_parameter_is_named_e(workflow):
    predicates = {step["retry"]["predicate"][2:-1] for _, _, step, _ in all_steps(workflow) if "retry" in step}
    assert predicates
    for predicate in predicates:
        assert workflow[predicate]["params"] == ["e"], predicate


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
        if "}" in value[2:-1]:
            # workflows-emulator ends an expression at its first `}`, even inside a string
            bad.append(f"a }} inside an expression: {value}")
            continue
        body = re.sub(r'"[^"]*"', '""', value[2:-1])
        if re.search(r"\b(true|false|null|if)\b", body):
            bad.append(f"true/false/null/if() inside an expression: {value}")
    assert not bad


def test_sleeps_are_whole_seconds_from_the_integer_interval_or_backoff(workflow):
    """workflows-emulator's sys.sleep takes whole seconds only: the poll interval, or
    call_service's backpressure pause, computed from integers alone."""
    sleeps = [(sub, step) for sub, _, step, _ in all_steps(workflow) if step.get("call") == "sys.sleep"]
    assert sleeps
    for sub, step in sleeps:
        assert (sub, step["args"]["seconds"]) in {("main", "${interval}"), ("call_service", "${pause}")}
    settings = next(step for _, name, step, _ in all_steps(workflow) if name == "read_numeric_settings")
    assigned = {k: v for entry in settings["assign"] for k, v in entry.items()}
    assert assigned["interval"] == "${int(interval_setting)}"
    assert assigned["backpressure_window"] == "${int(window_setting)}"
    backoff = assignments(workflow, "call_service")
    assert backoff["pause"] == [0, "${math.min(delay, window - waited)}"]
    assert backoff["delay"] == [2, "${math.min(delay * 2, 60)}"]
    assert backoff["waited"] == [0, "${int(sys.now() - busy_since)}"]


def test_get_type_is_compared_only_with_names_cloud_workflows_returns(workflow):
    compared = set()
    for value in strings(workflow):
        compared |= set(re.findall(r'get_type\([^()]*(?:\([^()]*\))?[^()]*\)\s*[!=]=\s*"([^"]*)"', value))
    assert compared, "the workflow compares get_type results"
    assert compared <= CLOUD_TYPE_NAMES


def test_no_variable_hides_a_standard_library_name(workflow):
    hiding = []
    for sub, name, step, _ in all_steps(workflow):
        assigned = [next(iter(entry)).split(".")[0].split("[")[0] for entry in step.get("assign", [])]
        assigned += [step["result"]] if "result" in step else []
        assigned += [step["except"]["as"]] if "except" in step else []
        hiding += [f"{sub}/{name}: {variable}" for variable in assigned if variable in STDLIB_NAMES]
    for sub in workflow:
        hiding += [f"{sub}: parameter {p}" for p in params(workflow, sub) if p in STDLIB_NAMES]
    assert not hiding
