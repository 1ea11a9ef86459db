#!/usr/bin/env bash
# bench/build: Kiln against a plain shell script of the same tools and steps, on
# examples/server.yaml (three flavors, no boot verification), in one run:
#   1. kiln build with an empty layer cache (the apt archive cache is shared and warm)
#   2. bench/build/reference.sh, the same steps by hand
#   3. kiln build again, unchanged
#   4. kiln build with one more flavor (bookworm-backports kernel), on the cache of 1
# Targets: cold ≤ 1.10 × the script, unchanged ≤ 5 s, added flavor ≤ 35 % of cold.
# usage (root, after scripts/setup.sh): bench/build/run.sh   [KILN_BENCH_DIR=/var/tmp/kiln-bench]
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
base=${KILN_BENCH_DIR:-/var/tmp/kiln-bench}
apt=$base/apt
run=$base/run
rm -rf "$run"; mkdir -p "$run/cache" "$apt/archives"
ln -s "$apt" "$run/cache/apt"
kiln() { node "$repo/dist/src/cli/main.js" "$@"; }
now() { date +%s.%N; }
timed() { # name cmd...: runs cmd, logs to $run/NAME.log, prints seconds
  local name=$1; shift; local t0; t0=$(now)
  "$@" > "$run/$name.log" 2>&1 || { echo "bench: $name failed, see $run/$name.log" >&2; tail -20 "$run/$name.log" >&2; exit 1; }
  awk -v a="$t0" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'
}
debs_before=$(find "$apt/archives" -name '*.deb' | wc -l)

cold=$(timed kiln-cold kiln build "$repo/examples/server.yaml" --out "$run/out" --cache-dir "$run/cache" --no-verify)
script=$(timed reference bash "$repo/bench/build/reference.sh" "$run/ref" "$apt/archives")
unchanged=$(timed kiln-unchanged kiln build "$repo/examples/server.yaml" --out "$run/out" --cache-dir "$run/cache" --no-verify)
sed 's/^kernels:$/kernels:\n  - { flavor: hwe, package: linux-image-amd64, suite: bookworm-backports }/' "$repo/examples/server.yaml" > "$run/server-plus.yaml"
flavor=$(timed kiln-flavor kiln build "$run/server-plus.yaml" --out "$run/out-plus" --cache-dir "$run/cache" --no-verify)

ratio=$(awk -v a="$cold" -v b="$script" 'BEGIN { printf "%.2f", a / b }')
share=$(awk -v a="$flavor" -v b="$cold" 'BEGIN { printf "%.0f", 100 * a / b }')
verdict() { awk -v v="$1" -v t="$2" 'BEGIN { print (v <= t) ? "ok" : "MISSED" }'; }
cat <<TABLE
bench/build  examples/server.yaml, 3 flavors, no verify; apt archive had $debs_before .debs at start
  kiln cold (empty layer cache)   ${cold} s
  shell script, same steps        ${script} s
  ratio kiln / script             ${ratio}    target <= 1.10  $(verdict "$ratio" 1.10)
  kiln unchanged rebuild          ${unchanged} s    target <= 5 s   $(verdict "$unchanged" 5)
  kiln + one flavor (hwe)         ${flavor} s   = ${share} % of cold, target <= 35 %  $(verdict "$share" 35)
logs: $run/*.log
TABLE
