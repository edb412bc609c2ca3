#!/usr/bin/env bash
# kdl's distillation step against the plain-PyTorch peer (../shared/bench/peer_kd_step.py),
# same torch build, same threads, one after the other, at the peer's default shapes
# (teacher 8 × 512, student 4 × 256, vocab 8,192, batch 8 × 256). Rows: kdl's defaults,
# kdl with teacher_dtype="f32" and "bf16"; the peer eager f32, eager with a bf16
# teacher, --amp, torch.compile, and torch.compile with a bf16 teacher. Prints one
# table with each row's ratio to the best peer row, and the issue-14 targets.
# Usage: bench/kd_step.sh [--threads N]   (about 6 minutes on 2 cores)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
./setup.sh >/dev/null
THREADS=$(nproc)
[ "${1:-}" = "--threads" ] && THREADS=$2
export RAYON_NUM_THREADS=$THREADS OMP_NUM_THREADS=$THREADS
PY=$(sed -n 's/^KDL_PYTHON = { value = "\(.*\)", relative = false }/\1/p' .cargo/libtorch.toml)
PEER=${KDL_PEER:-../shared/bench/peer_kd_step.py}
cargo build --release --quiet
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK/bench" && ln -s "$PWD/examples" "$WORK/examples"
RESULTS="$WORK/results.txt"

kdl_row() { # NAME [EXTRA TRAIN ARGUMENTS]
  sed "s/bench=true)/bench=true${2:-})/" bench/kd_step.kd > "$WORK/bench/kd.kd"
  local tps
  tps=$(./target/release/kdl run "$WORK/bench/kd.kd" 2>"$WORK/err" | tail -1 | sed -n 's/^tokens_per_s=//p')
  [ -n "$tps" ] || { tail -5 "$WORK/err" >&2; tps=failed; }
  echo "kdl|$1|$tps" >> "$RESULTS"
}
peer_row() { # NAME ARGS...
  local name=$1 out
  shift
  out=$("$PY" "$PEER" --threads "$THREADS" "$@" 2>"$WORK/err" | tail -1) || { tail -5 "$WORK/err" >&2; out='{"tokens_per_s": "failed"}'; }
  echo "peer|$name|$("$PY" -c 'import json,sys; print(json.loads(sys.argv[1])["tokens_per_s"])' "$out")" >> "$RESULTS"
}

kdl_row "kdl defaults"
kdl_row "kdl teacher_dtype=f32" ', teacher_dtype="f32"'
kdl_row "kdl teacher_dtype=bf16" ', teacher_dtype="bf16"'
peer_row "peer eager f32"
peer_row "peer eager, teacher bf16" --teacher-bf16
peer_row "peer --amp" --amp
peer_row "peer torch.compile f32" --impl compile
peer_row "peer torch.compile + teacher bf16" --impl compile --teacher-bf16

./target/release/kdl info | sed -n '/^device\|^bf16/p'
"$PY" - "$RESULTS" "$THREADS" <<'PY'
import sys
rows = [line.rstrip("\n").split("|") for line in open(sys.argv[1])]
value = lambda v: float(v) if v.replace(".", "", 1).isdigit() else None
peers = [value(v) for who, _, v in rows if who == "peer" and value(v)]
best = max(peers) if peers else None
print(f"\n{sys.argv[2]} threads, teacher 8 x 512, student 4 x 256, vocab 8192, batch 8 x 256")
print(f"{'configuration':36s} {'tokens/s':>10s} {'x best peer':>12s}")
for who, name, v in rows:
    x = value(v)
    ratio = f"{x / best:.2f}x" if x and best else "-"
    print(f"{name:36s} {v if x is None else f'{x:,.0f}':>10s} {ratio:>12s}")
get = lambda name: next((value(v) for _, n, v in rows if n == name), None)
d, f, e = get("kdl defaults"), get("kdl teacher_dtype=f32"), get("peer eager f32")
if d and best:
    print(f"target: kdl defaults >= 1.0x the best peer: {d / best:.2f}x")
if f and e:
    print(f"target: kdl f32 >= 1.3x peer eager f32: {f / e:.2f}x")
PY
