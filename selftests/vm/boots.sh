#!/usr/bin/env bash
# run.sh over as many boots as the tests' model GPUs need. A test whose script has a line
# "# vram-mib: N" needs GPUs of N MiB of VRAM: it runs in a boot of its own per size (named
# NAME-vramN, models started with VRAM_MIB=N); every other test shares one boot (NAME), as
# with run.sh alone. Takes run.sh's arguments and prints what one run.sh would: the boots'
# lines in order with the results renumbered, one plan if run.sh prints plans, and one
# closing "N passed, N failed" (the sums of the boots'). Fails if any boot failed.
# With no test declaring a size this is exactly run.sh.
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
name=vm; opts=(); tests=()
while [ $# -gt 0 ]; do
  case "$1" in
    --name) name=$2; shift 2 ;;
    --gpus) opts+=("$1" "$2"); shift 2 ;;
    -*) opts+=("$1"); shift ;;
    *) tests+=("$1"); shift ;;
  esac
done
declare -A group=(); order=()
for t in "${tests[@]}"; do
  v=$(sed -n 's/^# vram-mib: *\([0-9][0-9]*\) *$/\1/p' "$HERE/tests/${t%%@*}.sh" 2>/dev/null | head -1)
  k=${v:-default}
  [ -n "${group[$k]+set}" ] || order+=("$k")
  group[$k]+="$t "
done
if [ "${order[*]:-default}" = default ]; then
  exec bash "$HERE/run.sh" --name "$name" "${opts[@]}" "${tests[@]}"
fi

rc=0; n=0; pass=0; fail=0; plan=0; ktap=0; body=()
for k in "${order[@]}"; do
  read -ra ts <<< "${group[$k]}"
  if [ "$k" = default ]; then
    out=$(bash "$HERE/run.sh" --name "$name" "${opts[@]}" "${ts[@]}") || rc=1
  else
    out=$(VRAM_MIB=$k bash "$HERE/run.sh" --name "$name-vram$k" "${opts[@]}" "${ts[@]}") || rc=1
  fi
  while IFS= read -r l; do
    if [[ $l =~ ^KTAP\ version ]]; then ktap=1
    elif [[ $l =~ ^1\.\.([0-9]+)$ ]]; then plan=$((plan + BASH_REMATCH[1]))
    elif [[ $l =~ ^([0-9]+)\ passed,\ ([0-9]+)\ failed$ ]]; then
      pass=$((pass + BASH_REMATCH[1])); fail=$((fail + BASH_REMATCH[2]))
    elif [[ $l =~ ^(not\ )?ok\ [0-9]+(.*)$ ]]; then
      n=$((n + 1)); body+=("${BASH_REMATCH[1]}ok $n${BASH_REMATCH[2]}")
    else body+=("$l")
    fi
  done <<< "$out"
done
[ $ktap = 0 ] || echo "KTAP version 1"
[ $plan = 0 ] || echo "1..$plan"
printf '%s\n' "${body[@]}"
echo "$pass passed, $fail failed"
exit $rc
