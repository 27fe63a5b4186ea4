"""The whole chain end to end: the real workflows/sigma.yaml (under workflows-emulator) calling
the three real service binaries, against fake-gcs-server and the fakes of Dataflow, Dataform
and Pub/Sub. Every test uploads its own object (its own date, so its own Dataflow job name)."""

from __future__ import annotations

import gzip

import pytest

from sigma_stack.emulator import WorkflowFailed
from sigma_stack.stack import OUTPUT_BUCKET, TRIGGER_BUCKET, Stack


def sample_gzip(rows: int = 50) -> bytes:
    lines = ["fecha;anio;mes;dia"] + [f"2024-01-{d % 28 + 1:02d};2024;1;{d % 28 + 1}" for d in range(rows)]
    return gzip.compress(("\n".join(lines) + "\n").encode())


def upload(stack: Stack, name: str, plaintext: bytes | None = None) -> dict:
    return stack.upload(name, stack.encrypt(plaintext if plaintext is not None else sample_gzip()))


def chain_events(stack: Stack, event: dict) -> list[dict]:
    """What the workflow itself published about this upload."""
    source = f"gs://{TRIGGER_BUCKET}/{event['data']['name']}"
    return [
        m for m in stack.fakes_api.messages()
        if m["attributes"].get("object") == source and m["attributes"]["event_type"].startswith("sigma.chain.")
    ]


def run_failing(workflow, event) -> dict:
    with pytest.raises(WorkflowFailed) as failed:
        workflow.run(event)
    return failed.value.error


def test_upload_is_decrypted_loaded_and_its_dataform_closure_run(stack):
    plaintext = sample_gzip()
    event = upload(stack, "data/20240115/lkp_fechas.gz.encrypted", plaintext)
    invocations_before = len(stack.fakes_api.invocations())

    workflow = stack.workflow()

    result = workflow.run(event)

    assert result["status"] == "succeeded"
    assert result["decrypted"]["name"] == "data/20240115/lkp_fechas.gz"
    assert stack.gcs.get(OUTPUT_BUCKET, "data/20240115/lkp_fechas.gz") == plaintext
    assert result["job"]["entity"] == "lkp_fechas"
    assert result["job"]["state"] == "SUCCEEDED"
    assert result["dataform"]["state"] == "SUCCEEDED"
    assert result["dataform"]["skipped"] is False
    assert result["dataform"]["count"] == 16
    assert len(result["dataform"]["actions_sample"]) == 16
    states = result["job"]["states"]
    assert states[-1] == "SUCCEEDED"
    assert all(before != after for before, after in zip(states, states[1:])), "each state once"
    assert set(result["seconds"]) >= {"decrypt", "launch", "dataflow_job", "dataform_invoke", "dataform_invocation", "total"}
    launches = stack.fakes_api.launches("lkp-fechas-2024-01-15")
    assert len(launches) == 1
    (created,) = stack.fakes_api.invocations()[invocations_before:]
    assert len(created["invocationConfig"]["includedTargets"]) == 16
    (outcome,) = chain_events(stack, event)
    assert outcome["attributes"]["event_type"] == "sigma.chain.succeeded"
    assert outcome["attributes"]["entity"] == "lkp_fechas"
    assert outcome["data"]["detail"]["job"]["id"] == result["job"]["id"]
    service_calls = [call for call in workflow.calls if call.audience is not None]
    assert {call.audience for call in service_calls} == set(stack.urls.values())
    assert all(call.url.startswith(call.audience + "/") for call in service_calls)


