#!/usr/bin/env bash
# convnet augment: the preview grid (size, determinism by --seed, every flag accepted), the flags
# shared with train, and bad input: one line on stderr, a non-zero exit, no file written.
set -u
: "${CONVNET:?set CONVNET to the convnet binary}"
DATA="${CN_SHARED_DATA:-$(dirname "$0")/../../../shared/data}"
TMP=$(mktemp -d)
trap 'chmod -R u+rwx "$TMP"; rm -rf "$TMP"' EXIT
. "$(dirname "$0")/lib/check.sh"

# A 40x30 PPM made here, and a real photo when the shared data is present.
ppm() {
  printf 'P6\n40 30\n255\n' >"$1"
  head -c 3600 /dev/urandom >>"$1"
}
ppm "$TMP/a.ppm"
IMAGES=("$TMP/a.ppm")
[ -f "$DATA/images/skimage_chelsea.png" ] && IMAGES+=("$DATA/images/skimage_chelsea.png")
ALL=(--flip --vflip --rotation 30 --shift 0.1 --width-shift 0.1 --height-shift 0.05 --zoom 0.2
  --shear 10 --fill constant --cval 200 --brightness 0.8,1.2 --contrast 0.3 --channel-shift 10
  --tint 20 --hue 0.1 --blur 0.2,1.5 --crop 24x24 --crop-scale 0.3,1 --crop-ratio 0.5,2)

png_size() { # prints "WIDTH HEIGHT" from the IHDR chunk
  od -An -tu1 -j16 -N8 "$1" | awk '{ print $1*16777216 + $2*65536 + $3*256 + $4, $5*16777216 + $6*65536 + $7*256 + $8 }'
}

grid() {
  "$CONVNET" augment "${IMAGES[@]}" "${ALL[@]}" -n 5 --cell 32 --seed 7 --preview "$TMP/g.png" \
    >"$TMP/out" 2>"$TMP/err" || return 1
  local want="$((4 + 6 * 36)) $((4 + ${#IMAGES[@]} * 36))"
  [ "$(png_size "$TMP/g.png")" = "$want" ] || { echo "size $(png_size "$TMP/g.png"), want $want" >"$TMP/err"; return 1; }
  grep -q "wrote $TMP/g.png" "$TMP/out"
}
check "a grid of the images and 5 versions each, every flag on" grid

seeded() {
  "$CONVNET" augment "${IMAGES[@]}" "${ALL[@]}" -n 5 --cell 32 --seed 7 --preview "$TMP/g2.png" \
    >/dev/null 2>"$TMP/err" &&
    "$CONVNET" augment "${IMAGES[@]}" "${ALL[@]}" -n 5 --cell 32 --seed 8 --preview "$TMP/g3.png" \
      >/dev/null 2>"$TMP/err" &&
    cmp -s "$TMP/g.png" "$TMP/g2.png" && ! cmp -s "$TMP/g.png" "$TMP/g3.png"
}
check "the same --seed gives the same grid, another seed another" seeded

helps() {
  "$CONVNET" augment --help >"$TMP/out" 2>"$TMP/err" && grep -q -- "--preview" "$TMP/out" &&
    grep -q -- "--tint" "$TMP/out" && "$CONVNET" train --help >"$TMP/out" 2>"$TMP/err" &&
    grep -q -- "--blur LO,HI" "$TMP/out" && grep -q -- "--crop-scale" "$TMP/out" &&
    "$CONVNET" --help | grep -q augment
}
check "augment --help, and train --help lists the same augmentation flags" helps

