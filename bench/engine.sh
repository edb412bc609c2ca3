#!/usr/bin/env bash
# The engine benchmark: kdl (cargo bench --bench engine) and transformers
# (bench/transformers_smollm2.py) on the same SmolLM2-135M GGUF, the same torch build and
# the same thread count, one after the other; prints both lines and the ratios.
# Usage: bench/engine.sh [--threads N] [--dtype bf16] [--weights int8]   (keep the machine
# otherwise idle). --weights int8 decodes from the int8 copy generate(weights="int8") uses;
# the line before the ratios is kdl's own f32 decode in the same run, for the int8 gain.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
./setup.sh
THREADS=$(nproc)
DTYPE=f32
WEIGHTS=model
while [ $# -gt 0 ]; do
  case "$1" in
    --threads) THREADS=$2; shift 2 ;;
    --dtype) DTYPE=$2; shift 2 ;;
    --weights) WEIGHTS=$2; shift 2 ;;
    *) echo "usage: bench/engine.sh [--threads N] [--dtype f32|bf16] [--weights int8]" >&2; exit 2 ;;
  esac
done
conf=.cargo/libtorch.toml
value() { sed -n "s/^$1 = { value = \"\\(.*\\)\", relative = false }/\\1/p" "$conf"; }
PY=$(value KDL_PYTHON)
GGUF=$(value KDL_SMOLLM2)
cargo bench --quiet --bench engine -- --threads "$THREADS" --dtype "$DTYPE" --weights "$WEIGHTS" | tee /tmp/kdl-bench-$$.txt
"$PY" bench/transformers_smollm2.py "$GGUF" --threads "$THREADS" | tee -a /tmp/kdl-bench-$$.txt
"$PY" - /tmp/kdl-bench-$$.txt <<'PY'
import json, sys
rows = {}
for line in open(sys.argv[1]):
    if line.startswith("{"):
        d = json.loads(line)
        rows[d["engine"]] = d
k, t = rows["kdl"], rows["transformers"]
print(f"ratio kdl/transformers ({k['threads']} threads, kdl {k.get('dtype', 'f32')} with {k.get('weights', 'f32')} decode weights, transformers f32):")
print(f"  forward  {k['forward_tokens_per_s'] / t['forward_tokens_per_s']:.2f}x  (target >= 1.0)")
print(f"  generate {k['generate_tokens_per_s'] / t['generate_tokens_per_s']:.2f}x  (target >= 1.5)")
print(f"  load     {k['load_s']:.2f} s vs {t['load_s']:.2f} s  (target < 2 s)")
if k.get("own_weights_generate_tokens_per_s"):
    print(f"  int8 decode vs kdl's own f32 decode, same run: {k['generate_tokens_per_s'] / k['own_weights_generate_tokens_per_s']:.2f}x (packing took {k['pack_s']:.2f} s, once per model)")
PY
rm -f /tmp/kdl-bench-$$.txt
