#!/usr/bin/env bash
# Runs every documented example, the slow ones too (`# doc: slow`: training on the real
# teacher), and checks each output against the docs — what CI's tests/docs.rs does for
# the fast ones. Usage: bench/docs.sh   (after ./setup.sh)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
KDL_DOCS_SLOW=1 cargo test --release --test docs -- --nocapture
