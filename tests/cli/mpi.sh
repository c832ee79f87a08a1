#!/usr/bin/env bash
# Data-parallel training under mpirun (docs/scale-out.md), on this machine (loopback only), with
# a sample of ../shared/data/cats_dogs and the real MobileNet 0.25 base:
#   - 2 ranks x 1 thread give the same model bytes on every repeat, for transfer learning with
#     augmentation and a fine-tuning phase;
#   - their weights match 1 rank x 2 threads with the same global batch within 1e-5 relative;
#   - the features the 2 ranks extract (the cache, without augmentation) are the bytes one
#     process writes, and a later single-process run uses them;
#   - kill -9 of a rank ends the job naming the rank, the last checkpoint stays usable, and
#     --resume with 2 ranks gives the uninterrupted run's bytes;
#   - a rank that fails names itself, and the job ends.
# Skipped (77) without mpirun, or when convnet was built without Open MPI.
set -u
. "$(dirname "$0")/lib/cats_dogs.sh"
. "$(dirname "$0")/lib/mpi.sh"
MPIRUN=(mpirun --oversubscribe -np 2)
CLOSE="$(dirname "$0")/lib/weights_close.py"

for c in cats dogs; do
  sample "$CD/train/$c" "$TMP/data/train/$c" 40
  sample "$CD/validation/$c" "$TMP/data/val/$c" 12
done
# 80 images in global batches of 16; the last layers fine-tuned after the head
TRAIN=(train --base "$BASE" --data "$TMP/data/train" --val "$TMP/data/val" --batch 16 --seed 7
  --fine-tune conv_pw_12_relu --fine-tune-epochs 2)
AUG=(--flip --rotation 10 --zoom 0.1 --no-cache)

# ---- augmentation + fine-tuning: repeatable bytes, and one process's weights ----
"$CONVNET" "${TRAIN[@]}" "${AUG[@]}" --epochs 2 --threads 2 --out "$TMP/one.cnm" \
  >/dev/null 2>"$TMP/one.err"
two_ranks() { # OUT
  "${MPIRUN[@]}" "$CONVNET" "${TRAIN[@]}" "${AUG[@]}" --epochs 2 --threads 1 --out "$1" \
    >"$TMP/out" 2>"$TMP/err"
}
repeatable() {
  two_ranks "$TMP/two.cnm" && two_ranks "$TMP/two_again.cnm" &&
    cmp "$TMP/two.cnm" "$TMP/two_again.cnm" >"$TMP/err" 2>&1
}
check "2 ranks x 1 thread: the same model bytes on a repeat" repeatable
printed_once() { [ "$(grep -c '^fine-tune epoch 2/2' "$TMP/out")" -eq 1 ] && grep -q "^wrote " "$TMP/out"; }
check "rank 0 alone reports the epochs and the model written" printed_once
matches_one() { python3 "$CLOSE" "$TMP/one.cnm" "$TMP/two.cnm" 1e-5 >"$TMP/err" 2>&1; }
check "2 ranks x 1 thread match 1 rank x 2 threads within 1e-5" matches_one

