#!/usr/bin/env bash
# The validation blocks of infra/variables.tf, run by the real terraform: a module made of
# variables.tf alone needs no provider, so `terraform plan` evaluates every validation offline.
# Each case gives variables and the error it expects (empty: the plan must succeed).
# Run by check_infra.sh when terraform is installed.
set -euo pipefail
cd "$(dirname "$0")/../.."

# A CLI configuration variable naming a missing file only produces a warning on every command.
if [[ -n "${TF_CLI_CONFIG_FILE:-}" && ! -e "$TF_CLI_CONFIG_FILE" ]]; then
    unset TF_CLI_CONFIG_FILE
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp infra/variables.tf "$work/"
terraform -chdir="$work" init -input=false -no-color >/dev/null

passed=0 failed=0

# case_ NAME EXPECTED_ERROR [-var k=v ...] [--omit=REQUIRED_VARIABLE]
# The required variables are given unless a case sets or omits them.
case_() {
    local name=$1 expected=$2
    shift 2
    local args=() omit="" arg
    for arg in "$@"; do
        if [[ $arg == --omit=* ]]; then omit=${arg#--omit=}; else args+=("$arg"); fi
    done
    local var value
    for var in project_id=p dataform_repository=warehouse dataform_service_account=runner@p.iam.gserviceaccount.com; do
        value=${var%%=*}
        if [[ $value != "$omit" && " ${args[*]} " != *" $value="* ]]; then
            args+=(-var "$var")
        fi
    done
    local out status=0
    out=$(terraform -chdir="$work" plan -input=false -no-color "${args[@]}" 2>&1) || status=$?
    if [[ -z $expected && $status == 0 ]] || [[ -n $expected && $status != 0 && $out == *"$expected"* ]]; then
        passed=$((passed + 1)); echo "ok   $name"
    else
        failed=$((failed + 1)); echo "FAIL $name (exit $status, expected ${expected:-success}):"; echo "$out" | tail -5 | sed 's/^/    /'
    fi
}

case_ "the defaults are valid" ""
case_ "a poll interval of 0 is refused" "poll_interval_seconds must be a whole number of seconds, at least 1" -var poll_interval_seconds=0
case_ "a fractional poll interval is refused" "poll_interval_seconds must be a whole number" -var poll_interval_seconds=1.5
case_ "a deadline shorter than the interval is refused" "poll_deadline_seconds must be a whole number of seconds between" -var poll_interval_seconds=60 -var poll_deadline_seconds=30
case_ "a deadline of 2000 intervals is accepted" "" -var poll_interval_seconds=1 -var poll_deadline_seconds=2000
case_ "a deadline of more than 2000 intervals is refused" "poll_deadline_seconds must be a whole number of seconds between" -var poll_interval_seconds=1 -var poll_deadline_seconds=2001
case_ "a backpressure window of one second is accepted" "" -var backpressure_window_seconds=1
case_ "a backpressure window of zero is refused" "backpressure_window_seconds must be a whole number of seconds, at least 1" -var backpressure_window_seconds=0
case_ "a fractional backpressure window is refused" "backpressure_window_seconds must be a whole number of seconds, at least 1" -var backpressure_window_seconds=1.5
case_ "dataform_service_account is required" "No value for required variable" --omit=dataform_service_account
case_ "dataform_service_account must be a service account email" "dataform_service_account must be a service account email" -var dataform_service_account=runner
case_ "freshness takes durations" "" -var 'freshness={"lkp_fechas":"24h","ventas":"1d12h"}'
case_ "freshness refuses a bare number" "freshness maps entity names" -var 'freshness={"lkp_fechas":"24"}'
case_ "name_prefix must fit a service account id" "name_prefix must be 2-14" -var name_prefix=much-too-long-prefix

echo "variables.tf validations: $passed passed, $failed failed"
[[ $failed == 0 ]]
