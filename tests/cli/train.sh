#!/usr/bin/env bash
# convnet train on a small sample of ../shared/data/cats_dogs with the real MobileNet 0.25 base:
# learning happens, the trained model classifies with its own class names, kill -9 during
# epoch 3 and --resume give the same bytes as an uninterrupted run (with every augmentation on),
# --threads 1 and 2 agree (with and without augmentation), and bad data folders fail with one
# clear line.
set -u
. "$(dirname "$0")/lib/cats_dogs.sh"

# 24 training and 8 validation images per class, as symbolic links
for c in cats dogs; do
  sample "$CD/train/$c" "$TMP/data/train/$c" 24
  sample "$CD/validation/$c" "$TMP/data/val/$c" 8
done
TRAIN=(train --base "$BASE" --data "$TMP/data/train" --val "$TMP/data/val" --batch 8 --seed 3)

# ---- learning, class names, files written ----
learns() {
  "$CONVNET" "${TRAIN[@]}" --epochs 4 --lr 0.01 --out "$TMP/a.cnm" --log "$TMP/a.jsonl" \
    >"$TMP/out" 2>"$TMP/err" || return 1
  [ -f "$TMP/a.cnm" ] && [ -f "$TMP/a.cnm.ckpt" ] && [ -f "$TMP/a.cnm.best.cnm" ] || return 1
  [ "$(wc -l <"$TMP/a.jsonl")" -eq 4 ] || return 1
  first=$(head -1 "$TMP/a.jsonl" | sed 's/.*"loss": \([0-9.]*\).*/\1/')
  last=$(tail -1 "$TMP/a.jsonl" | sed 's/.*"loss": \([0-9.]*\).*/\1/')
  awk -v a="$first" -v b="$last" 'BEGIN { exit !(b < a) }'
}
check "training lowers the loss and writes model, best model, checkpoint and log" learns

names() {
  "$CONVNET" classify -m "$TMP/a.cnm" -k 2 "$CD/validation/dogs/$(ls "$CD/validation/dogs" | sort | tail -1)" \
    >"$TMP/out" 2>"$TMP/err" && grep -q "dogs" "$TMP/out" && grep -q "cats" "$TMP/out"
}
check "classify prints the trained class names" names

# ---- kill -9 during epoch 3, then --resume: same bytes as an uninterrupted run ----
# with every kind of augmentation on: its draws are functions of (seed, epoch, image) only
AUG=(--flip --vflip --rotation 15 --shear 5 --zoom 0.1 --shift 0.05 --fill reflect --tint 10
  --channel-shift 5 --hue 0.05 --contrast 0.2 --brightness 0.8,1.2 --blur 0,1 --crop-scale 0.5,1)
STREAM=("${TRAIN[@]}" "${AUG[@]}" --epochs 8 --no-cache)
"$CONVNET" "${STREAM[@]}" --out "$TMP/full.cnm" >/dev/null 2>"$TMP/err"
interrupted() {
  "$CONVNET" "${STREAM[@]}" --out "$TMP/int.cnm" --log "$TMP/int.jsonl" >/dev/null 2>&1 &
  local pid=$!
  for _ in $(seq 1 3000); do
    [ -f "$TMP/int.jsonl" ] && [ "$(wc -l <"$TMP/int.jsonl")" -ge 2 ] && break
    sleep 0.02
  done
  kill -9 $pid 2>/dev/null
  wait $pid 2>/dev/null
  [ ! -f "$TMP/int.cnm" ] || { echo "the run finished before it was killed" >"$TMP/err"; return 1; }
  "$CONVNET" "${STREAM[@]}" --out "$TMP/int.cnm" --resume "$TMP/int.cnm.ckpt" \
    --log "$TMP/int.jsonl" >/dev/null 2>"$TMP/err" || return 1
  cmp "$TMP/full.cnm" "$TMP/int.cnm" >"$TMP/err" 2>&1
}
check "kill -9 in epoch 3 + --resume equals the uninterrupted run byte for byte" interrupted

threads() {
  "$CONVNET" "${TRAIN[@]}" --epochs 2 --no-cache --threads 1 --out "$TMP/t1.cnm" >/dev/null 2>"$TMP/err" &&
    "$CONVNET" "${TRAIN[@]}" --epochs 2 --no-cache --threads 2 --out "$TMP/t2.cnm" >/dev/null 2>"$TMP/err" &&
    cmp "$TMP/t1.cnm" "$TMP/t2.cnm" >"$TMP/err" 2>&1
}
check "--threads 1 and --threads 2 give the same model bytes" threads

threads_augmented() {
  "$CONVNET" "${TRAIN[@]}" "${AUG[@]}" --epochs 2 --threads 1 --out "$TMP/ta1.cnm" >/dev/null 2>"$TMP/err" &&
    "$CONVNET" "${TRAIN[@]}" "${AUG[@]}" --epochs 2 --threads 2 --out "$TMP/ta2.cnm" >/dev/null 2>"$TMP/err" &&
    cmp "$TMP/ta1.cnm" "$TMP/ta2.cnm" >"$TMP/err" 2>&1
}
check "with augmentation, --threads 1 and --threads 2 give the same model bytes" threads_augmented

