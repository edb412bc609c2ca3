#!/usr/bin/env bash
# kdl's distillation step against the plain-PyTorch peer, same torch build, same
# threads, one after the other. Usage: bench/kd_step.sh [--threads N]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
./setup.sh
THREADS=$(nproc)
[ "${1:-}" = "--threads" ] && THREADS=$2
PY=$(sed -n 's/^KDL_PYTHON = { value = "\(.*\)", relative = false }/\1/p' .cargo/libtorch.toml)
PEER=${KDL_PEER:-../shared/bench/peer_kd_step.py}
cargo build --release --quiet
kdl_tps=$(RAYON_NUM_THREADS=$THREADS OMP_NUM_THREADS=$THREADS ./target/release/kdl run bench/kd_step.kd | tail -1 | sed 's/tokens_per_s=//')
peer_out=$("$PY" "$PEER" --threads "$THREADS" | tail -1)
echo "kdl  tokens_per_s=$kdl_tps"
echo "peer $peer_out"
"$PY" - "$kdl_tps" "$peer_out" <<'PY'
import json, re, sys
kdl = float(sys.argv[1])
text = sys.argv[2]
try:
    peer = float(json.loads(text)["tokens_per_s"])
except Exception:
    peer = float(re.search(r"tokens_per_s[=:\s\"]+([0-9.]+)", text).group(1))
print(f"ratio kdl/peer = {kdl / peer:.2f}x (target >= 1.3)")
PY
