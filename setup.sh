#!/usr/bin/env bash
# Installs what kdl needs to build and run, once per user, and is safe to re-run.
#
# libtorch comes from PyPI's torch wheel (tch 0.24 pairs with torch 2.11.0). It is
# installed into a per-user cache outside the clone so later clones and CI runs
# reuse it; a python that already has exactly torch 2.11.0 (the GPU machines) is
# reused instead. The result is .cargo/libtorch.toml, which sets LIBTORCH for
# torch-sys; build.rs bakes an rpath to its lib/ into every binary.
#
# Usage: ./setup.sh            (quiet when everything is already there)
#        KDL_CACHE=/path ./setup.sh
set -euo pipefail

TORCH_VERSION=2.11.0
# transformers makes the engine's reference fixtures (tests/fixtures/*.py).
TRANSFORMERS_VERSION=5.24.0
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE="${KDL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kdl}"
VENV="$CACHE/torch-$TORCH_VERSION"
MARK="$VENV/.kdl-complete"

say() { printf 'setup: %s\n' "$*" >&2; }

# Prints the torch package directory of a python whose torch is exactly our version.
torch_dir_of() {
  "$1" - "$TORCH_VERSION" <<'PY' 2>/dev/null
import sys, os
try:
    import torch
except Exception:
    sys.exit(1)
if torch.__version__.split("+")[0] != sys.argv[1]:
    sys.exit(1)
d = os.path.dirname(torch.__file__)
if not os.path.exists(os.path.join(d, "lib", "libtorch_cpu.so")):
    sys.exit(1)
print(d)
PY
}

find_existing_torch() {
  local py
  for py in "${KDL_PYTHON:-}" /opt/torch/.venv/bin/python "$(command -v python3 || true)"; do
    [ -n "$py" ] && [ -x "$py" ] || continue
    if dir=$(torch_dir_of "$py"); then echo "$py|$dir"; return 0; fi
  done
  return 1
}

install_into_cache() {
  mkdir -p "$CACHE"
  # One installer at a time: concurrent clones/CI runs wait here instead of
  # corrupting each other's venv.
  exec 9>"$CACHE/torch-$TORCH_VERSION.lock"
  flock 9
  if [ -f "$MARK" ]; then return 0; fi
  say "installing torch==$TORCH_VERSION into $VENV (about 4.7 GB, a few minutes, once per machine)"
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "torch==$TORCH_VERSION"
  # Only a verified install is marked complete; a half-done one is redone next time.
  torch_dir_of "$VENV/bin/python" >/dev/null || { say "torch $TORCH_VERSION did not import after install"; exit 1; }
  touch "$MARK"
  say "torch $TORCH_VERSION installed"
}

if [ -f "$MARK" ] && dir=$(torch_dir_of "$VENV/bin/python"); then
  PY="$VENV/bin/python"
elif found=$(find_existing_torch); then
  PY="${found%%|*}"; dir="${found#*|}"
else
  install_into_cache
  PY="$VENV/bin/python"; dir=$(torch_dir_of "$PY")
fi

# Reference checkpoints and logits for the engine parity tests, made once per version
# of the fixture script and kept in the cache.
FIX=""
make_fixtures() {
  local script="$ROOT/tests/fixtures/llama_reference.py"
  local sum
  sum=$(sha256sum "$script" | cut -c1-16)
  FIX="$CACHE/fixtures/llama-$sum"
  [ -f "$FIX/.kdl-complete" ] && return 0
  mkdir -p "$CACHE"
  exec 8>"$CACHE/fixtures.lock"
  flock 8
  [ -f "$FIX/.kdl-complete" ] && return 0
  if ! "$PY" -c "import transformers" 2>/dev/null; then
    if [ "$PY" != "$VENV/bin/python" ]; then
      say "$PY has no transformers: engine parity fixtures not made (tests that need them will say so)"
      FIX=""
      return 0
    fi
    say "installing transformers==$TRANSFORMERS_VERSION for the reference fixtures"
    "$PY" -m pip install --quiet --disable-pip-version-check "transformers==$TRANSFORMERS_VERSION"
  fi
  say "making engine reference fixtures in $FIX"
  rm -rf "$FIX.tmp"
  "$PY" "$script" "$FIX.tmp" >/dev/null 2>&1 || { say "the fixture script failed: run $PY $script /tmp/x to see why"; exit 1; }
  rm -rf "$FIX" && mv "$FIX.tmp" "$FIX" && touch "$FIX/.kdl-complete"
}
make_fixtures

# Rewritten only when it changes, so cargo does not rebuild torch-sys for nothing.
conf="$ROOT/.cargo/libtorch.toml"
want=$(printf '# Written by ./setup.sh: the torch %s install kdl links against.\n[env]\nLIBTORCH = { value = "%s", relative = false }\nKDL_PYTHON = { value = "%s", relative = false }\n' "$TORCH_VERSION" "$dir" "$PY")
if [ -n "$FIX" ]; then
  want="$want"$(printf '\nKDL_FIXTURES = { value = "%s", relative = false }' "$FIX")
fi
if [ ! -f "$conf" ] || [ "$(cat "$conf")" != "$want" ]; then
  printf '%s\n' "$want" > "$conf"
fi
