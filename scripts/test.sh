#!/usr/bin/env bash
# `make test`: lint, unit tests, then every molecule scenario. Runs every stage
# even after a failure so one run shows everything; exits non-zero if any failed.
set -uo pipefail
results=() status=0
stage() {
  local name=$1; shift
  local start; start=$(date +%s)
  echo; echo "======== $name"
  if "$@"; then
    results+=("$(printf '%-12s PASSED  %5ss' "$name" $(( $(date +%s) - start )))")
  else
    results+=("$(printf '%-12s FAILED  %5ss' "$name" $(( $(date +%s) - start )))"); status=1
  fi
}
stage yamllint yamllint --strict .
stage ansible-lint ansible-lint
stage pytest pytest tests
stage molecule scripts/run-molecule.sh "$@"
echo; echo "======== summary"
printf '%s\n' "${results[@]}"
failed=$(printf '%s\n' "${results[@]}" | grep -c ' FAILED ' || true)
echo "stages: $(( ${#results[@]} - failed )) passed, $failed failed"
exit $status
