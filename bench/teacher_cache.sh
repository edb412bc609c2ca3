#!/usr/bin/env bash
# Online KD against the offline teacher cache on the quickstart's distilled run:
# online, then filling an empty cache, then reading it; tokens/s (median of the steps
# after two warm-up steps, from metrics.jsonl), the held-out perplexity, the cache's
# B/token and size, and the ratios. About 11 minutes on 2 cores; keep the machine idle.
# Usage: bench/teacher_cache.sh [--steps N]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
./setup.sh >/dev/null
STEPS=150
[ "${1:-}" = "--steps" ] && STEPS=$2
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
CACHE="teacher_cache=topk(64, path=\"$WORK/cache\"), "
variant online ""
variant fill "$CACHE"
variant read "$CACHE"
"$PY" - "$WORK/bench/runs" <<'PY'
import json, statistics, sys, pathlib
root = pathlib.Path(sys.argv[1])
fig = {}
for name in ["online", "fill", "read"]:
    rows = [json.loads(l) for l in (root / name / "metrics.jsonl").read_text().splitlines() if l.strip()]
    tps = [r["tokens_per_s"] for r in rows if "loss" in r][2:]
    ppl = [r["val_ppl"] for r in rows if "val_ppl" in r][-1]
    fig[name] = (statistics.median(tps), ppl)
    print(f"{name:7s} tokens_per_s={fig[name][0]:.1f} val_ppl={ppl:.3f}")
(o, op), (f, fp), (r, rp) = fig["online"], fig["fill"], fig["read"]
print(f"read/online = {r / o:.2f}x (target >= 2.5)  fill/online = {f / o:.2f}x (target >= 0.90)")
print(f"read ppl vs online: {100 * (rp - op) / op:+.2f}% (target within 2%)")
PY
