#!/usr/bin/env bash
# Run `molecule test` for each scenario given; print one result line each and a
# closing summary line; exit non-zero if any failed. Each scenario's full log is
# kept in .molecule-logs/<scenario>.log and shown when it fails.
set -uo pipefail
mkdir -p .molecule-logs
# Plain text logs: CI reads them.
export NO_COLOR=1 PY_COLORS=0 ANSIBLE_NOCOLOR=1 ANSIBLE_FORCE_COLOR=0
passed=0 failed=0 failed_names=()
for scenario in "$@"; do
  [ "$scenario" = shared ] && continue
  start=$(date +%s)
  echo "==> molecule test -s $scenario"
  if molecule test -s "$scenario" >".molecule-logs/$scenario.log" 2>&1; then
    passed=$((passed + 1)); result=PASSED
  else
    failed=$((failed + 1)); failed_names+=("$scenario"); result=FAILED
    tail -n 150 ".molecule-logs/$scenario.log"
  fi
  # Show testinfra's own result lines so CI output names every check.
  # Ansible's recap lines show converge, idempotence (changed=0) and ansible verifiers.
  grep -E '^(PASSED|FAILED|ERROR) |::.* (PASSED|FAILED|ERROR)|^=+ .*(passed|failed).* =+$|^[A-Za-z0-9_.-]+ +: ok=[0-9]+ ' \
    ".molecule-logs/$scenario.log" | sed "s/^/    [$scenario] /" || true
  echo "    molecule $scenario: $result in $(( $(date +%s) - start )) s"
done
echo "molecule: $passed passed, $failed failed${failed_names[*]:+ (${failed_names[*]})}"
[ "$failed" -eq 0 ]