# expect_fail STATUS DESCRIPTION ARGS...: exit STATUS, one "convnet: " line, no grid written
expect_fail() {
  local want=$1 what=$2
  shift 2
  rm -f "$TMP/bad.png"
  "$CONVNET" augment "$@" >"$TMP/out" 2>"$TMP/err"
  local rc=$?
  local ok=1
  [ $rc -eq "$want" ] && [ "$(wc -l <"$TMP/err")" -eq 1 ] && grep -q "^convnet: " "$TMP/err" &&
    [ ! -e "$TMP/bad.png" ] && [ -z "$(ls "$TMP/ro" 2>/dev/null)" ] || ok=0
  if [ $ok -eq 1 ]; then
    echo "ok: $what: $(cat "$TMP/err")"
    passed=$((passed + 1))
  else
    echo "FAIL: $what: exit $rc"
    sed 's/^/    /' "$TMP/err"
    failed=$((failed + 1))
  fi
}
OUT=(--preview "$TMP/bad.png")
expect_fail 1 "a missing image" "$TMP/missing.jpg" "${OUT[@]}"
echo "not an image" >"$TMP/text.jpg"
expect_fail 1 "a text file named .jpg" "$TMP/a.ppm" "$TMP/text.jpg" "${OUT[@]}"
expect_fail 1 "a folder that does not exist" "$TMP/a.ppm" --preview "$TMP/nope/g.png"
mkdir "$TMP/ro" && chmod a-w "$TMP/ro"
if [ "$(id -u)" -ne 0 ]; then # root writes anywhere
  expect_fail 1 "a folder without write permission" "$TMP/a.ppm" --preview "$TMP/ro/g.png"
fi
expect_fail 1 "a grid too large" "$TMP/a.ppm" -n 64 --cell 1024 "$TMP/a.ppm" "$TMP/a.ppm" \
  "$TMP/a.ppm" "$TMP/a.ppm" "$TMP/a.ppm" "$TMP/a.ppm" "$TMP/a.ppm" "${OUT[@]}"
expect_fail 2 "no --preview" "$TMP/a.ppm"
expect_fail 2 "no image" "${OUT[@]}"
expect_fail 2 "a preview not named .png" "$TMP/a.ppm" --preview "$TMP/bad.jpg"
expect_fail 2 "-n 0" "$TMP/a.ppm" -n 0 "${OUT[@]}"
expect_fail 2 "--cell 5" "$TMP/a.ppm" --cell 5 "${OUT[@]}"
expect_fail 2 "--seed -1" "$TMP/a.ppm" --seed -1 "${OUT[@]}"
expect_fail 2 "--hue 0.7" "$TMP/a.ppm" --hue 0.7 "${OUT[@]}"
expect_fail 2 "--blur 2,1" "$TMP/a.ppm" --blur 2,1 "${OUT[@]}"
expect_fail 2 "--blur 1," "$TMP/a.ppm" --blur 1, "${OUT[@]}"
expect_fail 2 "--brightness x" "$TMP/a.ppm" --brightness x "${OUT[@]}"
expect_fail 2 "--crop 0x5" "$TMP/a.ppm" --crop 0x5 "${OUT[@]}"
expect_fail 2 "--crop 12" "$TMP/a.ppm" --crop 12 "${OUT[@]}"
expect_fail 2 "--fill mirror" "$TMP/a.ppm" --fill mirror "${OUT[@]}"
expect_fail 2 "--cval 256" "$TMP/a.ppm" --fill constant --cval 256 "${OUT[@]}"
expect_fail 2 "--crop-ratio without --crop-scale" "$TMP/a.ppm" --crop-ratio 1,2 "${OUT[@]}"
expect_fail 2 "--rotation 400" "$TMP/a.ppm" --rotation 400 "${OUT[@]}"
expect_fail 2 "--zoom 1" "$TMP/a.ppm" --zoom 1 "${OUT[@]}"
expect_fail 2 "--shear nan" "$TMP/a.ppm" --shear nan "${OUT[@]}"
expect_fail 2 "an unknown flag" "$TMP/a.ppm" --sharpen 2 "${OUT[@]}"

leftovers() { # no temporary file of the atomic writes is left behind
  [ -z "$(find "$TMP" -name '*.tmp*' -o -name '.*g.png*' 2>/dev/null)" ]
}
check "no temporary files left" leftovers

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
