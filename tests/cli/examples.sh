#!/usr/bin/env bash
# The examples/ programs, run briefly on real data: each finishes, learns something, and writes
# the files it promises.
set -u
. "$(dirname "$0")/lib/fashion.sh"

classifier() {
  "$CN_EXAMPLES/fashion_classifier" "$FASHION" 1 3000 "$TMP/f" >"$TMP/out" 2>"$TMP/err" || return 1
  acc=$(sed -n 's/.*test accuracy \([0-9.]*\).*/\1/p' "$TMP/out" | tail -1)
  awk -v a="$acc" 'BEGIN { exit !(a > 0.6) }' || { cat "$TMP/out" >"$TMP/err"; return 1; }
  [ -s "$TMP/f.cnm" ] && [ -s "$TMP/f_mistakes.png" ]
}
check "fashion_classifier: one epoch on 3000 images, test accuracy > 0.6, model and PNG" classifier

autoencoder() {
  "$CN_EXAMPLES/autoencoder" "$FASHION" 1 6000 "$TMP/ae" >"$TMP/out" 2>"$TMP/err" || return 1
  mse=$(sed -n 's/.*reconstruction MSE \([0-9.]*\).*/\1/p' "$TMP/out" | tail -1)
  awk -v m="$mse" 'BEGIN { exit !(m < 0.05) }' || { cat "$TMP/out" >"$TMP/err"; return 1; }
  [ -s "$TMP/ae.cnm" ] && [ -s "$TMP/ae.png" ]
}
check "autoencoder: one epoch on 6000 images, test reconstruction MSE < 0.05, model and PNG" \
  autoencoder

vae() {
  "$CN_EXAMPLES/vae" "$FASHION" 1 6000 "$TMP/vae" >"$TMP/out" 2>"$TMP/err" || return 1
  elbo=$(sed -n 's/.*test ELBO \(-[0-9.]*\).*/\1/p' "$TMP/out" | tail -1)
  awk -v e="$elbo" 'BEGIN { exit !(e != "" && e > -550) }' || { cat "$TMP/out" >"$TMP/err"; return 1; }
  [ -s "$TMP/vae.cnm" ] && [ -s "$TMP/vae.png" ]
}
check "vae: one epoch on 6000 images, test ELBO above -550, model and PNG" vae

siamese() {
  "$CN_EXAMPLES/siamese" "$FASHION" 1 3000 "$TMP/s" >"$TMP/out" 2>"$TMP/err" || return 1
  acc=$(sed -n 's/.*verification accuracy \([0-9.]*\).*/\1/p' "$TMP/out")
  awk -v a="$acc" 'BEGIN { exit !(a != "" && a > 0.75) }' || { cat "$TMP/out" >"$TMP/err"; return 1; }
  [ -s "$TMP/s.cnm" ] && [ -s "$TMP/s.png" ]
}
check "siamese: one epoch of 3000 pairs, test verification accuracy > 0.75, model and PNG" siamese

siamese_triplet() {
  "$CN_EXAMPLES/siamese" --loss triplet "$FASHION" 1 1000 "$TMP/t" >"$TMP/out" 2>"$TMP/err" ||
    return 1
  acc=$(sed -n 's/.*triplet loss: verification accuracy \([0-9.]*\).*/\1/p' "$TMP/out")
  awk -v a="$acc" 'BEGIN { exit !(a != "" && a > 0.7) }' || { cat "$TMP/out" >"$TMP/err"; return 1; }
  [ -s "$TMP/t.cnm" ] && [ -s "$TMP/t.png" ]
}
check "siamese --loss triplet: one epoch of 1000 triplets, test verification accuracy > 0.7" \
  siamese_triplet

dcgan_learns() {
  "$CN_EXAMPLES/dcgan" --data "$FASHION" --epochs 2 --train-samples 1024 --out "$TMP/g" \
    --generate 20 --generate-out "$TMP/g.npy" >"$TMP/out" 2>"$TMP/err" || return 1
  # Two lines "epoch E d_loss X g_loss Y seconds T" with finite losses in a sane range.
  awk '$1 == "epoch" && $3 == "d_loss" && $4 ~ /^[0-9.]+$/ && $4 > 0 && $4 < 5 &&
       $6 ~ /^[0-9.]+$/ && $6 > 0 && $6 < 10 { ok++ } END { exit ok != 2 }' \
    "$TMP/out" || { cat "$TMP/out" >"$TMP/err"; return 1; }
  [ -s "$TMP/g_epoch01.png" ] && [ -s "$TMP/g_epoch02.png" ] && [ -s "$TMP/g_generator.cnm" ] &&
    [ "$(stat -c %s "$TMP/g.npy")" -eq $((128 + 20 * 28 * 28 * 4)) ]
}
check "dcgan: two epochs on 1024 images, finite losses, PNGs, generator and a 20-sample .npy" \
  dcgan_learns

