#!/usr/bin/env bash
# Builds the libFuzzer targets in build-fuzz/ (clang, -DCN_FUZZ=ON: ASan + UBSan + libFuzzer, the
# library instrumented too) and runs each for SECONDS (default 90) on its committed seed corpus
# (fuzz/corpus/<target>) and dictionary (fuzz/<target>.dict). Crashes, sanitizer reports, leaks,
# timeouts (-timeout) and allocations past -rss_limit_mb are findings: the input is saved under
# build-fuzz/findings/<target>/ and the script exits 1 after the table. See docs/fuzzing.md.
#   scripts/fuzz.sh [SECONDS]        all targets
#   scripts/fuzz.sh --runs N [SECONDS]   each target until N executions (or SECONDS, default 6 h)
#   CN_FUZZ_TARGETS="npy idx" scripts/fuzz.sh 30
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
runs=
if [[ ${1:-} == --runs ]]; then
  runs=${2:-}
  if ! [[ $runs =~ ^[1-9][0-9]*$ ]]; then
    echo "fuzz.sh: --runs needs a positive whole number, not '$runs'" >&2
    exit 2
  fi
  shift 2
  set -- "${1:-21600}"
fi
seconds=${1:-90}
build=build-fuzz
if ! [[ $seconds =~ ^[1-9][0-9]*$ ]]; then
  echo "fuzz.sh: SECONDS must be a positive whole number, not '$seconds'" >&2
  exit 2
fi
if ! command -v clang >/dev/null; then
  echo "fuzz.sh: clang not found (scripts/install-deps.sh installs it)" >&2
  exit 2
fi

# Longest input per target, in bytes: a little above the largest seed, so mutations stay on the
# structure (HDF5 and checkpoints need room; npy headers and transforms are short).
declare -A max_len=([idx]=16384 [image]=16384 [keras_h5]=65536 [keras_json]=16384 [npy]=4096
  [onnx]=16384 [pytorch]=16384 [safetensors]=16384 [sessions]=65536 [transform]=4096)
targets=(${CN_FUZZ_TARGETS:-$(printf '%s\n' "${!max_len[@]}" | sort)})

cmake -S . -B "$build" -DCN_FUZZ=ON -DCMAKE_C_COMPILER=clang -DCN_NATIVE=OFF \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
mkdir -p "$build/logs"
if ! nice -n 10 cmake --build "$build" -j"${CN_FUZZ_BUILD_JOBS:-$(nproc)}" \
  --target $(printf 'fuzz_%s ' "${targets[@]}") >"$build/logs/build.log" 2>&1; then
  tail -n 40 "$build/logs/build.log" >&2
  echo "fuzz.sh: the build failed (whole log: $build/logs/build.log)" >&2
  exit 2
fi

# Leaks are checked (libFuzzer does so per input); one BLAS/OpenMP thread keeps runs comparable
# and leaves no thread pools behind.
export ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=0
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1
# fuzz_keras_h5 goes through the isolated HDF5 reader, as convnet's users do: in-process, libhdf5
# 1.10's own overflows on corrupt files (docs/keras.md, docs/fuzzing.md) stop it within seconds.
# CN_FUZZ_H5_INPROCESS=1 fuzzes libhdf5 in this process instead.
# The child is killed after CONVNET_H5_TIMEOUT seconds (libhdf5 loops forever on some files;
# the seeds load in milliseconds), well within -timeout: each such input costs that long.
if [[ ${CN_FUZZ_H5_INPROCESS:-0} != 1 ]]; then
  export CN_FUZZ_H5_CHILD=1 CONVNET_H5_TIMEOUT=${CONVNET_H5_TIMEOUT:-0.5}
fi

# Reads "stat::<name>: N" from a libFuzzer log (printed with -print_final_stats=1, also after a
# crash); falls back to the last "#N" status line for the execution count.
fuzz_stat() {
  local v
  v=$(sed -n "s/^stat::$2: *\([0-9]*\).*/\1/p" "$1" | tail -n1)
  if [[ -z $v && $2 == number_of_executed_units ]]; then
    v=$(sed -n 's/^#\([0-9][0-9]*\).*/\1/p' "$1" | tail -n1)
  fi
  echo "${v:-?}"
}

failed=0
rows=()
for t in "${targets[@]}"; do
  exe=$build/fuzz_$t
  work=$build/corpus/$t findings=$build/findings/$t log=$build/logs/$t.log
  mkdir -p "$work" "$findings"
  args=(-max_total_time="$seconds" -max_len="${max_len[$t]:-16384}" -timeout=10
    -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$findings/")
  [[ -z $runs ]] || args+=(-runs="$runs")
  [[ -f fuzz/$t.dict ]] && args+=(-dict="fuzz/$t.dict")
  # New inputs go to build-fuzz/corpus/<target>; the committed seeds are only read.
  dirs=("$work")
  [[ -d fuzz/corpus/$t ]] && dirs+=("fuzz/corpus/$t")
  echo "fuzz.sh: $t for ${runs:+$runs executions or }${seconds} s" >&2
  start=$(date +%s)
  before=$(ls "$findings" | grep -c '^crash-' || true)
  slow_before=$(ls "$findings" | grep -c '^slow-unit-' || true)
  rc=0
  nice -n 10 "$exe" "${args[@]}" "${dirs[@]}" >"$log" 2>&1 || rc=$?
  took=$(($(date +%s) - start))
  result=ok
  # A reader child that dies on an input (libhdf5) leaves libFuzzer's crash file behind although
  # the load failed cleanly in the target: counted, not a finding.
  contained=$(($(ls "$findings" | grep -c '^crash-' || true) - before))
  ((contained == 0)) || result="ok ($contained inputs crashed the HDF5 reader child, contained)"
  # libFuzzer also saves inputs slower than 10 s (-report_slow_units): worth a look, not failures.
  slow=$(($(ls "$findings" | grep -c '^slow-unit-' || true) - slow_before))
  ((slow == 0)) || result="$result, $slow slow inputs saved"
  if ((rc != 0)); then
    failed=1
    artifact=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -n1)
    kind=$(grep -m1 -o -E 'ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer): [a-z-]+|runtime error' "$log" || true)
    result="FINDING (${kind:-exit $rc}) ${artifact:-see $log}"
  fi
  rows+=("$(printf '%-12s %8s %12s %8s  %s' "$t" "$took" "$(fuzz_stat "$log" number_of_executed_units)" \
    "$(fuzz_stat "$log" average_exec_per_sec)" "$result")")
done

printf '\n%-12s %8s %12s %8s  %s\n' target seconds executions exec/s result
printf '%s\n' "${rows[@]}"
if ((failed)); then
  echo "fuzz.sh: findings above; logs in $build/logs, inputs in $build/findings" >&2
  exit 1
fi
