#!/usr/bin/env bash
# Installs the build into a temporary prefix as a packager would (cmake --install --prefix P),
# then compiles, links and runs a small program against it with `pkg-config --cflags --libs
# convnet` alone: the .pc file must point into P, and the program must find libconvnet.so through
# LD_LIBRARY_PATH without an rpath.
set -u
: "${CN_BUILD_DIR:?set CN_BUILD_DIR to the build directory}"
command -v pkg-config >/dev/null || { echo "SKIP: pkg-config absent"; exit 77; }
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
P="$TMP/prefix"
fail() { echo "FAIL: $*"; echo "0 passed, 1 failed"; exit 1; }

cmake --install "$CN_BUILD_DIR" --prefix "$P" >"$TMP/install.log" 2>&1 ||
  { cat "$TMP/install.log"; fail "cmake --install"; }
export PKG_CONFIG_PATH="$P/lib/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
cflags=$(pkg-config --cflags convnet) || fail "pkg-config --cflags convnet"
libs=$(pkg-config --libs convnet) || fail "pkg-config --libs convnet"
case "$cflags" in *"$P/include"*) ;; *) fail "--cflags '$cflags' does not point into $P" ;; esac
case "$libs" in *"$P/lib"*) ;; *) fail "--libs '$libs' does not point into $P" ;; esac

cat >"$TMP/hello.c" <<'C'
#include <convnet/convnet.h>
#include <stdio.h>
#include <string.h>

int main(void) {
  cn_model *m = NULL;
  cn_zoo_options o = {.name = "mobilenet", .alpha = 0.25f, .height = 128, .width = 128};
  if (cn_zoo_build(&o, &m) != CN_OK) {
    fprintf(stderr, "%s\n", cn_last_error());
    return 1;
  }
  cn_shape out = cn_model_output_shape(m);
  printf("%s %s %lld\n", cn_status_name(CN_ERR_FORMAT), cn_model_name(m), (long long)out.dim[0]);
  cn_model_free(m);
  return 0;
}
C
# shellcheck disable=SC2086 # pkg-config's output is a list of words
cc ${CN_EXTRA_CFLAGS:-} "$TMP/hello.c" -o "$TMP/hello" $cflags $libs 2>"$TMP/cc.log" ||
  { cat "$TMP/cc.log"; fail "compiling against the installed convnet"; }
if readelf -d "$TMP/hello" | grep -qE 'RPATH|RUNPATH'; then fail "the program has an rpath"; fi
out=$(LD_LIBRARY_PATH="$P/lib" "$TMP/hello") || fail "running the program"
[ "$out" = "bad format mobilenet_0.25_128 1000" ] || fail "program printed '$out'"
LD_LIBRARY_PATH="$P/lib" ldd "$TMP/hello" | grep -q "$P/lib/libconvnet.so" ||
  fail "ldd does not resolve libconvnet.so into $P/lib"
echo "ok: installed into a temporary prefix; pkg-config, compile, link and run against it"
echo "1 passed, 0 failed"
