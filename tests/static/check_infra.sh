#!/usr/bin/env bash
# Static checks of what deploys sigma: the Dockerfile and infra/ (Terraform).
#   - hadolint on the Dockerfile;
#   - checkov on infra/ and the Dockerfile, built-in checks plus sigma's own policies in
#     tests/static/checkov/, with no failed check; a skip must carry its reason
#     (#checkov:skip=CKV_ID:reason);
#   - every Terraform variable and output has a description;
#   - the README's deploy steps target resources, read outputs and pass variables that exist;
#   - the workflow reads exactly the environment variables infra/ gives it, and the services
#     read every one infra/ gives them;
#   - every resource, data source and provider block matches the providers' published schemas
#     (tests/static/tf_schema.py: unknown types, arguments and blocks, missing required ones),
#     and that check itself fails on a misspelt argument (tests/static/test_tf_schema.py);
#   - the poll bounds in infra/variables.tf are the ones the workflow checks;
#   - the dashboard JSON is a valid Cloud Monitoring dashboard, and the code still writes the log
#     fields the log-based metrics read (tests/static/check_monitoring.py);
#   - terraform fmt -check, and the validation blocks of infra/variables.tf run by terraform
#     itself (tests/static/test_variables.sh: they need no provider), whenever terraform is
#     installed;
#   - terraform validate, where the hashicorp/google and google-beta providers can be installed
#     (registry access, a provider mirror or plugin cache in the terraform CLI configuration, or
#     TF_PLUGIN_DIR=<dir> holding them); otherwise it says it is skipped, and why.
# Run from anywhere, after `make deps` (hadolint, checkov and its hcl2 parser live in .venv-static).
set -euo pipefail
cd "$(dirname "$0")/../.."
if [[ -d .venv-static/bin ]]; then
    PATH="$PWD/.venv-static/bin:$PATH"
fi

step() { printf '== %s\n' "$*"; }
# checkov logs its graph-building chatter at WARNING and ERROR; its findings are in its report.
export LOG_LEVEL=CRITICAL

step "hadolint Dockerfile"
hadolint Dockerfile

step "every checkov skip gives a reason"
if grep -rnE 'checkov:skip=' infra Dockerfile | grep -vE 'checkov:skip=CKV[0-9]?_[A-Z0-9_]+:[^[:space:]].{9,}'; then
    echo "checkov skips above lack a reason: write #checkov:skip=CKV_ID:why" >&2
    exit 1
fi

step "checkov infra/ (terraform)"
checkov --quiet --compact --skip-download --framework terraform \
    --external-checks-dir tests/static/checkov -d infra

step "checkov Dockerfile"
checkov --quiet --compact --skip-download --framework dockerfile -f Dockerfile

step "infra/ against the google, google-beta and time provider schemas"
python3 tests/static/tf_schema.py infra

step "the schema check fails on misspelt or missing arguments"
python3 tests/static/test_tf_schema.py infra

step "monitoring: the dashboard parses, the metrics read fields the code logs"
python3 tests/static/check_monitoring.py

step "every variable and output is described"
python3 - infra <<'PY'
import pathlib, sys
import hcl2  # installed with checkov

missing = []
for path in sorted(pathlib.Path(sys.argv[1]).glob("*.tf")):
    with path.open() as f:
        doc = hcl2.load(f)
    for kind in ("variable", "output"):
        for block in doc.get(kind, []):
            for name, body in block.items():
                if not str(body.get("description", "")).strip():
                    missing.append(f"{path}: {kind} {name!r} has no description")
if missing:
    sys.exit("\n".join(missing))
PY

step "the README's deploy steps name resources, outputs and variables infra/ has"
python3 - infra README.md <<'PY'
import pathlib, re, sys
import hcl2

declared, outputs, variables = set(), set(), set()
for path in pathlib.Path(sys.argv[1]).glob("*.tf"):
    with path.open() as f:
        doc = hcl2.load(f)
    declared |= {f"{t}.{n}" for entry in doc.get("resource", []) for t, instances in entry.items() for n in instances}
    outputs |= {n for entry in doc.get("output", []) for n in entry}
    variables |= {n for entry in doc.get("variable", []) for n in entry}
