"""The `/_fake/...` control routes of the `sigma-fakes` process: what tests program and inspect."""

from __future__ import annotations

import json
from typing import Any

import requests

DEFAULT_JOB_STATES = ["JOB_STATE_PENDING", "JOB_STATE_RUNNING", "JOB_STATE_DONE"]


class FakesApi:
    def __init__(self, endpoints: dict[str, str]):
        self.endpoints = endpoints

    # --- Dataflow ---------------------------------------------------------------------------

    def next_jobs_end(self, final_state: str | None) -> None:
        """Jobs launched from now on end in `final_state` (None: they stay running)."""
        states = ["JOB_STATE_PENDING", "JOB_STATE_RUNNING"] + ([final_state] if final_state else [])
        self._post("dataflow", "/_fake/script", {"states": states, "messages": self._messages_for(final_state)})

    def reset_jobs(self) -> None:
        self._post("dataflow", "/_fake/script", {"states": DEFAULT_JOB_STATES, "messages": []})

    def fail_next_launch(self, status: int) -> None:
        self._post("dataflow", "/_fake/failures", {"method": "launch", "status": status, "create": False})

    def launches(self, job_name_prefix: str = "") -> list[dict[str, Any]]:
        """Launch requests Dataflow accepted, for jobs whose name starts with the prefix."""
        return [
            launch for launch in self._get("dataflow", "/_fake/launches")
            if launch.get("launchParameter", {}).get("jobName", "").startswith(job_name_prefix)
        ]

    def jobs(self) -> list[dict[str, Any]]:
        return self._get("dataflow", "/_fake/jobs")

    def limit_active_jobs(self, limit: int | None) -> None:
        """Dataflow's concurrent-jobs quota: launches beyond `limit` active jobs get 429."""
        self._post("dataflow", "/_fake/quota", {"max_active_jobs": limit})

    def dataflow_stats(self) -> dict[str, int]:
        """`peak_active` jobs at once and `quota_refusals` since the fake started."""
        return self._get("dataflow", "/_fake/stats")

    def dataflow_activity(self) -> tuple[int, int]:
        """(launches accepted, jobs known): unchanged means nothing was launched."""
        return len(self._get("dataflow", "/_fake/launches")), len(self.jobs())

    # --- Dataform ---------------------------------------------------------------------------

    def invocations_finish_after_reads(self, reads: int | None) -> None:
        """Invocations succeed once read `reads` times (None: they keep running)."""
        self._post("dataform", "/_fake/auto_complete", {"after_gets": reads})

    def complete_invocation(self, invocation: str, failed: dict[str, str]) -> None:
        """Ends a running invocation: the `failed` targets (`database.schema.name`: reason) fail,
        their dependents are skipped, the rest succeed."""
        self._post("dataform", f"/_fake/invocations/{invocation.rsplit('/', 1)[-1]}/complete", {"failed": failed})

    def invocation_names(self, repository: str) -> list[str]:
        """Names of the invocations the fake Dataform created in `repository`, oldest first (its
        ids count up), read through the API's own list call."""
        names, token = [], ""
        while True:
            response = requests.get(f"{self.endpoints['dataform']}/v1/{repository}/workflowInvocations",
                                    params={"pageSize": 1000, "pageToken": token}, timeout=10)
            response.raise_for_status()
            page = response.json()
            names += [invocation["name"] for invocation in page.get("workflowInvocations", [])]
            token = page.get("nextPageToken", "")
            if not token:
                return names

    def overlaps(self) -> dict[str, Any]:
        """`overlaps`: pairs of invocations that ran the same actions at the same time, with
        those actions; `action_executions`: how many actions all invocations included."""
        return self._get("dataform", "/_fake/overlaps")

    def invocations(self) -> list[dict[str, Any]]:
        """The `workflowInvocations.create` bodies Dataform accepted, in order."""
        return self._get("dataform", "/_fake/invocations")

    # --- Pub/Sub ----------------------------------------------------------------------------

    def messages(self) -> list[dict[str, Any]]:
        """Every message published (gRPC by the services, REST by the workflow), data parsed."""
        received = self._get("pubsub_rest", "/_fake/messages")["messages"]
        for message in received:
            try:
                message["data"] = json.loads(message["data"])
            except ValueError:
                pass
        return received

    # --- plumbing ---------------------------------------------------------------------------

    @staticmethod
    def _messages_for(final_state: str | None) -> list[dict[str, str]]:
        if final_state == "JOB_STATE_FAILED":
            return [{"importance": "JOB_MESSAGE_ERROR", "text": "Workflow failed: 3 rows did not match the schema"}]
        return []

    def _get(self, fake: str, path: str) -> Any:
        response = requests.get(self.endpoints[fake] + path, timeout=10)
        response.raise_for_status()
        return response.json()

    def _post(self, fake: str, path: str, body: dict) -> None:
        requests.post(self.endpoints[fake] + path, json=body, timeout=10).raise_for_status()
