# Sourced by the tests of the examples/ programs: sets CN_EXAMPLES (required) and FASHION, the
# Fashion-MNIST folder (skipping the test, exit 77, without it), a scratch $TMP removed on exit,
# and loads check.sh.
: "${CN_EXAMPLES:?set CN_EXAMPLES to the built examples folder}"
FASHION=${CN_FASHION_MNIST:-/usr/share/datasets/fashion-mnist}
if [ ! -f "$FASHION/train-images-idx3-ubyte.gz" ]; then
  echo "skip: $FASHION has no Fashion-MNIST (apt-get install dataset-fashion-mnist)"
  exit 77
fi
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
. "$(dirname "$0")/lib/check.sh"