readme = pathlib.Path(sys.argv[2]).read_text()
deploy = readme[readme.index("\n## Deploy\n"):]
problems = [f"README Deploy targets {t}, which infra/ does not declare" for t in re.findall(r"-target=([\w.-]+)", deploy) if t not in declared]
problems += [f"README Deploy reads output {o}, which infra/ does not define" for o in re.findall(r"terraform (?:-chdir=\S+ )?output (?:-raw )?(\w+)", deploy) if o not in outputs]
problems += [f"README Deploy sets variable {v}, which infra/ does not declare" for v in re.findall(r"-var (\w+)=", deploy) if v not in variables]
if problems:
    sys.exit("\n".join(problems))
PY

step "the workflow's environment is the one infra/ sets"
python3 - infra/workflow.tf workflows/sigma.yaml <<'PY'
import re, sys
import hcl2

with open(sys.argv[1]) as f:
    doc = hcl2.load(f)
(workflow,) = [r["google_workflows_workflow"] for r in doc["resource"] if "google_workflows_workflow" in r]
(body,) = workflow.values()
env = body["user_env_vars"]
env = env[0] if isinstance(env, list) else env
set_by_terraform = set(env)
with open(sys.argv[2]) as f:
    source = f.read()
# GOOGLE_CLOUD_* are the built-in variables Workflows provides.
read_by_workflow = {v for v in re.findall(r'sys\.get_env\("([A-Za-z0-9_]+)"', source) if not v.startswith("GOOGLE_CLOUD_")}
problems = [f"the workflow reads {v}, which infra/workflow.tf does not set" for v in sorted(read_by_workflow - set_by_terraform)]
problems += [f"infra/workflow.tf sets {v}, which the workflow never reads" for v in sorted(set_by_terraform - read_by_workflow)]
if problems:
    sys.exit("\n".join(problems))
PY

step "infra/ bounds the poll settings as the workflow does"
python3 - infra/variables.tf workflows/sigma.yaml <<'PY'
import re, sys

with open(sys.argv[1]) as f:
    variables = f.read()
with open(sys.argv[2]) as f:
    workflow = f.read()
(in_workflow,) = re.findall(r"max_polls_allowed: (\d+)", workflow)
in_terraform = re.findall(r"floor\(var\.poll_deadline_seconds / var\.poll_interval_seconds\) <= (\d+)", variables)
if in_terraform != [in_workflow]:
    sys.exit(f"infra/variables.tf allows {in_terraform} polls per phase, the workflow {in_workflow}: make them agree")
if not re.search(r"var\.poll_interval_seconds >= 1\b", variables):
    sys.exit("infra/variables.tf must refuse a poll_interval_seconds below 1, as the workflow does")
PY

step "every env var infra/ gives the services is read by their code"
missing=0
for var in $(grep -oE '\b[A-Z][A-Z0-9_]{2,}\s*=' infra/run.tf | tr -d ' =' | sort -u); do
    if ! grep -rqF "\"$var\"" services/*/src shared/src; then
        echo "infra/run.tf sets $var, which no service reads" >&2
        missing=1
    fi
done
[[ $missing == 0 ]]

if ! command -v terraform >/dev/null 2>&1; then
    echo "SKIPPED terraform fmt and validate: terraform is not installed"
    exit 0
fi

# A CLI configuration variable naming a missing file only produces a warning on every command.
if [[ -n "${TF_CLI_CONFIG_FILE:-}" && ! -e "$TF_CLI_CONFIG_FILE" ]]; then
    unset TF_CLI_CONFIG_FILE
fi

step "terraform fmt -check"
terraform fmt -check -recursive -diff infra

step "infra/variables.tf validations, evaluated by terraform"
bash tests/static/test_variables.sh

step "terraform validate"
# Work on a copy so init leaves no .terraform/ or lock file in the tree; the workflow source is
# read by file("../workflows/sigma.yaml").
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -r infra "$work/infra"
[[ ! -d workflows ]] || cp -r workflows "$work/workflows"
init_args=(-backend=false -input=false -no-color)
if [[ -n "${TF_PLUGIN_DIR:-}" ]]; then
    init_args+=("-plugin-dir=$TF_PLUGIN_DIR")
fi
if ! terraform -chdir="$work/infra" init "${init_args[@]}" >"$work/init.log" 2>&1; then
    echo "SKIPPED terraform validate: the Google providers cannot be installed here (no registry"
    echo "access and no provider mirror; set TF_PLUGIN_DIR to a directory holding them). terraform init said:"
    grep -iE 'error|could not' "$work/init.log" | awk '!seen[$0]++' | head -4 | sed 's/^/    /'
    exit 0
fi
terraform -chdir="$work/infra" validate -no-color
