#!/usr/bin/env bash
# Run `molecule test` for each scenario given, MOLECULE_JOBS at a time (default 2:
# every scenario spends most of its time waiting on containers, apt and sockets, so
# two lanes use the two cores of a CI machine; the scenarios' container names,
# networks and subnets are disjoint). The longest scenarios start first so the lanes
# end together. Prints one block per scenario as it ends (its testinfra and recap
# lines, the log tail when it failed) and a closing summary line; exits non-zero if
# any failed. Each scenario's full log is kept in .molecule-logs/<scenario>.log.
set -uo pipefail
cd "$(dirname "$0")/.."
mkdir -p .molecule-logs
# Plain text logs: CI reads them.
export NO_COLOR=1 PY_COLORS=0 ANSIBLE_NOCOLOR=1 ANSIBLE_FORCE_COLOR=0
jobs=${MOLECULE_JOBS:-2}
# Longest first (whole site, then the scenarios with the most containers and re-runs).
LONGEST_FIRST=(site validation base_hardening log_monitoring tls_certs orthanc openvpn_easyrsa)

ordered=()
for name in "${LONGEST_FIRST[@]}"; do
  for scenario in "$@"; do [ "$scenario" = "$name" ] && ordered+=("$scenario"); done
done
for scenario in "$@"; do
  [[ " ${ordered[*]} shared " == *" $scenario "* ]] || ordered+=("$scenario")
done

run_one() {
  local scenario=$1 start result report
  start=$(date +%s)
  rm -f ".molecule-logs/$scenario.result"
  if molecule test -s "$scenario" >".molecule-logs/$scenario.log" 2>&1; then
    result=PASSED
  else
    result=FAILED
  fi
  report=$(
    echo "==> molecule test -s $scenario"
    [ "$result" = FAILED ] && tail -n 150 ".molecule-logs/$scenario.log"
    # testinfra's own result lines, so CI output names every check; Ansible's recap
    # lines show converge, idempotence (changed=0) and the ansible verifiers.
    grep -E '^(PASSED|FAILED|ERROR) |::.* (PASSED|FAILED|ERROR)|^=+ .*(passed|failed).* =+$|^[A-Za-z0-9_.-]+ +: ok=[0-9]+ ' \
      ".molecule-logs/$scenario.log" | sed "s/^/    [$scenario] /"
    echo "    molecule $scenario: $result in $(( $(date +%s) - start )) s"
  )
  # One block per scenario, under a lock so the blocks of parallel lanes do not interleave.
  printf '%s\n' "$report" | flock .molecule-logs/.print cat
  echo "$result" >".molecule-logs/$scenario.result"
}
export -f run_one

printf '%s\n' "${ordered[@]}" | xargs -r -P "$jobs" -I{} bash -c 'run_one "$1"' _ {}

passed=0 failed=0 failed_names=()
for scenario in "${ordered[@]}"; do
  if [ "$(cat ".molecule-logs/$scenario.result" 2>/dev/null)" = PASSED ]; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1)); failed_names+=("$scenario")
  fi
done
echo "molecule: $passed passed, $failed failed${failed_names[*]:+ (${failed_names[*]})} ($jobs at a time)"
[ "$failed" -eq 0 ]