# ---- cached features: extracted by both ranks, the bytes one process writes ----
cached() {
  CONVNET_CACHE="$TMP/cache1" "$CONVNET" "${TRAIN[@]}" --epochs 3 --dropout 0.2 --threads 2 \
    --out "$TMP/c1.cnm" >/dev/null 2>"$TMP/err" || return 1
  CONVNET_CACHE="$TMP/cache2" "${MPIRUN[@]}" "$CONVNET" "${TRAIN[@]}" --epochs 3 --dropout 0.2 \
    --threads 1 --out "$TMP/c2.cnm" >/dev/null 2>"$TMP/err" || return 1
  local n=0
  for f in "$TMP"/cache1/features/*; do
    cmp "$f" "$TMP/cache2/features/${f##*/}" >"$TMP/err" 2>&1 || return 1
    n=$((n + 1))
  done
  # train and validation features for the head phase, and again for the fine-tuning phase
  [ "$n" -eq 4 ] || { echo "$n cache files, not 4" >"$TMP/err"; return 1; }
  python3 "$CLOSE" "$TMP/c1.cnm" "$TMP/c2.cnm" 1e-5 >"$TMP/err" 2>&1
}
check "features extracted by 2 ranks: the cache files of one process, weights within 1e-5" cached
cache_reused() {
  CONVNET_CACHE="$TMP/cache2" "$CONVNET" "${TRAIN[@]}" --epochs 3 --dropout 0.2 --threads 2 \
    --out "$TMP/c3.cnm" >/dev/null 2>"$TMP/err" || return 1
  cmp "$TMP/c1.cnm" "$TMP/c3.cnm" >"$TMP/err" 2>&1
}
check "a later single-process run uses the 2 ranks' cache (the same model bytes)" cache_reused

# ---- kill -9 of rank 1, then --resume with 2 ranks ----
LONG=("${TRAIN[@]}" "${AUG[@]}" --epochs 6 --threads 1)
"${MPIRUN[@]}" "$CONVNET" "${LONG[@]}" --out "$TMP/full.cnm" >/dev/null 2>&1
rank_pid() { # RANK: the pid of that rank's convnet
  local p
  for p in $(pgrep -f "convnet train"); do
    tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=$1" &&
      { echo "$p"; return 0; }
  done
  return 1
}
killed_and_resumed() {
  "${MPIRUN[@]}" "$CONVNET" "${LONG[@]}" --out "$TMP/int.cnm" --log "$TMP/int.jsonl" \
    >/dev/null 2>"$TMP/killed.err" &
  local job=$! pid=""
  for _ in $(seq 1 3000); do
    [ -f "$TMP/int.jsonl" ] && [ "$(wc -l <"$TMP/int.jsonl")" -ge 2 ] && pid=$(rank_pid 1) && break
    sleep 0.02
  done
  [ -n "$pid" ] && kill -9 "$pid"
  local rc=0
  wait $job || rc=$?
  [ ! -f "$TMP/int.cnm" ] || { echo "the run finished before it was killed" >"$TMP/err"; return 1; }
  [ "$rc" -ne 0 ] && grep -q "rank 1" "$TMP/killed.err" ||
    { cp "$TMP/killed.err" "$TMP/err"; return 1; }
  "${MPIRUN[@]}" "$CONVNET" "${LONG[@]}" --out "$TMP/int.cnm" --resume "$TMP/int.cnm.ckpt" \
    --log "$TMP/int.jsonl" >/dev/null 2>"$TMP/err" || return 1
  cmp "$TMP/full.cnm" "$TMP/int.cnm" >"$TMP/err" 2>&1
}
check "kill -9 of rank 1 names it; --resume with 2 ranks equals the uninterrupted run" \
  killed_and_resumed

other_count_warns() {
  "$CONVNET" "${LONG[@]}" --out "$TMP/int1.cnm" --resume "$TMP/int.cnm.ckpt" >/dev/null \
    2>"$TMP/err" && grep -q "written by a run of 2 process(es), this one has 1" "$TMP/err"
}
check "resuming a 2-rank checkpoint in one process warns that the bits will differ" \
  other_count_warns

# ---- a rank that fails names itself and ends the job ----
rank_fails() {
  ! "${MPIRUN[@]}" "$CONVNET" "${TRAIN[@]}" --epochs 1 --threads 1 --out "$TMP/x.cnm" \
    --resume "$TMP/missing.ckpt" >"$TMP/out" 2>"$TMP/err" &&
    grep -q "^convnet: rank [01] of 2: .*missing.ckpt" "$TMP/err" && [ ! -f "$TMP/x.cnm" ]
}
check "a failing rank prints 'rank R of 2' and the job ends" rank_fails

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
