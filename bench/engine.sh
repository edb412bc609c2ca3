#!/usr/bin/env bash
# The engine benchmark: kdl (cargo bench --bench engine) and transformers
# (bench/transformers_smollm2.py) on the same SmolLM2-135M GGUF, the same torch build and
# the same thread count, one after the other; prints both lines and the ratios.
# Usage: bench/engine.sh [--threads N] [--dtype bf16]   (keep the machine otherwise idle)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
./setup.sh
THREADS=$(nproc)
DTYPE=f32
while [ $# -gt 0 ]; do
  case "$1" in
    --threads) THREADS=$2; shift 2 ;;
    --dtype) DTYPE=$2; shift 2 ;;
    *) echo "usage: bench/engine.sh [--threads N] [--dtype f32|bf16]" >&2; exit 2 ;;
  esac
done
conf=.cargo/libtorch.toml
value() { sed -n "s/^$1 = { value = \"\\(.*\\)\", relative = false }/\\1/p" "$conf"; }
PY=$(value KDL_PYTHON)
GGUF=$(value KDL_SMOLLM2)
cargo bench --quiet --bench engine -- --threads "$THREADS" --dtype "$DTYPE" | tee /tmp/kdl-bench-$$.txt
"$PY" bench/transformers_smollm2.py "$GGUF" --threads "$THREADS" | tee -a /tmp/kdl-bench-$$.txt
"$PY" - /tmp/kdl-bench-$$.txt <<'PY'
import json, sys
rows = {}
for line in open(sys.argv[1]):
    if line.startswith("{"):
        d = json.loads(line)
        rows[d["engine"]] = d
k, t = rows["kdl"], rows["transformers"]
print(f"ratio kdl/transformers ({k['threads']} threads, kdl {k.get('dtype', 'f32')}, transformers f32):")
print(f"  forward  {k['forward_tokens_per_s'] / t['forward_tokens_per_s']:.2f}x  (target >= 1.0)")
print(f"  generate {k['generate_tokens_per_s'] / t['generate_tokens_per_s']:.2f}x  (target >= 1.5)")
print(f"  load     {k['load_s']:.2f} s vs {t['load_s']:.2f} s  (target < 2 s)")
PY
rm -f /tmp/kdl-bench-$$.txt
