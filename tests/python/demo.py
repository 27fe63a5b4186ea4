"""`make demo`: the whole SIGMA chain on this machine, told step by step.

Starts the local stack (fake-gcs-server, fakes of Dataflow/Dataform/Pub/Sub, the three real
services), encrypts a sample gzip file with the `sigma` CLI, uploads it to the trigger bucket,
runs the real workflows/sigma.yaml with the object-finalize CloudEvent Eventarc would send, and
prints what happened. Then the redrive story: an upload whose Dataflow job fails, `sigma runs
--failed` listing it, the cause fixed, and `sigma replay --failed` finishing it with one new job
and no second decrypt.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))

from sigma_stack.emulator import WorkflowFailed  # noqa: E402
from sigma_stack.stack import OUTPUT_BUCKET, TRIGGER_BUCKET, WORKFLOW_NAME, Stack, bin_dir  # noqa: E402

OBJECT = "data/20240115/lkp_fechas.gz.encrypted"
FAILING_OBJECT = "data/20240116/lkp_fechas.gz.encrypted"


def say(title: str, text: str = "") -> None:
    print(f"\n== {title}")
    if text:
        print(text)


def sample() -> bytes:
    rows = ["fecha;anio;mes;dia;dia_semana"]
    rows += [f"2024-01-{d:02d};2024;1;{d};{(d + 0) % 7 + 1}" for d in range(1, 32)]
    return gzip.compress(("\n".join(rows) + "\n").encode())


def encrypt(stack: Stack, plaintext: bytes) -> tuple[bytes, str]:
    """With the operator CLI when it is built (tokens Python can decrypt), else with Python."""
    cli = bin_dir() / "sigma"
    if not cli.exists():
        return stack.encrypt(plaintext), "Python cryptography (the sigma CLI is not built)"
    with tempfile.TemporaryDirectory() as tmp:
        source, target = Path(tmp, "lkp_fechas.gz"), Path(tmp, "lkp_fechas.gz.encrypted")
        source.write_bytes(plaintext)
        run = subprocess.run([str(cli), "encrypt", "--key", stack.fernet_key, str(source), str(target)],
                             capture_output=True, text=True)
        if run.returncode != 0 or not target.exists():
            return stack.encrypt(plaintext), f"Python cryptography (`sigma encrypt` failed: {run.stderr.strip()!r})"
        return target.read_bytes(), f"{cli} encrypt --key *** IN OUT"


def main() -> int:
    started = time.monotonic()
    with Stack() as stack:
        say("Local stack", "\n".join(
            [f"  fake-gcs-server  {stack.gcs.endpoint}"]
            + [f"  sigma-{name:<9}  {url}" for name, url in stack.urls.items()]
            + [f"  fake {name:<12} {url}" for name, url in sorted(stack.fakes.items())]
            + [f"  (up in {time.monotonic() - started:.1f}s; logs in {stack.logs})"]
        ))

        plaintext = sample()
        token, how = encrypt(stack, plaintext)
        say("1. On-premise job", f"  gzip file: {len(plaintext)} bytes; encrypted with {how}: {len(token)} bytes")
        event = stack.upload(OBJECT, token)
        say("2. Upload", f"  gs://{TRIGGER_BUCKET}/{OBJECT} generation {event['data']['generation']}\n"
            f"  Eventarc event {event['type']} id {event['id']}")

        say("3. Workflow workflows/sigma.yaml (workflows-emulator)")
        try:
            result = stack.workflow().run(event)
        except WorkflowFailed as failed:
            print(f"  FAILED: {json.dumps(failed.error, indent=2)}")
            return 1
        report(stack, result, plaintext)
        events(stack)
        redrive(stack, plaintext)
        print(f"\nDone in {time.monotonic() - started:.1f}s.")
    return 0


def sigma(stack: Stack, *args: str) -> str:
    """The operator CLI, pointed at the stack's Workflow Executions API as `stack.py up` says."""
    env = {**os.environ, "WORKFLOW_EXECUTIONS_ENDPOINT": stack.executions.endpoint,
           "SIGMA_WORKFLOW": WORKFLOW_NAME, "STORAGE_EMULATOR_HOST": stack.gcs.endpoint}
    done = subprocess.run([str(bin_dir() / "sigma"), *args], env=env, capture_output=True, text=True,
                          check=True, timeout=120)
    return done.stdout


def executions(stack: Stack) -> list[dict]:
    response = requests.get(f"{stack.executions.endpoint}/v1/{WORKFLOW_NAME}/executions",
                            params={"view": "FULL"}, timeout=30)
    response.raise_for_status()
    return response.json().get("executions", [])


