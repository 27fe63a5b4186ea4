"""Each service's OpenAPI document, fuzzed by schemathesis against the release binary.

The services run in a stack of their own, so the requests the fuzzer makes (POST /decrypt,
/launch and /invoke have real effects: objects, fake jobs, invocations) cannot meet the
other tests' objects, jobs or events. Every operation of each document gets its explicit
examples (the README's), the coverage phase's boundary and type-violating cases, and a
bounded number of generated ones, positive and negative. The checks are the contract:
no 5xx for any input, a documented status, a body that matches the document (error bodies
included), the documented headers and content type, and a refusal (4xx) of every request the
document does not allow (a wrong type, a missing or unknown field).
"""

from __future__ import annotations

import gzip
import json
import os
import time
from collections import Counter

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import GenerationMode
from schemathesis.checks import negative_data_rejection, not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from sigma_stack.emulator import REPO
from sigma_stack.stack import OUTPUT_BUCKET, SERVICES, Stack

DOCS = REPO / "docs" / "openapi"

#: Generated cases per operation and generation mode, on top of the examples and coverage cases.
MAX_EXAMPLES = int(os.environ.get("SIGMA_FUZZ_EXAMPLES", "30"))
#: What the whole module may take: about 20 s with 30 examples, so 180 s leaves room for a
#: slow machine; a larger `SIGMA_FUZZ_EXAMPLES` gets proportionally more.
TIME_LIMIT_SECONDS = 180 * max(1, MAX_EXAMPLES / 30)
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
    negative_data_rejection,
]
FUZZ_SETTINGS = settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    database=None,
)


#: Requests made per service, for the summary line.
CASES: Counter[str] = Counter()
#: The README's request examples name these objects; present, the examples reach the
#: answers past the checks of the request (a decryption, a launch's generation check).
DECRYPT_EXAMPLE = "data/20240115/lkp_fechas.gz.encrypted"
LAUNCH_EXAMPLE = "data/20240115/poliza_detalle.gz"


@pytest.fixture(scope="module")
def fuzz_stack(request):
    started = time.monotonic()
    with Stack() as running:
        running.upload(DECRYPT_EXAMPLE, running.encrypt(gzip.compress(b"fecha\n2024-01-15\n")))
        running.upload("data/20240115/not_a_token.gz.encrypted", b"not a Fernet token")
        running.gcs.put(OUTPUT_BUCKET, LAUNCH_EXAMPLE, gzip.compress(b"poliza_id\n1\n"))
        yield running
    took = time.monotonic() - started
    plugins = request.config.pluginmanager
    with plugins.get_plugin("capturemanager").global_and_fixture_disabled():
        reporter = plugins.get_plugin("terminalreporter")
        reporter.write_line("")
        for service, cases in sorted(CASES.items()):
            reporter.write_line(f"schemathesis: sigma-{service}: {cases} cases")
        reporter.write_line(f"schemathesis: {took:.1f} s in all")
    assert took < TIME_LIMIT_SECONDS, f"the fuzzing took {took:.0f} s, over its {TIME_LIMIT_SECONDS:.0f} s"



def committed_schema(service: str):
    """The committed document: the Rust tests prove it is the one the code builds, and
    `test_each_service_serves_its_committed_document` that the binary serves it."""
    schema = schemathesis.openapi.from_path(DOCS / f"sigma-{service}.json")
    schema.config.generation.update(
        modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE], max_examples=MAX_EXAMPLES
    )
    return schema


decrypt = committed_schema("decrypt")
dataflow = committed_schema("dataflow")
dataform = committed_schema("dataform")


@pytest.mark.parametrize("service", SERVICES)
def test_each_service_serves_its_committed_document(fuzz_stack, service):
    served = requests.get(f"{fuzz_stack.urls[service]}/openapi.json", timeout=10)

    assert served.status_code == 200
    assert served.headers["content-type"] == "application/json"
    assert served.json() == json.loads((DOCS / f"sigma-{service}.json").read_text())


@decrypt.parametrize()
@FUZZ_SETTINGS
def test_sigma_decrypt_answers_every_request_as_its_document_says(case, fuzz_stack):
    CASES["decrypt"] += 1
    case.call_and_validate(base_url=fuzz_stack.urls["decrypt"], checks=CHECKS)


@dataflow.parametrize()
@FUZZ_SETTINGS
def test_sigma_dataflow_answers_every_request_as_its_document_says(case, fuzz_stack):
    CASES["dataflow"] += 1
    case.call_and_validate(base_url=fuzz_stack.urls["dataflow"], checks=CHECKS)


@dataform.parametrize()
@FUZZ_SETTINGS
def test_sigma_dataform_answers_every_request_as_its_document_says(case, fuzz_stack):
    CASES["dataform"] += 1
    case.call_and_validate(base_url=fuzz_stack.urls["dataform"], checks=CHECKS)
