#!/usr/bin/env bash
# train(checkpoint_layers=true) against the plain step on the same student, one after
# the other: peak resident memory of the whole process (GNU time's %M) and tokens/s.
# Usage: bench/checkpoint_memory.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
./setup.sh >/dev/null
cargo build --release --quiet
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK/bench" && ln -s "$PWD/examples" "$WORK/examples"
row() { # CKPT
  sed "s/@CKPT@/$1/" bench/checkpoint_memory.kd > "$WORK/bench/ckpt-$1.kd"
  local tps
  tps=$( { /usr/bin/time -f "peak_rss_kb=%M" ./target/release/kdl run "$WORK/bench/ckpt-$1.kd" | tail -1; } 2>"$WORK/time-$1" )
  printf '%-24s %10s MiB peak  %s\n' "checkpoint_layers=$1" "$(( $(sed -n 's/^peak_rss_kb=//p' "$WORK/time-$1") / 1024 ))" "$tps"
}
row false
row true
