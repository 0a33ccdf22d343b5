#!/usr/bin/env bash
# `make host-test`: cargo test --workspace (then mediated_sched in release), its output shown
# live and kept in LOG; exits with cargo's status.
#
# The output goes to LOG directly, never through a pipe: a process a test leaves behind (a
# model server, say) would keep the pipe's write end open, and the reader (tee) and with it
# `make test` would wait for that orphan forever. A file has no reader to block; tail follows
# it only while cargo runs. HOST_TEST_TIMEOUT (seconds, default 1800: a cold build included)
# bounds the whole run; on expiry timeout signals its process group, which holds cargo, the
# test binaries and whatever they started.
#
# Usage: host-test.sh LOG
set -u
log=${1:?usage: host-test.sh LOG}
limit=${HOST_TEST_TIMEOUT:-1800}
# Grace period between timeout's TERM and KILL: enough for cargo to stop its test binaries.
kill_after=10

: > "$log"   # tail needs the file before cargo's redirection creates it
# Then the scheduling tests again in release, where their figures (shares, F, latency bounds,
# GPU-time accounting) are asserted (a debug build of the model is too slow to measure).
timeout -k "$kill_after" "$limit" sh -c 'cargo test -q --workspace && cargo test -q --release -p gpuvm-guest-driver --test mediated_sched' < /dev/null > "$log" 2>&1 &
pid=$!
# timeout runs in its own process group, so Ctrl-C on make reaches this shell and tail, not
# cargo: pass it on.
trap 'kill -TERM "$pid" 2>/dev/null' INT TERM HUP
tail -n +1 -f --pid="$pid" "$log"
wait "$pid"; rc=$?
# A trapped signal ends `wait` early with a status above 128; wait again for cargo's own.
while kill -0 "$pid" 2>/dev/null; do wait "$pid"; rc=$?; done
# timeout's status when the limit expired.
timed_out=124
if [ "$rc" = "$timed_out" ]; then
  echo "host-test: cargo test did not finish within ${limit}s (HOST_TEST_TIMEOUT); log: $log" >&2
elif [ "$rc" != 0 ]; then
  echo "host-test: cargo test failed (exit $rc); log: $log" >&2
fi
exit "$rc"
