#!/usr/bin/env bash
# bench/iso: a site's live ISO with `kiln iso OUT --seed DIR` against a full rebuild, on
# examples/disk-iso.yaml (one flavor; squashfs, qcow2 and ISO; no boot verification):
#   1. kiln build with an empty layer cache (the apt archive cache is shared and warm): a full rebuild
#   2. kiln build again, unchanged (everything from the cache)
#   3. kiln iso OUT --seed bench/iso/site, three times (re-master: squashfs, kernel, initrd unchanged)
# Targets: kiln iso --seed ≤ 10 s and ≤ 2 % of the full rebuild.
# usage (root, after scripts/setup.sh): bench/iso/run.sh   [KILN_BENCH_DIR=/var/tmp/kiln-bench-iso]
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
base=${KILN_BENCH_DIR:-/var/tmp/kiln-bench-iso}
apt=${KILN_BENCH_APT:-/var/tmp/kiln-bench/apt}
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

full=$(timed build-cold kiln build "$repo/examples/disk-iso.yaml" --out "$run/out" --cache-dir "$run/cache" --no-verify)
cp "$run/out/result.json" "$run/result-cold.json"
unchanged=$(timed build-unchanged kiln build "$repo/examples/disk-iso.yaml" --out "$run/out" --cache-dir "$run/cache" --no-verify)
seeds=()
for i in 1 2 3; do seeds+=("$(timed "iso-seed-$i" kiln iso "$run/out" --seed "$repo/bench/iso/site" --cache-dir "$run/cache")"); done
seed=$(printf '%s\n' "${seeds[@]}" | sort -n | sed -n 2p) # the median of three
remaster=$(node -e 'const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")); console.log(r.seeded.at(-1).seed.seconds.toFixed(1))' "$run/out/result.json")
iso_mib=$(du -m "$run/out/generic/live-site.iso" | cut -f1)
share=$(awk -v a="$seed" -v b="$full" 'BEGIN { printf "%.1f", 100 * a / b }')
# shellcheck disable=SC2016 # the JavaScript template is not shell
stage() { node -e 'const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")); console.log(r.stages.map((s) => `${s.name} ${s.seconds}`).join(", "))' "$1"; }
verdict() { awk -v v="$1" -v t="$2" 'BEGIN { print (v <= t) ? "ok" : "MISSED" }'; }
cat <<TABLE
bench/iso  examples/disk-iso.yaml, squashfs + qcow2 + ISO, no verify
  kiln build, empty layer cache (full rebuild)  ${full} s
  kiln build, unchanged                         ${unchanged} s
  kiln iso --seed (median of ${seeds[*]})      ${seed} s   target <= 10 s  $(verdict "$seed" 10)
    of which xorriso re-master                  ${remaster} s   (ISO ${iso_mib} MiB)
  kiln iso --seed / full rebuild                ${share} %   target <= 2 %  $(verdict "$share" 2)
stages of the full rebuild: $(stage "$run/result-cold.json")
logs: $run/*.log
TABLE
