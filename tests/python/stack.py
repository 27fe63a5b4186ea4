"""Start the local sigma stack for a person: `python tests/python/stack.py up`.

Prints where everything listens and the env that points a shell (curl, `sigma`, the Rust
tests) at it, then waits; Ctrl-C stops everything. The workflow runs in-process: through the
local Workflow Executions API (`sigma runs`, `sigma replay`, or curl at
`$WORKFLOW_EXECUTIONS_ENDPOINT`), with `make demo`, or `pytest tests/python/test_e2e.py`.
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from sigma_stack.emulator import REPO  # noqa: E402
from sigma_stack.stack import CONFIG_BUCKET, EVENTS_TOPIC, OUTPUT_BUCKET, TRIGGER_BUCKET, WORKFLOW_NAME, Stack  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["up"])
    parser.add_argument("--logs", type=Path, default=REPO / "target" / "sigma-stack", help="where process logs go")
    args = parser.parse_args()
    with Stack(logs=args.logs) as stack:
        print(f"export STORAGE_EMULATOR_HOST={stack.gcs.endpoint}")
        for name, url in stack.urls.items():
            print(f"export {name.upper()}_URL={url}")
        print(f"export FERNET_KEYS={stack.fernet_key}")
        print(f"export WORKFLOW_EXECUTIONS_ENDPOINT={stack.executions.endpoint}")
        print(f"export SIGMA_WORKFLOW={WORKFLOW_NAME}")
        print(f"# buckets: {TRIGGER_BUCKET} (trigger), {OUTPUT_BUCKET} (output), {CONFIG_BUCKET} (job configs)")
        print(f"# events topic {EVENTS_TOPIC}; published messages: curl {stack.fakes['pubsub_rest']}/_fake/messages")
        for name, url in sorted(stack.fakes.items()):
            print(f"# fake {name}: {url}")
        print(f"# logs in {stack.logs}; Ctrl-C stops everything", flush=True)
        try:
            signal.pause()
        except KeyboardInterrupt:
            pass
    return 0


def interrupt(*_: object) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, interrupt)
    sys.exit(main())
