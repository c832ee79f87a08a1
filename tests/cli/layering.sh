#!/usr/bin/env bash
# Dependencies point down: tools -> viz, synth, dist -> train -> io/zoo -> model -> ops/image -> core ->
# kernels. A file under src/F may include headers of its own folder or of folders below it only
# (folders on one level do not include each other). Public headers (convnet/...) and generated ones are free.
set -u
SRC="${CN_SOURCE_DIR:-$(dirname "$0")/../..}/src"
declare -A level=([kernels]=0 [core]=1 [ops]=2 [image]=2 [model]=3 [io]=4 [zoo]=4 [train]=5 [viz]=6 [synth]=6 [dist]=6)
passed=0 failed=0
while IFS= read -r line; do
  file=${line%%:*}
  from=${file#"$SRC"/}
  from=${from%%/*}
  inc=$(sed -E 's/.*#include "([^"]*)".*/\1/' <<<"$line")
  to=${inc%%/*}
  [[ $inc == */* && -n ${level[$to]+x} ]] || continue # public or generated header
  if [[ $to == "$from" ]] || ((level[$to] < level[$from])); then
    passed=$((passed + 1))
  else
    echo "FAIL: ${file#"$SRC"/} ($from, level ${level[$from]}) includes \"$inc\" ($to, level ${level[$to]})"
    failed=$((failed + 1))
  fi
done < <(grep -rn '^#include "' "$SRC" --include=*.c --include=*.h)
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
