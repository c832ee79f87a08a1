#!/usr/bin/env bash
# examples/stackgan, run briefly on 256 Fashion-MNIST images: it writes what it promises, its
# losses are finite, --resume continues exactly, and bad input gets one line and a non-zero exit.
set -u
. "$(dirname "$0")/lib/fashion.sh"
SG=("$CN_EXAMPLES/stackgan" --data "$FASHION" --train-samples 256 --threads 1)
LINE='^epoch [0-9]+ d1_loss [0-9.]+ g1_loss [0-9.]+ d2_loss [0-9.]+ g2_loss [0-9.]+ seconds [0-9.]+$'

writes() {
  "${SG[@]}" --epochs 1 --out "$TMP/a" --generate 30 --generate-out "$TMP/a.npy" \
    >"$TMP/out" 2>"$TMP/err" || return 1
  { [ "$(wc -l <"$TMP/out")" -eq 1 ] && grep -Eq "$LINE" "$TMP/out"; } ||
    { cat "$TMP/out" >"$TMP/err"; return 1; }
  # A .npy of format 1.0 with a 128-byte header, then 30 x 28 x 28 x 1 float32.
  [ -s "$TMP/a_epoch01.png" ] && [ -s "$TMP/a_generator.cnm" ] &&
    [ "$(stat -c %s "$TMP/a.npy")" -eq $((128 + 30 * 784 * 4)) ] &&
    head -c 128 "$TMP/a.npy" | grep -aq "'shape': (30, 28, 28, 1)"
}
check "stackgan: one epoch, one finite loss line, grid PNG, generator and (30,28,28,1) samples" writes

resumes() {
  "${SG[@]}" --epochs 2 --out "$TMP/s" --checkpoint "$TMP/s.ckpt" >"$TMP/straight" 2>"$TMP/err" &&
    "${SG[@]}" --epochs 1 --out "$TMP/r" --checkpoint "$TMP/r.ckpt" >"$TMP/resumed" 2>"$TMP/err" &&
    "${SG[@]}" --epochs 2 --out "$TMP/r" --resume "$TMP/r.ckpt" >>"$TMP/resumed" 2>"$TMP/err" ||
    return 1
  diff <(sed 's/ seconds.*//' "$TMP/straight") <(sed 's/ seconds.*//' "$TMP/resumed") >"$TMP/err" &&
    [ "$(wc -l <"$TMP/straight")" -eq 2 ] &&
    cmp "$TMP/s_generator.cnm" "$TMP/r_generator.cnm" >"$TMP/err" && [ -s "$TMP/r_epoch02.png" ]
}
check "stackgan: 2 epochs straight = 1 epoch, --resume, 1 epoch (losses, generator bytes)" resumes

refuses() {
  local what=$1 pattern=$2
  shift 2
  if "${SG[@]}" "$@" >"$TMP/out" 2>"$TMP/err"; then echo "$what: exit 0" >"$TMP/err"; return 1; fi
  [ "$(wc -l <"$TMP/err")" -ge 1 ] && grep -q "$pattern" "$TMP/err"
}
printf 'not a checkpoint' >"$TMP/bad.ckpt"
check "stackgan: a missing data folder is named" refuses data "/nope" --data /nope --epochs 0
check "stackgan: a damaged checkpoint is named" refuses ckpt "bad.ckpt" --resume "$TMP/bad.ckpt"
check "stackgan: a checkpoint of another seed is refused" \
  refuses seed "not --seed 2" --seed 2 --epochs 2 --resume "$TMP/s.ckpt"
check "stackgan: an unknown option is refused" refuses option "unknown option --nope" --nope 1

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
