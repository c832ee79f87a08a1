#!/usr/bin/env bash
# convnet evaluate on a small labelled sample of ../shared/data/imagenet-samples: a flat folder
# with a labels TSV, a class-folder layout, and the failures (missing dir, empty dir, bad image);
# then on a tiny .cnm trained here on ../shared/data/cats_dogs: per-class table, confusion
# matrix, JSON fields, and a folder of a class the model does not know.
set -u
: "${CONVNET:?set CONVNET to the convnet binary}"
DATA="${CN_SHARED_DATA:-$(dirname "$0")/../../../shared/data}"
DATA=$(cd "$DATA" 2>/dev/null && pwd) || DATA=/nonexistent # absolute: symlink targets
MODEL="$DATA/weights/keras/mobilenet_v1_0.25_224.h5"
SAMPLES="$DATA/imagenet-samples"
if [ ! -f "$MODEL" ] || [ ! -f "$SAMPLES/labels.tsv" ]; then
  echo "skip: $MODEL or $SAMPLES/labels.tsv absent"
  exit 77
fi
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
export CONVNET_CACHE="$TMP/cache"
passed=0 failed=0
ok() { echo "ok: $1"; passed=$((passed + 1)); }
fail() {
  echo "FAIL: $1"
  sed 's/^/    /' "$TMP/out" "$TMP/err"
  failed=$((failed + 1))
}

# json_field NAME: the number NAME in the one JSON object of $TMP/out
json_field() { sed -n "s/.*\"$1\":\([0-9.]*\).*/\1/p" "$TMP/out"; }

# json_array NAME: the [...] value of NAME (arrays of arrays included) in $TMP/out
json_array() { sed -n "s/.*\"$1\":\(\[\[*[^]]*\]\(,\[[^]]*\]\)*\]*\).*/\1/p" "$TMP/out"; }

# 20 images, flat, with the shared header line and column order of labels.tsv
mkdir "$TMP/flat"
head -n 21 "$SAMPLES/labels.tsv" >"$TMP/flat/labels.tsv"
tail -n +2 "$TMP/flat/labels.tsv" | cut -f1 | while read -r f; do
  ln -s "$SAMPLES/$f" "$TMP/flat/$f"
done

"$CONVNET" evaluate -m "$MODEL" --data "$TMP/flat" --json >"$TMP/out" 2>"$TMP/err"
rc=$?
images=$(json_field images) t1=$(json_field top1_correct) t5=$(json_field top5_correct)
skipped=$(json_field skipped)
if [ $rc -eq 0 ] && [ "$(wc -l <"$TMP/out")" -eq 1 ] && [ "$images" = 20 ] &&
  [ "$skipped" = 0 ] && [ "$t5" -ge "$t1" ] && [ "$t1" -ge 5 ] && [ ! -s "$TMP/err" ]; then
  ok "flat folder + labels.tsv: 20 images, top-1 $t1, top-5 $t5"
else
  fail "flat folder + labels.tsv (exit $rc)"
fi

# the same TSV given with --labels, text output, odd batch size
"$CONVNET" evaluate -m "$MODEL" --data "$TMP/flat" --labels "$TMP/flat/labels.tsv" --batch 3 \
  >"$TMP/out" 2>"$TMP/err"
rc=$?
if [ $rc -eq 0 ] && grep -q "^images: *20$" "$TMP/out" && grep -q "^top-1: .*($t1)$" "$TMP/out" &&
  grep -q "^top-5: .*($t5)$" "$TMP/out" && grep -q "images/s" "$TMP/out"; then
  ok "--labels, --batch 3: same counts as batch 8"
else
  fail "--labels, --batch 3 (exit $rc)"
fi

# 1000 classes: the per-class table only with --per-class (rows of the classes seen), no matrix
"$CONVNET" evaluate -m "$MODEL" --data "$TMP/flat" >"$TMP/out" 2>"$TMP/err"
plain_rc=$?
plain_rows=$(grep -c "precision" "$TMP/out")
"$CONVNET" evaluate -m "$MODEL" --data "$TMP/flat" --per-class >"$TMP/out" 2>"$TMP/err"
rc=$?
rows=$(grep -Ec "^ +[0-9]+ +[a-z_-]+ +[01] +[01] " "$TMP/out")
if [ $plain_rc -eq 0 ] && [ "$plain_rows" = 0 ] && [ $rc -eq 0 ] && [ "$rows" -ge 20 ] &&
  [ "$rows" -lt 60 ] && grep -Eq "^ +0 +tench +1 " "$TMP/out" && ! grep -q confusion "$TMP/out"; then
  ok "1000 classes: no table by default; --per-class: $rows rows, no matrix"
