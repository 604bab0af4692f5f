#!/usr/bin/env bash
# Build the native ExecuTorch runner (runner/, docs/native_runner.md) against an executorch wheel.
#
#   scripts/build_runner.sh [host|aarch64|fetch] [BUILD_DIR]
#
# host:    this machine's compiler, the executorch package installed in .venv.
# aarch64: Debian's aarch64-linux-gnu-g++ (runner/aarch64-linux-gnu.cmake) against the
#          manylinux_2_28_aarch64 wheel of the same executorch version, downloaded once from PyPI
#          into ~/.cache/edge/wheels (EDGE_WHEEL_CACHE) and unpacked beside it.
# fetch:   only that download (set-up: `make test` fetches before the tests, which then run with
#          EDGE_NO_DOWNLOAD=1 and fail instead of reaching the network).
# BUILD_DIR defaults to runner/build-<target> in this checkout (git-ignored; a CMake cache names its
# source folder, so one shared build folder would break a second clone). Builds are incremental:
# a second call with nothing changed only checks. The last line on stdout is the binary's path; the
# shared libraries it needs are copied beside it (run path $ORIGIN), so BUILD_DIR/edge_runner and
# BUILD_DIR/lib*.so are what a device needs.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
TARGET="${1:-host}"
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/edge"
BUILD="${2:-$ROOT/runner/build-$TARGET}"
PY="${EDGE_PYTHON:-$ROOT/.venv/bin/python}"
[ -x "$PY" ] || PY="$(command -v python3)"
CMAKE="$ROOT/.venv/bin/cmake"
[ -x "$CMAKE" ] || CMAKE="$(command -v cmake || true)"
[ -n "$CMAKE" ] || { echo "build_runner: cmake not found (pip install cmake, see requirements.txt)" >&2; exit 2; }

wheel_path() {
  VERSION="${EXECUTORCH_VERSION:-$("$PY" -c 'from importlib.metadata import version; print(version("executorch"))')}"
  WHEELS="${EDGE_WHEEL_CACHE:-$CACHE/wheels}"
  # The wheel's libraries do not depend on the Python version; cp311 is the one pinned here.
  WHEEL="$WHEELS/executorch-$VERSION-cp311-cp311-manylinux_2_28_aarch64.whl"
}

fetch_wheel() {
  wheel_path
  [ -f "$WHEEL" ] && return 0
  if [ "${EDGE_NO_DOWNLOAD:-0}" = 1 ]; then
    echo "build_runner: $WHEEL is missing and EDGE_NO_DOWNLOAD=1: run scripts/build_runner.sh fetch first" >&2
    exit 2
  fi
  echo "build_runner: downloading the executorch $VERSION aarch64 wheel from PyPI into $WHEELS" >&2
  "$PY" -m pip download -q "executorch==$VERSION" --no-deps --only-binary=:all: \
    --platform manylinux_2_28_aarch64 --python-version 3.11 -d "$WHEELS" >&2
}

case "$TARGET" in
  fetch)
    fetch_wheel
    echo "$WHEEL"
    exit 0
    ;;
  host)
    # executorch is a namespace package (no __init__.py): its folder is the search location.
    ET_ROOT="$("$PY" -c 'import importlib.util; s = importlib.util.find_spec("executorch"); print(next(iter(s.submodule_search_locations or []), "") if s else "")')"
    [ -n "$ET_ROOT" ] || { echo "build_runner: executorch is not installed for $PY" >&2; exit 2; }
    TOOLCHAIN=()
    ;;
  aarch64)
    command -v aarch64-linux-gnu-g++ >/dev/null || {
      echo "build_runner: aarch64-linux-gnu-g++ not found (Debian package g++-aarch64-linux-gnu)" >&2; exit 2; }
    fetch_wheel
    UNPACKED="$WHEELS/executorch-$VERSION-aarch64"
    if [ ! -f "$UNPACKED/.complete" ]; then
      rm -rf "$UNPACKED.tmp"
      # Only the C++ part (headers, libraries, CMake package); unpacked to a temporary folder, then
      # renamed, so an interrupted unpack is never taken for a complete one.
      "$PY" - "$WHEEL" "$UNPACKED.tmp" <<'PYEOF'
import sys, zipfile
wheel, dest = sys.argv[1:]
with zipfile.ZipFile(wheel) as z:
    names = [n for n in z.namelist() if n.startswith(("executorch/include/", "executorch/lib/", "executorch/share/"))]
    z.extractall(dest, names)
PYEOF
      touch "$UNPACKED.tmp/.complete"
      rm -rf "$UNPACKED" && mv "$UNPACKED.tmp" "$UNPACKED"
    fi
    ET_ROOT="$UNPACKED/executorch"
    TOOLCHAIN=(-DCMAKE_TOOLCHAIN_FILE="$ROOT/runner/aarch64-linux-gnu.cmake")
    ;;
  *)
    echo "usage: scripts/build_runner.sh [host|aarch64|fetch] [BUILD_DIR]" >&2; exit 2 ;;
esac

mkdir -p "$BUILD"
"$CMAKE" -S "$ROOT/runner" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DEXECUTORCH_ROOT="$ET_ROOT" \
  "${TOOLCHAIN[@]}" >&2
"$CMAKE" --build "$BUILD" -j"$(nproc 2>/dev/null || echo 2)" >&2
echo "$BUILD/edge_runner"
