#!/usr/bin/env bash
# Runs the compiled test suite (dist/test) in two lanes side by side, each lane one test file at a
# time, so CI stays inside its budget on a 2-core machine: most integration tests wait on qemu
# under TCG, on a network server or on dpkg, and two of them together use the machine better than
# one. Lines are prefixed with their lane; the exit code is non-zero when either lane failed.
#
#   builds:  the files that build images and boot them, none of which signs anything;
#   service: the unit tests, and the rest (service, customize, streams, signing, stores).
#
# Every signing test is in one lane: streams.test.ts checks that no Kiln signing agent outlives its
# command, and would see another lane's live one. A new test file goes to the service lane unless
# it is named in BUILDS.
#
# usage: scripts/test-lanes.sh            (after tsc; `npm test` compiles and lints first)
#        KILN_TEST_LANES=1 scripts/test-lanes.sh   one lane, all files in turn
set -uo pipefail
cd "$(dirname "$0")/.."

BUILDS=(
  disk-iso verify-cache cache-integrity stage-diff build-jail apt-archives import sweep watchdog
  reproducible lock
)

builds=() service=(dist/test/unit/)
for f in dist/test/integration/*.test.js; do
  name=$(basename "$f" .test.js)
  if printf '%s\n' "${BUILDS[@]}" | grep -qx "$name"; then builds+=("$f"); else service+=("$f"); fi
done

run_lane() { # name files...
  local name=$1; shift
  node --test --test-concurrency=1 --test-reporter=spec "$@" 2>&1 | sed -u "s/^/[$name] /"
  return "${PIPESTATUS[0]}"
}

if [ "${KILN_TEST_LANES:-2}" = 1 ]; then
  run_lane all "${service[@]}" "${builds[@]}"
  exit $?
fi
run_lane builds "${builds[@]}" &
builds_pid=$!
run_lane service "${service[@]}"
service_rc=$?
wait "$builds_pid"
builds_rc=$?
echo "test lanes: builds exit $builds_rc, service exit $service_rc"
[ "$builds_rc" = 0 ] && [ "$service_rc" = 0 ]