else
  fail "--per-class on an ImageNet model (exit $rc)"
fi
"$CONVNET" evaluate -m "$MODEL" --data "$TMP/flat" --per-class --json >"$TMP/out" 2>"$TMP/err"
if grep -q '"per_class":\[{"index":0,"class":"tench","samples":1,' "$TMP/out" &&
  ! grep -q '"confusion"' "$TMP/out" && [ "$(json_field classes)" = 1000 ]; then
  ok "--per-class --json: per_class array, no confusion"
else
  fail "--per-class --json"
fi

# a plain two-column TSV without header, a '#' comment
printf '# file\tclass\n%s\t0\n%s\t1\n' n01440764_tench.JPEG n01443537_goldfish.JPEG >"$TMP/plain.tsv"
"$CONVNET" evaluate -m "$MODEL" --data "$TMP/flat" --labels "$TMP/plain.tsv" --json \
  >"$TMP/out" 2>"$TMP/err"
rc=$?
if [ $rc -eq 0 ] && [ "$(json_field images)" = 2 ]; then
  ok "two-column TSV with a comment line"
else
  fail "two-column TSV (exit $rc)"
fi

# class folders: one by WordNet id, one by class name; a text file among the images is skipped
mkdir -p "$TMP/classes/n01440764" "$TMP/classes/goldfish"
ln -s "$SAMPLES/n01440764_tench.JPEG" "$TMP/classes/n01440764/a.JPEG"
ln -s "$SAMPLES/n01443537_goldfish.JPEG" "$TMP/classes/goldfish/b.JPEG"
echo "not an image" >"$TMP/classes/goldfish/notes.jpg"
"$CONVNET" evaluate -m "$MODEL" --data "$TMP/classes" --json >"$TMP/out" 2>"$TMP/err"
rc=$?
if [ $rc -eq 1 ] && [ "$(json_field images)" = 2 ] && [ "$(json_field skipped)" = 1 ] &&
  [ "$(wc -l <"$TMP/err")" -eq 1 ] && grep -q "notes.jpg" "$TMP/err"; then
  ok "class folders (wnid and name): 2 images, bad file skipped with one line, exit 1"
else
  fail "class folders (exit $rc)"
fi

# expect_error DESCRIPTION ARGS...: one "convnet: " line on stderr, exit 1 or 2, no crash
expect_error() {
  local what=$1
  shift
  "$CONVNET" evaluate "$@" >"$TMP/out" 2>"$TMP/err"
  local rc=$?
  if { [ $rc -eq 1 ] || [ $rc -eq 2 ]; } && [ "$(wc -l <"$TMP/err")" -eq 1 ] &&
    grep -q "^convnet: " "$TMP/err"; then
    ok "$what: $(cat "$TMP/err")"
  else
    fail "$what (exit $rc)"
  fi
}
mkdir "$TMP/empty"
mkdir -p "$TMP/unknown/not_a_class"
expect_error "missing --data dir" -m "$MODEL" --data "$TMP/missing"
expect_error "empty dir" -m "$MODEL" --data "$TMP/empty"
expect_error "folder that is no ImageNet class" -m "$MODEL" --data "$TMP/unknown"
expect_error "no --data" -m "$MODEL"
expect_error "bad --batch" -m "$MODEL" --data "$TMP/flat" --batch 0
printf 'file\tclass_index\nx.jpg\tseven\n' >"$TMP/bad.tsv"
expect_error "non-numeric class index" -m "$MODEL" --data "$TMP/flat" --labels "$TMP/bad.tsv"

