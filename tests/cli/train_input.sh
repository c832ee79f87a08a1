#!/usr/bin/env bash
# convnet train/evaluate --resize, --crop F, --preprocess (shared with classify): accepted,
# bad values are one-line usage errors, they reach the image pipeline, the trained model stores
# the spec and classify uses it by default, a resume with another spec is refused, and a Keras
# base trains with Keras's training pipeline (tf-bilinear resize, tf decoding) by default.
set -u
. "$(dirname "$0")/lib/cats_dogs.sh"

for c in cats dogs; do # 6 training and 3 validation images per class, as symbolic links
  mkdir -p "$TMP/train/$c" "$TMP/val/$c"
  ls "$CD/train/$c" | sort | head -n 6 | while read -r f; do ln -s "$CD/train/$c/$f" "$TMP/train/$c/$f"; done
  ls "$CD/validation/$c" | sort | head -n 3 | while read -r f; do ln -s "$CD/validation/$c/$f" "$TMP/val/$c/$f"; done
done
TRAIN=(train --base "$BASE" --data "$TMP/train" --val "$TMP/val" --batch 4 --seed 5 --epochs 2)

# the losses of a --log file (its times and images per second differ from run to run)
losses() { grep -o '"[a-z_]*loss": [0-9.]*' "$1"; }
# the input_spec the .cnm stores (a JSON object in its header)
spec_of() { head -c 65536 "$1" | tr -d '\\' | grep -ao '"input_spec":"{[^}]*}' | head -1; }

# ---- bad values: one line, exit 2, before any loading ----
usage_error() { # FLAG VALUE COMMAND...
  local flag=$1 value=$2
  shift 2
  "$CONVNET" "$@" "$flag" "$value" >"$TMP/out" 2>"$TMP/err"
  [ $? -eq 2 ] && [ "$(wc -l <"$TMP/err")" -eq 1 ] && grep -q -- "$flag" "$TMP/err"
}
for cmd in train evaluate; do
  args=(--base nosuch.h5 --data nosuch --out "$TMP/x.cnm")
  [ $cmd = evaluate ] && args=(-m nosuch.h5 --data nosuch)
  check "$cmd --resize bogus" usage_error --resize bogus $cmd "${args[@]}"
  check "$cmd --preprocess bogus" usage_error --preprocess bogus $cmd "${args[@]}"
  check "$cmd --decode bogus" usage_error --decode bogus $cmd "${args[@]}"
  check "$cmd --crop 1.5" usage_error --crop 1.5 $cmd "${args[@]}"
  check "$cmd --crop 0" usage_error --crop 0 $cmd "${args[@]}"
done
check "classify --resize bogus" usage_error --resize bogus classify nosuch.jpg

# ---- a Keras base trains with Keras's training resize; the model stores the spec ----
default_spec() {
  "$CONVNET" "${TRAIN[@]}" --out "$TMP/d.cnm" --log "$TMP/d.jsonl" >"$TMP/out" 2>"$TMP/err" &&
    spec_of "$TMP/d.cnm" >"$TMP/spec" && grep -q '"resize":"tf-bilinear"' "$TMP/spec" &&
    grep -q '"preprocess":"tf"' "$TMP/spec" && grep -q '"decoder":"tf"' "$TMP/spec"
}
check "a Keras base trains with tf-bilinear and tf decoding by default, and the model stores it" \
  default_spec

given_spec() {
  "$CONVNET" "${TRAIN[@]}" --resize nearest --crop 0.875 --preprocess caffe --out "$TMP/n.cnm" \
    --log "$TMP/n.jsonl" >"$TMP/out" 2>"$TMP/err" && spec_of "$TMP/n.cnm" >"$TMP/spec" &&
    grep -q '"resize":"nearest"' "$TMP/spec" && grep -q '"crop":0.875' "$TMP/spec" &&
    grep -q '"preprocess":"caffe"' "$TMP/spec" && grep -q '"decoder":"pil"' "$TMP/spec"
}
check "--resize nearest --crop 0.875 --preprocess caffe are stored" given_spec

