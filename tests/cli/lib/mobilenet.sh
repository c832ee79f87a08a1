# Sourced by the CLI tests that run the real MobileNet 0.25 Keras file: sets DATA and MODEL
# (skipping the test, exit 77, when the file is absent), USER_CACHE (the user's convnet cache,
# noted before the test gets its own), a scratch $TMP removed on exit with its own
# CONVNET_CACHE, and loads check.sh.
: "${CONVNET:?set CONVNET to the convnet binary}"
DATA="${CN_SHARED_DATA:-$(dirname "$0")/../../../shared/data}"
MODEL="$DATA/weights/keras/mobilenet_v1_0.25_224.h5"
if [ ! -f "$MODEL" ]; then
  echo "SKIP: $MODEL not present"
  exit 77
fi
USER_CACHE="${CONVNET_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/convnet}"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
export CONVNET_CACHE="$TMP/cache"
. "$(dirname "$0")/lib/check.sh"