@pytest.mark.parametrize(
    ("name", "size", "reason"),
    [
        ("incoming/20240115/lkp_fechas.gz.encrypted", None, "outside prefix data/"),
        ("data/20240115/lkp_fechas.gz", None, "name does not end in .encrypted"),
        ("data/20240116/lkp_fechas.gz.encrypted", 0, "empty object"),
    ],
)
def test_objects_outside_the_prefix_unencrypted_or_empty_are_ignored_without_any_call(stack, name, size, reason):
    event = stack.upload(name, b"" if size == 0 else stack.encrypt(sample_gzip()))
    calls_before = stack.fakes_api.dataflow_activity()
    outputs_before = stack.gcs.names(OUTPUT_BUCKET)

    result = stack.workflow().run(event)

    assert result["status"] == "ignored"
    assert result["reason"] == reason
    assert stack.fakes_api.dataflow_activity() == calls_before
    assert stack.gcs.names(OUTPUT_BUCKET) == outputs_before
    assert chain_events(stack, event) == []


def test_tampered_file_fails_at_decrypt_with_nothing_written_or_launched(stack):
    token = bytearray(stack.encrypt(sample_gzip()))
    token[len(token) // 2] = ord("A") if token[len(token) // 2] != ord("A") else ord("B")
    event = stack.upload("data/20240117/lkp_fechas.gz.encrypted", bytes(token))

    error = run_failing(stack.workflow(), event)

    assert error["code"] == 422
    assert error["body"]["error"]["code"] == "invalid_token"
    assert error["step"] == "decrypt", "the execution's error names the step, for `sigma runs`"
    source = f"gs://{TRIGGER_BUCKET}/data/20240117/lkp_fechas.gz.encrypted"
    assert stack.statuses("decrypt", "/decrypt", source) == [422], "a 4xx is not retried"
    assert stack.gcs.get(OUTPUT_BUCKET, "data/20240117/lkp_fechas.gz") is None
    assert stack.fakes_api.launches("lkp-fechas-2024-01-17") == []
    (failure,) = chain_events(stack, event)
    assert failure["attributes"]["event_type"] == "sigma.chain.failed"
    assert "entity" not in failure["attributes"] and "entity" not in failure["data"]
    detail = failure["data"]["detail"]
    assert detail["step"] == "decrypt"
    assert detail["error"]["status"] == 422
    assert detail["error"]["code"] == "invalid_token"
    assert detail["execution_id"]


def test_file_of_no_registered_entity_fails_at_launch(stack):
    event = upload(stack, "data/20240115/unregistered_thing.gz.encrypted")

    error = run_failing(stack.workflow(), event)

    assert error["code"] == 422
    assert error["body"]["error"]["code"] == "unknown_entity"
    assert stack.fakes_api.launches("unregistered-thing") == []
    (failure,) = chain_events(stack, event)
    assert failure["data"]["detail"]["step"] == "launch"
    assert failure["data"]["detail"]["error"]["code"] == "unknown_entity"


def test_failed_dataflow_job_stops_the_chain_before_dataform(stack):
    stack.fakes_api.next_jobs_end("JOB_STATE_FAILED")
    invocations_before = len(stack.fakes_api.invocations())
    event = upload(stack, "data/20240118/lkp_fechas.gz.encrypted")

    error = run_failing(stack.workflow(), event)

    assert error["reason"] == "dataflow_job_failed"
    assert error["state"] == "FAILED"
    assert any("did not match the schema" in str(message) for message in error["errors"])
    assert len(stack.fakes_api.invocations()) == invocations_before
    (failure,) = chain_events(stack, event)
    assert failure["data"]["detail"]["step"] == "dataflow_job"
    assert failure["data"]["detail"]["error"]["code"] == "dataflow_job_failed"


def test_table_nothing_depends_on_succeeds_without_an_invocation(stack):
    invocations_before = len(stack.fakes_api.invocations())
    event = upload(stack, "data/20240115/productos.gz.encrypted")

    result = stack.workflow().run(event)

    assert result["status"] == "succeeded"
    assert result["dataform"]["skipped"] is True
    assert result["dataform"]["count"] == 0
    assert result["dataform"]["actions_sample"] == []
    assert "invocation" not in result["dataform"]
    assert len(stack.fakes_api.invocations()) == invocations_before


def test_duplicate_event_decrypts_launches_and_invokes_once(stack):
    event = upload(stack, "data/20240119/lkp_fechas.gz.encrypted")
    workflow = stack.workflow()
    invocations_before = len(stack.fakes_api.invocations())

    first = workflow.run(event)
    second = workflow.run(event)

    assert first["status"] == second["status"] == "succeeded"
    assert second["decrypted"]["skipped"] is True
    assert second["job"]["id"] == first["job"]["id"]
    assert second["dataform"]["invocation"] == first["dataform"]["invocation"]
    assert len(stack.fakes_api.launches("lkp-fechas-2024-01-19")) == 1
    assert len(stack.fakes_api.invocations()) == invocations_before + 1


def test_transient_dataflow_error_is_retried_to_success(stack):
    event = upload(stack, "data/20240120/lkp_fechas.gz.encrypted")
    stack.fakes_api.fail_next_launch(503)

    result = stack.workflow().run(event)

    assert result["status"] == "succeeded"
    decrypted = f"gs://{OUTPUT_BUCKET}/data/20240120/lkp_fechas.gz"
    assert stack.statuses("dataflow", "/launch", decrypted) == [503, 200]
    assert len(stack.fakes_api.launches("lkp-fechas-2024-01-20")) == 1
    assert result["seconds"]["launch"] >= 1


def test_job_still_running_at_the_poll_deadline_fails_the_execution(stack):
    stack.fakes_api.next_jobs_end(None)
    event = upload(stack, "data/20240121/lkp_fechas.gz.encrypted")

    error = run_failing(stack.workflow(POLL_DEADLINE_SECONDS="2"), event)

    assert error["reason"] == "poll_deadline_exceeded"
    assert "after 2 s" in error["message"]
    assert error["cancelled"]["cancel_requested"] is True, "the job given up on is cancelled, not left billing"
    (job,) = [j for j in stack.fakes_api.jobs() if j["id"] == error["job_id"]]
    assert job["state"] in ("JOB_STATE_CANCELLING", "JOB_STATE_CANCELLED")
    (failure,) = chain_events(stack, event)
    assert failure["data"]["detail"]["step"] == "dataflow_job"
    assert failure["data"]["detail"]["error"]["code"] == "poll_deadline_exceeded"
    assert failure["data"]["detail"]["error"]["cancelled"]["job_id"] == error["job_id"]


def test_invocation_still_running_at_the_poll_deadline_fails_the_execution(stack):
    stack.fakes_api.invocations_finish_after_reads(None)
    event = upload(stack, "data/20240122/lkp_fechas.gz.encrypted")
    try:
        error = run_failing(stack.workflow(POLL_DEADLINE_SECONDS="2"), event)
    finally:
        stack.fakes_api.invocations_finish_after_reads(1)

    assert error["reason"] == "poll_deadline_exceeded"
    assert error["state"] == "RUNNING"
    assert error["invocation"].startswith("projects/")
    assert error["cancelled"]["cancel_requested"] is True
    assert error["cancelled"]["state"] == "CANCELLED"
    (failure,) = chain_events(stack, event)
    assert failure["data"]["detail"]["step"] == "dataform_invocation"
    assert failure["data"]["detail"]["error"]["cancelled"]["invocation"] == error["invocation"]


def test_failure_event_of_an_object_name_too_long_for_an_attribute_is_published_shortened(stack):
    name = "data/20240115/" + "n" * 973 + ".gz.encrypted"
    event = upload(stack, name)
    source = f"gs://{TRIGGER_BUCKET}/{name}"
    assert len(source.encode()) > 1024

    run_failing(stack.workflow(), event)

    (failure,) = [
        m for m in stack.fakes_api.messages()
        if m["attributes"]["event_type"] == "sigma.chain.failed" and m["data"]["object"] == source
    ]
    attribute = failure["attributes"]["object"]
    assert len(attribute.encode()) <= 1024
    assert attribute.startswith(source[:240] + "...sha256:")