# ---- a trained .cnm: classes matched by name ----------------------------------------------------
CATS_DOGS="$DATA/cats_dogs"
# link_subset FROM TO FIRST COUNT: COUNT images per class, starting at the FIRST-th of each
link_subset() {
  local class f
  for class in cats dogs; do
    mkdir -p "$2/$class"
    find "$1/$class" -maxdepth 1 -name '*.jpg' | sort | tail -n +"$3" | head -n "$4" |
      while read -r f; do ln -s "$f" "$2/$class/${f##*/}"; done
  done
}
if [ -d "$CATS_DOGS/train/cats" ] && [ -d "$CATS_DOGS/validation/dogs" ]; then
  link_subset "$CATS_DOGS/train" "$TMP/cd_train" 1 16
  link_subset "$CATS_DOGS/validation" "$TMP/cd_eval" 1 6
  if "$CONVNET" train --base "$MODEL" --data "$TMP/cd_train" --out "$TMP/cd.cnm" --epochs 2 \
    --batch 8 --no-cache --threads 2 >"$TMP/out" 2>"$TMP/err"; then
    ok "trained a 2-class .cnm on 32 images"
  else
    fail "convnet train for the evaluate tests"
  fi

  "$CONVNET" evaluate -m "$TMP/cd.cnm" --data "$TMP/cd_eval" >"$TMP/out" 2>"$TMP/err"
  rc=$?
  if [ $rc -eq 0 ] && grep -q "^images: *12$" "$TMP/out" && ! grep -q "^top-5" "$TMP/out" &&
    grep -Eq "^ +0 +cats +6 +[0-6] " "$TMP/out" && grep -Eq "^ +1 +dogs +6 +[0-6] " "$TMP/out" &&
    grep -q "^confusion (rows: true class, columns: predicted):" "$TMP/out" &&
    [ "$(grep -A3 "^confusion" "$TMP/out" | grep -Ec "^(cats|dogs)( +[0-9]+){2}$")" = 2 ] &&
    grep -A1 "^confusion" "$TMP/out" | tail -n 1 | grep -Eq "^ +cats +dogs$"; then
    ok "text: 12 images, no top-5 for 2 classes, per-class rows, 2x2 confusion matrix"
  else
    fail "text output of a trained model (exit $rc)"
  fi

  "$CONVNET" evaluate -m "$TMP/cd.cnm" --data "$TMP/cd_eval" --json >"$TMP/out" 2>"$TMP/err"
  rc=$?
  confusion=$(json_array confusion)
  # the matrix's cells add up to the images, its diagonal to the top-1 hits
  cells=$(echo "$confusion" | tr -c '0-9' ' ' | wc -w)
  sum=$(($(echo "$confusion" | tr -c '0-9' '+' | sed 's/^+*//; s/+*$//; s/++*/+/g')))
  diagonal=$(echo "$confusion" | sed 's/^\[\[\([0-9]*\),[0-9]*\],\[[0-9]*,\([0-9]*\)\]\]$/\1+\2/')
  if [ $rc -eq 0 ] && [ "$(json_field images)" = 12 ] && [ "$(json_field classes)" = 2 ] &&
    ! grep -q '"top5"' "$TMP/out" && [ "$cells" = 4 ] && [ "$sum" = 12 ] &&
    [ "$((diagonal))" = "$(json_field top1_correct)" ] &&
    grep -q '"per_class":\[{"index":0,"class":"cats","samples":6,' "$TMP/out" &&
    grep -q '{"index":1,"class":"dogs","samples":6,' "$TMP/out" &&
    grep -q '"recall":' "$TMP/out" && grep -q '"precision":' "$TMP/out"; then
    ok "--json: per_class for cats and dogs, confusion $confusion"
  else
    fail "--json of a trained model (exit $rc)"
  fi

  # only dogs on disk: folder 0 is the model's class 1 (matched by name, not position)
  mkdir -p "$TMP/cd_dogs"
  ln -s "$TMP/cd_eval/dogs" "$TMP/cd_dogs/dogs"
  "$CONVNET" evaluate -m "$TMP/cd.cnm" --data "$TMP/cd_dogs" --json >"$TMP/out" 2>"$TMP/err"
  rc=$?
  if [ $rc -eq 0 ] && [ "$(json_field images)" = 6 ] &&
    grep -q '{"index":0,"class":"cats","samples":0,"correct":0,"predicted":[0-6],"recall":null' \
      "$TMP/out" && grep -q '{"index":1,"class":"dogs","samples":6,' "$TMP/out"; then
    ok "a model class absent from the folder: 0 samples, recall null"
  else
    fail "folder with only some of the model's classes (exit $rc)"
  fi

  mkdir -p "$TMP/cd_horses/horses"
  ln -s "$TMP/cd_eval/cats" "$TMP/cd_horses/cats"
  ln -s "$(find "$TMP/cd_eval/dogs/" -name '*.jpg' | head -n 1)" "$TMP/cd_horses/horses/h.jpg"
  expect_error "folder of a class the model does not know" -m "$TMP/cd.cnm" --data "$TMP/cd_horses"
  if ! grep -q "'horses' is not one of the model's 2 classes (cats, dogs)" "$TMP/err"; then
    fail "the unknown class is not named"
  fi
else
  echo "skip: $CATS_DOGS absent, no trained-model tests"
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
