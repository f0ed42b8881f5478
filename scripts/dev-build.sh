#!/usr/bin/env bash
# Build the extension in place (python/slea/_core.abi3.so) without installing anything, so that
# `PYTHONPATH=python python -m pytest` tests this checkout. Used for development in worktrees
# that share one virtual environment. Usage: scripts/dev-build.sh [--debug]
set -euo pipefail
cd "$(dirname "$0")/.."
profile=release
[ "${1:-}" = "--debug" ] && profile=dev
export PYO3_PYTHON="${PYO3_PYTHON:-$(command -v python)}"
export PYO3_BUILD_EXTENSION_MODULE=1   # do not link libpython (as maturin does)
cargo build -p slea-py --profile "$profile" --message-format=short
dir=release; [ "$profile" = dev ] && dir=debug
target="${CARGO_TARGET_DIR:-target}"
cp -f "$target/$dir/lib_core.so" python/slea/_core.abi3.so.tmp
mv -f python/slea/_core.abi3.so.tmp python/slea/_core.abi3.so
echo "built python/slea/_core.abi3.so ($profile)"
