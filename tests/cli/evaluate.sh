#!/usr/bin/env bash
# convnet evaluate on a small labelled sample of ../shared/data/imagenet-samples: a flat folder
# with a labels TSV, a class-folder layout, and the failures (missing dir, empty dir, bad image).
set -u
: "${CONVNET:?set CONVNET to the convnet binary}"
DATA="${CN_SHARED_DATA:-$(dirname "$0")/../../../shared/data}"
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

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