resume_other_options() {
  ! "$CONVNET" "${TRAIN[@]}" --epochs 5 --lr 0.5 --out "$TMP/a.cnm" --resume "$TMP/a.cnm.ckpt" \
    >"$TMP/out" 2>"$TMP/err" && grep -q "different training options" "$TMP/err"
}
check "resuming with other options is refused" resume_other_options

resume_other_augmentation() {
  ! "$CONVNET" "${STREAM[@]}" --hue 0.1 --out "$TMP/int2.cnm" --resume "$TMP/int.cnm.ckpt" \
    >"$TMP/out" 2>"$TMP/err" && grep -q "different training options" "$TMP/err" &&
    [ ! -f "$TMP/int2.cnm" ]
}
check "resuming with other augmentation is refused" resume_other_augmentation

bad_augmentation() {
  "$CONVNET" "${TRAIN[@]}" --hue 0.9 --out "$TMP/bad_aug.cnm" >"$TMP/out" 2>"$TMP/err"
  [ $? -eq 2 ] && [ "$(wc -l <"$TMP/err")" -eq 1 ] && grep -q -- "--hue" "$TMP/err" &&
    [ ! -f "$TMP/bad_aug.cnm" ]
}
check "a bad augmentation value is a one-line usage error" bad_augmentation

# ---- bad data: one line on stderr, exit 1, nothing written ----
fails_with() { # DESCRIPTION PATTERN DATA_DIR
  local pattern=$2 dir=$3
  "$CONVNET" train --base "$BASE" --data "$dir" --out "$TMP/bad.cnm" --epochs 1 \
    >"$TMP/out" 2>"$TMP/err"
  local rc=$?
  [ $rc -eq 1 ] && [ "$(wc -l <"$TMP/err")" -eq 1 ] && grep -qi -- "$pattern" "$TMP/err" &&
    [ ! -f "$TMP/bad.cnm" ]
}
mkdir -p "$TMP/empty/cats" "$TMP/empty/dogs"
ln -s "$CD/train/cats/$(ls "$CD/train/cats" | head -1)" "$TMP/empty/cats/"
check "an empty class folder is named" fails_with empty "empty" "$TMP/empty"
mkdir -p "$TMP/single/cats"
ln -s "$CD/train/cats/$(ls "$CD/train/cats" | head -1)" "$TMP/single/cats/"
check "a single class is refused" fails_with single "class" "$TMP/single"
mkdir -p "$TMP/case/Cats" "$TMP/case/cats"
ln -s "$CD/train/cats/$(ls "$CD/train/cats" | head -1)" "$TMP/case/Cats/"
ln -s "$CD/train/cats/$(ls "$CD/train/cats" | head -1)" "$TMP/case/cats/"
check "class names differing only in case are refused" fails_with case "case" "$TMP/case"
mkdir -p "$TMP/noimg/a" "$TMP/noimg/b"
echo "not an image" >"$TMP/noimg/a/readme.txt"
echo "not an image" >"$TMP/noimg/b/notes.txt"
check "folders without images are refused" fails_with noimg "image\|empty" "$TMP/noimg"
check "a missing folder is named" fails_with missing "$TMP/nope" "$TMP/nope"

bad_images() { # a corrupt JPEG among good ones: skipped with a warning naming it
  cp -r "$TMP/data/train" "$TMP/withbad"
  head -c 300 "$CD/train/cats/$(ls "$CD/train/cats" | head -1)" >"$TMP/withbad/cats/zz_truncated.jpg"
  "$CONVNET" train --base "$BASE" --data "$TMP/withbad" --out "$TMP/wb.cnm" --epochs 1 --batch 8 \
    >"$TMP/out" 2>"$TMP/err" && grep -q "zz_truncated.jpg" "$TMP/err" && [ -f "$TMP/wb.cnm" ]
}
check "an undecodable image is skipped and named" bad_images

fatal_bad_images() {
  ! "$CONVNET" train --base "$BASE" --data "$TMP/withbad" --out "$TMP/wf.cnm" --epochs 1 \
    --fatal-bad-images >"$TMP/out" 2>"$TMP/err" && grep -q "zz_truncated.jpg" "$TMP/err"
}
check "--fatal-bad-images stops at it" fatal_bad_images

nan_loss() { # a learning rate that makes the loss overflow: a clear stop, checkpoint kept
  cp "$TMP/a.cnm.ckpt" "$TMP/keep.ckpt"
  ! "$CONVNET" "${TRAIN[@]}" --epochs 3 --optimizer sgd --lr 1e37 --out "$TMP/nan.cnm" \
    >"$TMP/out" 2>"$TMP/err" && grep -qi "loss became" "$TMP/err" && [ ! -f "$TMP/nan.cnm" ]
}
check "a diverging loss stops with a clear message" nan_loss

usage() {
  "$CONVNET" train --data x --out y >"$TMP/out" 2>"$TMP/err"
  [ $? -eq 2 ] && grep -q -- "--base" "$TMP/err"
}
check "missing --base is a usage error" usage

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
