#!/usr/bin/env bash
# convnet train --report and convnet evaluate --report on a small sample of
# ../shared/data/cats_dogs with the real MobileNet 0.25 base: one self-contained HTML file (no
# external references, class names escaped) with every section, which headless Chromium renders
# to a screenshot that is not blank and shows the charts (their line colours) and the photos.
# Skips when chromium or a Python with Pillow is absent.
set -u
: "${CONVNET:?set CONVNET to the convnet binary}"
CHROMIUM=$(command -v chromium || command -v chromium-browser || true)
if [ -z "$CHROMIUM" ]; then
  echo "skip: chromium absent (Debian package chromium; bash scripts/install-deps.sh)"
  exit 77
fi
SRC="${CN_SOURCE_DIR:-$(dirname "$0")/../..}"
PY=""
for p in "${CN_PYTHON:-}" "$SRC/.venv/bin/python" "$SRC/../main/.venv/bin/python" python3; do
  if [ -n "$p" ] && "$p" -c "import PIL" 2>/dev/null; then
    PY=$p
    break
  fi
done
if [ -z "$PY" ]; then
  echo "skip: no Python with Pillow to read the screenshot (set CN_PYTHON)"
  exit 77
fi
. "$(dirname "$0")/lib/cats_dogs.sh"

# 12 training and 6 validation images per class, as symbolic links; the cats' class name holds
# HTML's special characters.
CATS='cats & <kittens> "x"'
for c in cats dogs; do
  name=$c
  [ "$c" = cats ] && name=$CATS
  sample "$CD/train/$c" "$TMP/data/train/$name" 12
  sample "$CD/validation/$c" "$TMP/data/val/$name" 6
done

# The screenshot command of docs/report.md.
render() { # HTML PNG
  timeout 120 "$CHROMIUM" --headless --no-sandbox --disable-gpu --hide-scrollbars \
    --window-size=1200,2400 --screenshot="$2" "file://$1" >>"$TMP/err" 2>&1 && [ -s "$2" ]
}

# Nothing loads from elsewhere: every src is a data URI, no URL scheme, no scripts, no links.
self_contained() {
  local html=$1
  ! grep -o 'src="[^"]*' "$html" | grep -qv '^src="data:image/png;base64,' &&
    ! grep -qiE 'https?:|file:|ftp:|<script|<link|<iframe|url\(|@import' "$html"
}

headings() { # HTML HEADING...
  local html=$1
  shift
  for h in "$@"; do grep -qF "<h2>$h" "$html" || { echo "no heading: $h" >"$TMP/err"; return 1; }; done
}

# Not blank: many distinct colours, content over most of the page's height, the charts' line
# colours (train blue, validation orange) and photo-like colour variety present.
looks_drawn() { # PNG MIN_HEIGHT NEED_CHARTS
  "$PY" - "$@" >"$TMP/err" 2>&1 <<'EOF'
import sys
from PIL import Image
im = Image.open(sys.argv[1]).convert("RGB")
min_height, charts = int(sys.argv[2]), sys.argv[3] == "1"
w, h = im.size
px = im.load()
rows = [y for y in range(0, h, 2) if any(px[x, y] != (255, 255, 255) for x in range(0, w, 3))]
colours = len(set(im.getdata()))
def near(c, t): return all(abs(a - b) <= 40 for a, b in zip(c, t))
data = list(im.getdata())
blue = sum(near(c, (31, 89, 191)) for c in data)
orange = sum(near(c, (230, 115, 13)) for c in data)
print(f"size {w}x{h}, drawn rows {rows[0] if rows else None}..{rows[-1] if rows else None}, "
      f"{colours} colours, blue {blue}, orange {orange}")
ok = rows and rows[-1] - rows[0] >= min_height and colours > 1000
if charts: ok = ok and blue > 200 and orange > 200
sys.exit(0 if ok else 1)
EOF
}

REPORT="$TMP/out dir/train report.html"
mkdir -p "$TMP/out dir"
trained() {
  "$CONVNET" train --base "$BASE" --data "$TMP/data/train" --val "$TMP/data/val" --batch 8 \
    --seed 3 --epochs 2 --out "$TMP/m.cnm" --report "$REPORT" >"$TMP/out" 2>"$TMP/err" &&
    grep -q "^wrote $REPORT\$" "$TMP/out" &&
    [ "$(find "$TMP/out dir" -mindepth 1 | wc -l)" -eq 1 ] # no temporary file left
}
check "train --report writes the HTML report" trained
check "the training report has every section" \
  headings "$REPORT" "Loss per epoch" "Accuracy per epoch" "Confusion matrix" \
  "Per-class recall and precision" "Worst-misclassified validation images"