# Two epochs straight, and one epoch, a checkpoint, a new process resuming for the second (on
# another thread count): the same loss lines and a byte-identical generator.
dcgan_resume() {
  local d="$CN_EXAMPLES/dcgan" common="--data $FASHION --train-samples 512 --conditional"
  # shellcheck disable=SC2086
  "$d" $common --epochs 2 --out "$TMP/s" >"$TMP/s.out" 2>"$TMP/err" &&
    "$d" $common --epochs 1 --out "$TMP/r" --checkpoint "$TMP/r.ckpt" >"$TMP/r.out" 2>>"$TMP/err" &&
    "$d" $common --epochs 2 --out "$TMP/r" --resume "$TMP/r.ckpt" --threads 1 \
      >>"$TMP/r.out" 2>>"$TMP/err" || return 1
  sed 's/ seconds .*//' "$TMP/s.out" >"$TMP/s.losses"
  sed 's/ seconds .*//' "$TMP/r.out" >"$TMP/r.losses"
  cmp -s "$TMP/s.losses" "$TMP/r.losses" || { paste "$TMP/s.out" "$TMP/r.out" >"$TMP/err"; return 1; }
  cmp -s "$TMP/s_generator.cnm" "$TMP/r_generator.cnm" || { echo "generators differ" >"$TMP/err"; return 1; }
  # A checkpoint of other settings, or not a checkpoint, is refused in one line.
  # shellcheck disable=SC2086
  ! "$d" $common --epochs 2 --out "$TMP/x" --resume "$TMP/r.ckpt" --label-smoothing \
    >/dev/null 2>"$TMP/err" && [ "$(wc -l <"$TMP/err")" -eq 1 ] && grep -q "r.ckpt" "$TMP/err" &&
    ! "$d" --data "$FASHION" --train-samples 512 --epochs 2 --out "$TMP/x" --resume "$TMP/r.ckpt" \
      >/dev/null 2>"$TMP/err" && [ "$(wc -l <"$TMP/err")" -eq 1 ] && grep -q "r.ckpt" "$TMP/err" &&
    ! "$d" $common --epochs 2 --out "$TMP/x" --resume "$TMP/s_generator.cnm" >/dev/null \
      2>"$TMP/err" && [ "$(wc -l <"$TMP/err")" -eq 1 ]
}
check "dcgan --conditional: 2 epochs = 1 epoch + --resume + 1 epoch (losses, generator bytes)" \
  dcgan_resume

# IDX files of the wrong shape (a single row of bytes as "images", labels that do not match the
# images) stop each example with one line naming the file, not an out-of-bounds read.
bad_idx() {
  local bad="$TMP/bad" ex
  mkdir -p "$bad" &&
    printf '\0\0\10\1\0\0\0\4abcd' | gzip >"$bad/train-images-idx3-ubyte.gz" &&
    cp "$bad/train-images-idx3-ubyte.gz" "$bad/t10k-images-idx3-ubyte.gz" || return 1
  for ex in fashion_classifier autoencoder vae siamese; do
    ! "$CN_EXAMPLES/$ex" "$bad" 1 64 "$TMP/bad_$ex" >/dev/null 2>"$TMP/err" &&
      [ "$(wc -l <"$TMP/err")" -eq 1 ] && grep -q "train-images-idx3-ubyte.gz" "$TMP/err" || return 1
  done
  for ex in dcgan stackgan; do
    ! "$CN_EXAMPLES/$ex" --data "$bad" --epochs 1 --out "$TMP/bad_$ex" >/dev/null 2>"$TMP/err" &&
      [ "$(wc -l <"$TMP/err")" -eq 1 ] && grep -q "train-images-idx3-ubyte.gz" "$TMP/err" || return 1
  done
  # the real images with the test set's 10,000 labels: one label for each image is missing
  ln -sf "$FASHION/train-images-idx3-ubyte.gz" "$bad/train-images-idx3-ubyte.gz" &&
    ln -sf "$FASHION/t10k-labels-idx1-ubyte.gz" "$bad/train-labels-idx1-ubyte.gz" &&
    ! "$CN_EXAMPLES/dcgan" --data "$bad" --conditional --epochs 1 --out "$TMP/bad_l" >/dev/null \
      2>"$TMP/err" && [ "$(wc -l <"$TMP/err")" -eq 1 ] && grep -q "labels-idx1" "$TMP/err"
}
check "examples: IDX files of the wrong shape, labels that do not match: one line, exit 1" bad_idx

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