reach_pipeline() { # same seed, other resize: other features, so another loss
  "$CONVNET" "${TRAIN[@]}" --resize nearest --out "$TMP/n2.cnm" --log "$TMP/n2.jsonl" \
    >"$TMP/out" 2>"$TMP/err" &&
    ! cmp -s <(losses "$TMP/d.jsonl") <(losses "$TMP/n2.jsonl")
}
check "--resize tf-bilinear and nearest train on different features" reach_pipeline

decode_pil() { # a Keras base with --decode pil keeps its tf-bilinear resize; other features
  "$CONVNET" "${TRAIN[@]}" --decode pil --out "$TMP/p.cnm" --log "$TMP/p.jsonl" \
    >"$TMP/out" 2>"$TMP/err" && spec_of "$TMP/p.cnm" >"$TMP/spec" &&
    grep -q '"decoder":"pil"' "$TMP/spec" && grep -q '"resize":"tf-bilinear"' "$TMP/spec" &&
    ! cmp -s <(losses "$TMP/d.jsonl") <(losses "$TMP/p.jsonl")
}
check "--decode pil overrides the Keras base's tf decoding, is stored and reaches the features" \
  decode_pil

classify_uses_stored() { # default == the stored crop and resize, != another
  local img="$CD/validation/dogs/$(ls "$CD/validation/dogs" | sort | tail -1)"
  "$CONVNET" classify -m "$TMP/n.cnm" --json "$img" >"$TMP/c0" 2>"$TMP/err" &&
    "$CONVNET" classify -m "$TMP/n.cnm" --json --resize nearest --crop 0.875 \
      --preprocess caffe "$img" >"$TMP/c1" 2>>"$TMP/err" &&
    "$CONVNET" classify -m "$TMP/n.cnm" --json --resize bilinear --crop 1 "$img" \
      >"$TMP/c2" 2>>"$TMP/err" &&
    cmp -s "$TMP/c0" "$TMP/c1" && ! cmp -s "$TMP/c0" "$TMP/c2"
}
check "classify on the trained model uses the stored resize, crop and preprocess" classify_uses_stored

untimed() { sed 's/"images_per_second":[^,]*,"seconds":[^,]*,//' "$1"; }
evaluate_options() { # the stored spec by default; the flags change the images it reads
  "$CONVNET" evaluate -m "$TMP/n.cnm" --data "$TMP/val" --json >"$TMP/e0" 2>"$TMP/err" &&
    "$CONVNET" evaluate -m "$TMP/n.cnm" --data "$TMP/val" --json --resize nearest --crop 0.875 \
      --preprocess caffe >"$TMP/e1" 2>>"$TMP/err" &&
    "$CONVNET" evaluate -m "$TMP/n.cnm" --data "$TMP/val" --json --resize area --crop 0.5 \
      --preprocess tf >"$TMP/e2" 2>>"$TMP/err" &&
    cmp -s <(untimed "$TMP/e0") <(untimed "$TMP/e1") &&
    ! cmp -s <(untimed "$TMP/e0") <(untimed "$TMP/e2")
}
check "evaluate takes --resize, --crop, --preprocess" evaluate_options

resume_other_spec() {
  ! "$CONVNET" "${TRAIN[@]}" --resize area --out "$TMP/d.cnm" --resume "$TMP/d.cnm.ckpt" \
    >"$TMP/out" 2>"$TMP/err" && grep -q "different training options" "$TMP/err" &&
    "$CONVNET" "${TRAIN[@]}" --out "$TMP/d.cnm" --resume "$TMP/d.cnm.ckpt" >"$TMP/out" 2>"$TMP/err"
}
check "a resume with another --resize is refused, with the same one accepted" resume_other_spec

help_names() {
  "$CONVNET" train --help >"$TMP/out" && grep -q -- "--resize P" "$TMP/out" &&
    grep -q -- "--crop F" "$TMP/out" && grep -q -- "--preprocess" "$TMP/out"
}
check "train --help names --resize, --crop F and --preprocess" help_names

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