check "the training report charts and tabulates both epochs" \
  eval '[ "$(grep -c "<tr><td class=\"name\">head</td>" "$REPORT")" -eq 2 ] &&
    [ "$(grep -c "alt=\"thumbnail\"" "$REPORT")" -ge 1 ] &&
    grep -q "alt=\"confusion matrix\"" "$REPORT" && grep -q "alt=\"loss per epoch\"" "$REPORT"'
check "the training report is self-contained" self_contained "$REPORT"
check "class names are escaped" \
  eval 'grep -qF "cats &amp; &lt;kittens&gt; &quot;x&quot;" "$REPORT" && ! grep -qF "<kittens>" "$REPORT"'
check "chromium renders the training report" render "$REPORT" "$TMP/train.png"
check "the training screenshot is not blank and shows charts and photos" \
  looks_drawn "$TMP/train.png" 1500 1

EVAL="$TMP/eval.html"
evaluated() {
  "$CONVNET" evaluate -m "$TMP/m.cnm" --data "$TMP/data/val" --report "$EVAL" \
    >"$TMP/out" 2>"$TMP/err" && grep -q "^wrote $EVAL\$" "$TMP/out"
}
check "evaluate --report writes the HTML report" evaluated
check "the evaluation report has every section" \
  headings "$EVAL" "Confusion matrix" "Per-class recall and precision" \
  "Worst-misclassified images"
check "the evaluation report says it has no training history" \
  grep -q "No training history" "$EVAL"
check "the evaluation report is self-contained" self_contained "$EVAL"
check "evaluate scores what training scored" \
  eval 'diff <(grep -o "<tr><td class=\"name\">[^/]*</td><td>[0-9]*</td><td>[0-9]*</td>" "$REPORT") \
    <(grep -o "<tr><td class=\"name\">[^/]*</td><td>[0-9]*</td><td>[0-9]*</td>" "$EVAL") >"$TMP/err"'
check "chromium renders the evaluation report" render "$EVAL" "$TMP/eval.png"
check "the evaluation screenshot is not blank" looks_drawn "$TMP/eval.png" 600 0

# IDX data (no image files): the history, and the validation samples scored without thumbnails.
IDX="$DATA/fashion-mnist/t10k-images-idx3-ubyte.gz"
idx_report() {
  cat >"$TMP/small.json" <<'JSON'
{"class_name": "Sequential", "config": {"name": "small", "layers": [
  {"class_name": "Flatten", "config": {"name": "flat", "batch_input_shape": [null, 28, 28, 1]}},
  {"class_name": "Dense", "config": {"name": "out", "units": 10, "activation": "softmax"}}]}}
JSON
  "$CONVNET" train --model "$TMP/small.json" --data "$IDX" --val-split 0.2 --epochs 2 --batch 64 \
    --seed 1 --out "$TMP/idx.cnm" --report "$TMP/idx.html" >"$TMP/out" 2>"$TMP/err" || return 1
  local acc
  acc=$(grep "^train epoch 2/2" "$TMP/out" | sed 's/.*val_acc \([0-9.]*\).*/\1/')
  grep -q "Scored: validation images, 2000 images, accuracy" "$TMP/idx.html" &&
    grep -q "No images to show (IDX data" "$TMP/idx.html" && self_contained "$TMP/idx.html" &&
    awk -v a="$acc" -v h="$(grep -o 'accuracy [0-9.]*%' "$TMP/idx.html" | head -1 | tr -dc '0-9.')" \
      'BEGIN { exit !(a > 0 && (a * 100 - h) ^ 2 < 0.0001) }'
}
if [ -f "$IDX" ]; then
  check "train --report on IDX data scores the validation samples as training did" idx_report
fi

unwritable() {
  "$CONVNET" evaluate -m "$TMP/m.cnm" --data "$TMP/data/val" --report "$TMP/none/r.html" \
    >"$TMP/out" 2>"$TMP/err"
  [ $? -eq 1 ] && [ "$(wc -l <"$TMP/err")" -eq 1 ] && grep -q '^convnet: ' "$TMP/err" &&
    [ ! -e "$TMP/none" ]
}
check "an unwritable report fails with one line" unwritable

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
