#!/usr/bin/env bash
# Online KD against the offline teacher cache on the quickstart's distilled run:
# online, then for each cache mode filling an empty cache and reading it; tokens/s
# (median of the steps after two warm-up steps, from metrics.jsonl), the held-out
# perplexity, the cache's B/token and size, and the ratios. About 18 minutes on 2 cores
# for both modes; keep the machine idle.
# Usage: bench/teacher_cache.sh [--steps N] [--modes "topk(64) sample(50)"]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
./setup.sh >/dev/null
STEPS=150
MODES="topk(64) sample(50)"
while [ $# -gt 0 ]; do
  case $1 in
    --steps) STEPS=$2; shift 2 ;;
    --modes) MODES=$2; shift 2 ;;
    *) echo "usage: bench/teacher_cache.sh [--steps N] [--modes \"topk(64) sample(50)\"]" >&2; exit 2 ;;
  esac
done
PY=$(sed -n 's/^KDL_PYTHON = { value = "\(.*\)", relative = false }/\1/p' .cargo/libtorch.toml)
cargo build --release --quiet
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK/bench"
ln -s "$PWD/examples" "$WORK/examples"
variant() { # NAME CACHE_ARG
  sed -e "s/steps=150/steps=$STEPS/" -e "s|out=\"runs/teacher-cache-bench\"|$2out=\"runs/$1\"|" bench/teacher_cache.kd > "$WORK/bench/$1.kd"
  ./target/release/kdl run "$WORK/bench/$1.kd" > "$WORK/$1.log" 2>&1 || { cat "$WORK/$1.log"; exit 1; }
  grep -h 'teacher cache' "$WORK/$1.log" | tail -1 || true
}
variant online ""
NAMES="online"
for mode in $MODES; do
  name=$(echo "$mode" | tr -d "()")
  cache="teacher_cache=${mode%)}, path=\"$WORK/cache\"), "
  variant "fill-$name" "$cache"
  variant "read-$name" "$cache"
  NAMES="$NAMES fill-$name read-$name"
done
"$PY" - "$WORK/bench/runs" $NAMES <<'PY'
import json, statistics, sys, pathlib
root = pathlib.Path(sys.argv[1])
fig = {}
for name in sys.argv[2:]:
    rows = [json.loads(l) for l in (root / name / "metrics.jsonl").read_text().splitlines() if l.strip()]
    tps = [r["tokens_per_s"] for r in rows if "loss" in r][2:]
    ppl = [r["val_ppl"] for r in rows if "val_ppl" in r][-1]
    fig[name] = (statistics.median(tps), ppl)
    print(f"{name:12s} tokens_per_s={fig[name][0]:.1f} val_ppl={ppl:.3f}")
o, op = fig["online"]
for name in sys.argv[2:]:
    if name.startswith("fill-"):
        mode = name[5:]
        (f, fp), (r, rp) = fig[name], fig["read-" + mode]
        print(f"{mode}: read/online = {r / o:.2f}x (target >= 2.5)  fill/online = {f / o:.2f}x (target >= 0.90)  read ppl vs online {100 * (rp - op) / op:+.2f}% (target within 2%)")
PY
