# Sourced by the CLI test scripts: counts checks and prints the closing "N passed, N failed".
# check DESCRIPTION COMMAND...: runs COMMAND; on failure shows $TMP/err, indented.
passed=0 failed=0
check() {
  local what=$1
  shift
  if "$@"; then
    echo "ok: $what"
    passed=$((passed + 1))
  else
    echo "FAIL: $what"
    sed 's/^/    /' "$TMP/err" 2>/dev/null
    failed=$((failed + 1))
  fi
}

# ran ARGS...: runs convnet with ARGS, its output in $TMP/out and $TMP/err.
ran() { "$CONVNET" "$@" >"$TMP/out" 2>"$TMP/err"; }
is_png() { [ "$(head -c 8 "$1" | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ]; }
# fails_naming STATUS WORD ARGS...: convnet ARGS exits STATUS with one stderr line "convnet: ..."
# that names WORD.
fails_naming() {
  local want=$1 word=$2
  shift 2
  "$CONVNET" "$@" >"$TMP/out" 2>"$TMP/err"
  local rc=$?
  [ "$rc" -eq "$want" ] && [ "$(wc -l <"$TMP/err")" -eq 1 ] &&
    grep -q '^convnet: ' "$TMP/err" && grep -qF -- "$word" "$TMP/err"
}

# zeros_npy FILE: a float32 .npy of zeros, shape (1, 224, 224, 3), header padded to 64 bytes.
zeros_npy() {
  printf '\x93NUMPY\x01\x00v\x00{'"'"'descr'"'"': '"'"'<f4'"'"', '"'"'fortran_order'"'"': False, '"'"'shape'"'"': (1, 224, 224, 3), }' >"$1"
  while [ $(($(stat -c %s "$1") % 64)) -ne 63 ]; do printf ' ' >>"$1"; done
  printf '\n' >>"$1"
  head -c $((224 * 224 * 3 * 4)) /dev/zero >>"$1"
}
