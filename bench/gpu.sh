#!/usr/bin/env bash
# Issue 14's GPU table: the distillation step (teacher of SmolLM2-135M's shape, student
# 4 × 256, vocab 49,152, batch 16 × 512) in tokens/s and MFU, kdl against the plain-PyTorch
# peer (eager, --amp, torch.compile), then decode tokens/s. One prepared run, a few
# minutes on one H100/H200; prints one table. MFU counts matmul FLOPs only (6·N per
# trained token for the student, 2·N for the teacher's forward, N = non-embedding
# weights + the output head) against the GPU's dense bf16 peak (PEAK_TFLOPS, else read
# off nvidia-smi's name: H100/H200 989).
# Usage: bench/gpu.sh            (on a GPU machine)
#        DEVICE=cpu STEPS=2 BATCH=2 SEQ=64 DECODE=8 bench/gpu.sh   (a smoke run anywhere)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
./setup.sh >/dev/null
DEVICE=${DEVICE:-cuda}
STEPS=${STEPS:-40}
BATCH=${BATCH:-16}
SEQ=${SEQ:-512}
DECODE=${DECODE:-256}
PY=$(sed -n 's/^KDL_PYTHON = { value = "\(.*\)", relative = false }/\1/p' .cargo/libtorch.toml)
PEER=${KDL_PEER:-../shared/bench/peer_kd_step.py}
cargo build --release --quiet
KDL=./target/release/kdl
"$KDL" info
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK/bench" && ln -s "$PWD/examples" "$WORK/examples"
RESULTS="$WORK/results.txt"

kdl_row() { # NAME TEACHER_DTYPE GRAPH
  sed -e "s/@STEPS@/$STEPS/" -e "s/@BATCH@/$BATCH/" -e "s/@SEQ@/$SEQ/" -e "s/@TEACHER_DTYPE@/$2/" -e "s/@GRAPH@/$3/" bench/gpu_kd_step.kd > "$WORK/bench/$1.kd"
  local tps
  tps=$("$KDL" run --device "$DEVICE" "$WORK/bench/$1.kd" 2>"$WORK/$1.err" | tail -1 | sed -n 's/^tokens_per_s=//p')
  [ -n "$tps" ] || { tail -5 "$WORK/$1.err" >&2; tps=failed; }
  echo "kd|$1|$tps" >> "$RESULTS"
}
peer_row() { # NAME ARGS...
  local name=$1 out
  shift
  out=$("$PY" "$PEER" --device "$DEVICE" --steps "$STEPS" --batch "$BATCH" --seq "$SEQ" --vocab 49152 \
    --teacher 30,576,9,3,1536 --student 4,256,4,4,704 "$@" 2>"$WORK/$name.err" | tail -1) || { tail -5 "$WORK/$name.err" >&2; out='{"tokens_per_s": "failed"}'; }
  echo "kd|$name|$("$PY" -c 'import json,sys; print(json.loads(sys.argv[1])["tokens_per_s"])' "$out")" >> "$RESULTS"
}
decode_row() { # NAME GRAPH: tokens/s of greedy decode on the teacher's shape, from two lengths
  local t1 t2 code
  code="let m = llama(layers=30, dim=576, heads=9, kv_heads=3, ffn=1536, vocab=49152, max_seq=1024, seed=1)
print generate(m, [1, 2, 3, 4], max=@N@, temp=0, stream=false, graph=\"$2\")"
  t1=$( { /usr/bin/time -f %e "$KDL" run --device "$DEVICE" -e "${code/@N@/1}" >/dev/null; } 2>&1 | tail -1)
  t2=$( { /usr/bin/time -f %e "$KDL" run --device "$DEVICE" -e "${code/@N@/$((DECODE + 1))}" >/dev/null; } 2>&1 | tail -1)
  echo "decode|$1|$("$PY" -c "print($DECODE / max($t2 - $t1, 1e-9))")" >> "$RESULTS"
}

kdl_row "kdl eager f32" f32 off
kdl_row "kdl bf16 teacher" bf16 off
kdl_row "kdl graph + bf16" bf16 on
peer_row "peer eager f32"
peer_row "peer --amp" --amp
peer_row "peer torch.compile" --impl compile
decode_row "kdl decode eager" off
decode_row "kdl decode graph" on

"$PY" - "$RESULTS" "$DEVICE" "$BATCH" "$SEQ" <<'PY'
import os, subprocess, sys
results, device, batch, seq = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
def params(layers, dim, heads, kv, ffn, vocab=49152):
    hd = dim // heads
    return layers * (dim * heads * hd + 2 * dim * kv * hd + heads * hd * dim + 3 * dim * ffn) + vocab * dim
flops_per_token = 6 * params(4, 256, 4, 4, 704) + 2 * params(30, 576, 9, 3, 1536)
peak = float(os.environ.get("PEAK_TFLOPS", "0")) * 1e12
if not peak and device.startswith("cuda"):
    try:
        name = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True).stdout
        peak = 989e12 if ("H100" in name or "H200" in name) else 0.0
    except OSError:
        pass
rows = [line.rstrip("\n").split("|", 2) for line in open(results)]
print(f"\n{device}, batch {batch} x {seq}, {flops_per_token / 1e9:.2f} GFLOP per trained token")
print(f"{'configuration':28s} {'tokens/s':>12s} {'MFU':>7s}")
for kind, name, value in rows:
    try:
        tps = float(value)
    except ValueError:
        print(f"{name:28s} {value}")
        continue
    mfu = f"{100 * tps * flops_per_token / peak:.1f}%" if kind == "kd" and peak else "-"
    print(f"{name:28s} {tps:12.1f} {mfu:>7s}")
PY