def wait_until_no_execution_runs(stack: Stack) -> None:
    deadline = time.monotonic() + 120
    while any(e["state"] in ("ACTIVE", "QUEUED") for e in executions(stack)):
        if time.monotonic() > deadline:
            raise SystemExit("executions still running after 120 s")
        time.sleep(0.5)


def redrive(stack: Stack, plaintext: bytes) -> None:
    say("5. An upload whose Dataflow job fails (started by Eventarc through the Executions API)")
    stack.fakes_api.next_jobs_end("JOB_STATE_FAILED")
    token, _ = encrypt(stack, plaintext)
    event = stack.upload(FAILING_OBJECT, token)
    response = requests.post(f"{stack.executions.endpoint}/v1/{WORKFLOW_NAME}/executions",
                             json={"argument": json.dumps(event)}, timeout=30)
    response.raise_for_status()
    wait_until_no_execution_runs(stack)
    print(f"  gs://{TRIGGER_BUCKET}/{FAILING_OBJECT}: execution {response.json()['name'].rsplit('/', 1)[-1]} ended")

    say("6. $ sigma runs --failed", sigma(stack, "runs", "--failed").rstrip())

    say("7. The cause fixed", "  (the fake Dataflow's jobs succeed again, as after a pipeline fix)")
    stack.fakes_api.reset_jobs()

    say("8. $ sigma replay --failed --reason 'pipeline fixed'",
        sigma(stack, "replay", "--failed", "--reason", "pipeline fixed").rstrip())
    wait_until_no_execution_runs(stack)
    say("9. $ sigma runs --object '*20240116*'", sigma(stack, "runs", "--object", "*20240116*").rstrip())
    replayed = [e for e in executions(stack) if e["state"] == "SUCCEEDED" and '"replay"' in e.get("argument", "")]
    result = json.loads(replayed[0]["result"]) if replayed else {}
    jobs = stack.fakes_api.launches("lkp-fechas-2024-01-16")
    print(f"  Dataflow jobs for the upload: {len(jobs)} (the failed one and its re-run "
          f"{result.get('job', {}).get('name', '?')}); decrypted again: "
          f"{'no, the verified output was kept' if result.get('decrypted', {}).get('skipped') else 'yes'}")


def report(stack: Stack, result: dict, plaintext: bytes) -> None:
    seconds = result["seconds"]
    decrypted = result["decrypted"]
    same = stack.gcs.get(OUTPUT_BUCKET, decrypted["name"]) == plaintext
    print(f"  status: {result['status']}   execution {result['execution_id']}")
    print(f"  decrypt              {seconds['decrypt']:6.2f}s  gs://{decrypted['bucket']}/{decrypted['name']}"
          f" ({decrypted['size']} bytes, generation {decrypted['generation']}, identical to the original: {same})")
    job = result["job"]
    print(f"  launch               {seconds['launch']:6.2f}s  {job['entity']} {job['fecha_lote']}: "
          f"Dataflow job {job['name']} ({job['id']}){' adopted' if job['adopted'] else ''}")
    print(f"  Dataflow job         {seconds['dataflow_job']:6.2f}s  states {' -> '.join(job['states'])}")
    dataform = result["dataform"]
    if dataform["skipped"]:
        print(f"  Dataform             {seconds['dataform_invoke']:6.2f}s  nothing depends on {dataform['table']}")
    else:
        print(f"  Dataform invoke      {seconds['dataform_invoke']:6.2f}s  {dataform['count']} actions depend on "
              f"{dataform['table']}: {dataform['invocation']}")
        print(f"  Dataform invocation  {seconds['dataform_invocation']:6.2f}s  {dataform['state']} {dataform['action_states']}")
        for action in dataform["actions_sample"]:
            print(f"      {action['type']:<12} {action['database']}.{action['schema']}.{action['name']}")
        if dataform["count"] > len(dataform["actions_sample"]):
            print(f"      ... and {dataform['count'] - len(dataform['actions_sample'])} more (GET /invocations on sigma-dataform)")
    print(f"  total                {seconds['total']:6.2f}s")


def events(stack: Stack) -> None:
    say("4. Events published to the events topic")
    for message in stack.fakes_api.messages():
        attributes = message["attributes"]
        print(f"  {attributes.get('event_type', '?'):<24} {attributes.get('object', '')}"
              f"  {' '.join(f'{k}={v}' for k, v in sorted(attributes.items()) if k not in ('event_type', 'object'))}")


if __name__ == "__main__":
    sys.exit(main())
