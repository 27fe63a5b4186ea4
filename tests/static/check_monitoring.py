"""Monitoring as code stays true to what it monitors. Run by check_infra.sh:

    python tests/static/check_monitoring.py

- infra/dashboard.json.tftpl, rendered as Terraform renders it, is a valid Cloud Monitoring
  dashboard: it parses as google.monitoring.dashboard.v1.Dashboard with no unknown field, and
  every placeholder is one monitoring.tf provides;
- the log lines and fields the log-based metrics read (infra/monitoring.tf) are still written by
  the code: sigma-decrypt's "token verified" with plaintext_bytes, the chain events' step, error
  code and per-step seconds in the workflow, the workflow's log of each event it publishes, and
  its "waiting on backpressure" log (with the step the metric is labelled by) for each wait on a
  429.
"""

from __future__ import annotations

import json
import pathlib
import re
import sys

from google.cloud.monitoring_dashboard_v1 import Dashboard

ROOT = pathlib.Path(__file__).resolve().parents[2]
problems: list[str] = []

# --- the dashboard -------------------------------------------------------------------------
monitoring = (ROOT / "infra/monitoring.tf").read_text()
template = (ROOT / "infra/dashboard.json.tftpl").read_text()
metric_types = re.search(r"metric_types = \{(.*?)\n  \}", monitoring, re.S)
provided = {"title"}
provided |= {f"metric_types.{k}" for k in re.findall(r"^\s*(\w+)\s*=", metric_types.group(1), re.M)}
provided |= {f"promql.{k}" for k in re.findall(r"promql\s*=\s*\{\s*(\w+)\s*=", monitoring)}
used = set(re.findall(r"(?<!\$)\$\{([\w.]+)\}", template))
problems += [f"infra/dashboard.json.tftpl uses ${{{p}}}, which monitoring.tf does not pass" for p in sorted(used - provided)]
rendered = re.sub(r"(?<!\$)\$\{([\w.]+)\}", lambda m: f"logging.googleapis.com/user/sigma_{m.group(1).split('.')[-1]}", template)
rendered = rendered.replace("$${", "${")
try:
    dashboard = Dashboard.from_json(rendered, ignore_unknown_fields=False)
except Exception as e:  # json_format.ParseError, or json.JSONDecodeError: both name the field
    problems.append(f"infra/dashboard.json.tftpl is not a valid Cloud Monitoring dashboard: {e}")
else:
    titles = [tile.widget.title for tile in dashboard.mosaic_layout.tiles]
    for wanted in ("Files per hour by outcome", "Failures by step", "Decrypt MB/s", "Dataflow job duration", "Dataform invocation duration", "backpressure"):
        if not any(wanted in t for t in titles):
            problems.append(f"the dashboard has no {wanted!r} chart")
    json.loads(rendered)

# --- the log lines the metrics read ------------------------------------------------------
decrypt_src = "\n".join(p.read_text() for p in (ROOT / "services/decrypt/src").rglob("*.rs"))
if not re.search(r'plaintext_bytes\s*=.*?"token verified"', decrypt_src, re.S):
    problems.append('sigma-decrypt no longer logs "token verified" with plaintext_bytes (metric decrypted_bytes)')
if 'EXTRACT(jsonPayload.plaintextBytes)' not in monitoring:
    problems.append("monitoring.tf must read plaintext_bytes as jsonPayload.plaintextBytes (tracing-stackdriver camel-cases field names)")

workflow = (ROOT / "workflows/sigma.yaml").read_text()
steps = re.search(r"chain_steps = \{(.*?)\n  \}", monitoring, re.S)
for step in re.findall(r"^\s*(\w+)\s*=", steps.group(1), re.M):
    if not re.search(rf"seconds\.{step}:", workflow):
        problems.append(f"the workflow no longer reports seconds.{step} (metric chain_seconds_{step})")
for needle, metric in [
    ('event_type: "sigma.chain.succeeded"', "chain_outcomes"),
    ('event_type: "sigma.chain.failed"', "chain_outcomes"),
    ("step: ${current_step}", "chain_outcomes label step"),
    ("error: ${failure}", "chain_outcomes label error_code"),
]:
    if needle not in workflow:
        problems.append(f"the workflow's chain events no longer carry {needle!r} ({metric})")
if not re.search(r"call: sys\.log\s+args:\s+(?:severity: [^\n]+\s+)?json: \$\{event\}", workflow):
    problems.append(
        "workflows/sigma.yaml does not log the events it publishes (a sys.log step with"
        " json: ${event} in publish_event): the chain metrics, the failed-chain alert and the"
        " freshness alerts would stay empty"
    )
# The backpressure metric counts entries whose jsonPayload.message is exactly this, by
# jsonPayload.step: a sys.log step whose json map has both.
logged_maps = re.findall(r"call: sys\.log\s+args:\s+(?:severity: [^\n]+\s+)?json:\n((?:\s+\w+: [^\n]+\n)+)", workflow)
if not any(
    re.search(r'^\s+message: "waiting on backpressure"$', logged, re.M) and re.search(r"^\s+step: ", logged, re.M)
    for logged in logged_maps
):
    problems.append(
        'workflows/sigma.yaml does not log "waiting on backpressure" with its step (a sys.log step whose'
        ' json has message: "waiting on backpressure" and step): the backpressure metric and chart stay empty'
    )

if problems:
    sys.exit("\n".join(problems))
print("the dashboard is valid and the code writes every log field the metrics read")
