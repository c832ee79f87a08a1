# Sourced by the CLI tests that train on ../shared/data/cats_dogs with the real MobileNet 0.25
# base: sets DATA, BASE and CD (skipping the test, exit 77, when either is absent), a scratch
# $TMP removed on exit with its own CONVNET_CACHE, loads check.sh, and defines sample.
: "${CONVNET:?set CONVNET to the convnet binary}"
DATA="${CN_SHARED_DATA:-$(dirname "$0")/../../../shared/data}"
DATA=$(cd "$DATA" 2>/dev/null && pwd) || DATA=/nonexistent
BASE="$DATA/weights/keras/mobilenet_v1_0.25_224.h5"
CD="$DATA/cats_dogs"
if [ ! -f "$BASE" ] || [ ! -d "$CD/train/cats" ]; then
  echo "skip: $BASE or $CD absent"
  exit 77
fi
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
export CONVNET_CACHE="$TMP/cache"
. "$(dirname "$0")/lib/check.sh"

# sample SRC DST N: the first N files of SRC (byte order) as symbolic links in DST.
sample() {
  mkdir -p "$2"
  ls "$1" | sort | head -n "$3" | while read -r f; do ln -s "$1/$f" "$2/$f"; done
}
