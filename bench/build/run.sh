#!/usr/bin/env bash
# bench/build: Kiln against a plain shell script of the same tools and steps, on
# examples/server.yaml (three flavors), in one run:
#   1. kiln build --no-verify with an empty layer cache (the apt archive cache is shared and warm)
#   2. bench/build/reference.sh, the same steps by hand, in order
#   3. kiln build --no-verify again, unchanged (3 runs, median)
#   4. kiln build with the recipe's verify: boot (boots the three flavors, untimed target), then
#      again unchanged (3 runs, median): every boot must come from the boot cache
#   5. kiln build --no-verify with one more flavor (bookworm-backports kernel) on the cache of 1
#      (3 runs, median; the added flavor's layer is dropped from the cache before each)
# Targets: cold <= 0.75 x the script, unchanged with verify: boot <= 5 s, added flavor <= 25 % of cold,
# the lock and the attest step (SBOMs, provenance, SHA256SUMS) <= 5 % of cold and ~0 s unchanged.
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

median() { printf '%s\n' "$@" | sort -n | sed -n "$(( ($# + 1) / 2 ))p"; }
server=$repo/examples/server.yaml

cold=$(timed kiln-cold kiln build "$server" --out "$run/out" --cache-dir "$run/cache" --no-verify --json)
cp "$run/out/result.json" "$run/out-cold-result.json"
script=$(timed reference bash "$repo/bench/build/reference.sh" "$run/ref" "$apt/archives")
u=(); for i in 1 2 3; do u+=("$(timed "kiln-unchanged-$i" kiln build "$server" --out "$run/out" --cache-dir "$run/cache" --no-verify --json)"); done
unchanged=$(median "${u[@]}")
boots=$(timed kiln-boots kiln build "$server" --out "$run/out" --cache-dir "$run/cache")
v=(); for i in 1 2 3; do
  v+=("$(timed "kiln-unchanged-verify-$i" kiln build "$server" --out "$run/out" --cache-dir "$run/cache")")
  node -e 'const r = require(process.argv[1]); if (r.verify.length !== 3 || !r.verify.every((b) => b.ok && b.cached)) { console.error("bench: a boot was not cached:", JSON.stringify(r.verify)); process.exit(1); }' "$run/out/result.json"
done
unchanged_verify=$(median "${v[@]}")
sed 's/^kernels:$/kernels:\n  - { flavor: hwe, package: linux-image-amd64, suite: bookworm-backports }/' "$server" > "$run/server-plus.yaml"
hwe_key=$(kiln plan "$run/server-plus.yaml" --cache-dir "$run/cache" --json | node -e 'let t = ""; process.stdin.on("data", (d) => (t += d)).on("end", () => console.log(JSON.parse(t).stages.find((s) => s.name === "kernel:hwe").key))')
f=(); for i in 1 2 3; do
  rm -f "$run/cache/layers/$hwe_key" # the flavor not built yet (its old generation stays on disk, unused)
  f+=("$(timed "kiln-flavor-$i" kiln build "$run/server-plus.yaml" --out "$run/out-plus" --cache-dir "$run/cache" --no-verify)")
done
flavor=$(median "${f[@]}")

# The trust files' cost, from a run's --json events: kiln.lock (written with out/ after the last
# stage: the gap from the last stage's end to the attest step's start) plus the attest step (SBOMs,
# provenance, SHA256SUMS).
trust_seconds() {
  node -e '
    const ev = require("fs").readFileSync(process.argv[1], "utf8").split("\n").filter((l) => l.startsWith("{")).map((l) => JSON.parse(l));
    const ends = ev.filter((e) => e.type === "stage-end" && e.name !== "attest").map((e) => Date.parse(e.at));
    const start = ev.find((e) => e.type === "stage-start" && e.name === "attest");
    const end = ev.find((e) => e.type === "stage-end" && e.name === "attest");
    console.log(((Date.parse(start.at) - Math.max(...ends)) / 1000 + end.seconds).toFixed(1));' "$1"
}
trust_cold=$(trust_seconds "$run/kiln-cold.log")
trust_unchanged=$(trust_seconds "$run/kiln-unchanged-2.log")
trust_share=$(awk -v a="$trust_cold" -v b="$cold" 'BEGIN { printf "%.1f", 100 * a / b }')

ratio=$(awk -v a="$cold" -v b="$script" 'BEGIN { printf "%.2f", a / b }')
share=$(awk -v a="$flavor" -v b="$cold" 'BEGIN { printf "%.0f", 100 * a / b }')
verdict() { awk -v v="$1" -v t="$2" 'BEGIN { print (v <= t) ? "ok" : "MISSED" }'; }
cat <<TABLE
bench/build  examples/server.yaml, 3 flavors; apt archive had $debs_before .debs at start; $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)
  kiln cold, --no-verify (empty layer cache)   ${cold} s
  shell script, same steps in order            ${script} s
  ratio kiln / script                          ${ratio}    target <= 0.75  $(verdict "$ratio" 0.75)
  kiln unchanged, --no-verify                  ${unchanged} s  (median of ${u[*]})
  kiln first build with verify: boot           ${boots} s  (three boots, kept in the boot cache)
  kiln unchanged, verify: boot                 ${unchanged_verify} s  (median of ${v[*]})  target <= 5 s  $(verdict "$unchanged_verify" 5)
  kiln + one flavor (hwe)                      ${flavor} s  (median of ${f[*]}) = ${share} % of cold, target <= 25 %  $(verdict "$share" 25)
  lock + SBOMs + provenance + SHA256SUMS, cold   ${trust_cold} s = ${trust_share} % of cold, target <= 5 %  $(verdict "$trust_share" 5)
  the same, unchanged rebuild                  ${trust_unchanged} s
stages of the cold build: $(node -e 'const r = require(process.argv[1]); console.log(r.stages.map((s) => `${s.name} ${s.seconds}`).join(", "))' "$run/out-cold-result.json")
logs: $run/*.log
TABLE
