#!/usr/bin/env bash
# Builds the libFuzzer targets in build-fuzz/ (clang, -DCN_FUZZ=ON: ASan + UBSan + libFuzzer, the
# library instrumented too) and runs each for SECONDS (default 90) on its committed seed corpus
# (fuzz/corpus/<target>) and dictionary (fuzz/<target>.dict). Crashes, sanitizer reports, leaks,
# timeouts (-timeout) and allocations past -rss_limit_mb are findings: the input is saved under
# build-fuzz/findings/<target>/ and the script exits 1 after the table. See docs/fuzzing.md.
#   scripts/fuzz.sh [SECONDS]        all targets
#   scripts/fuzz.sh --runs N [SECONDS]   each target until N executions (or SECONDS, default 6 h)
#   CN_FUZZ_TARGETS="npy idx" scripts/fuzz.sh 30
#   CN_FUZZ_JOBS=2 scripts/fuzz.sh ...   two fuzzers per target side by side on one corpus (each
#                                       runs N/2 executions; the table sums them)
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
# One reader child serves input after input (CONVNET_H5_KEEP_READER=1), reset between files; a
# new one is forked only after a crash or a timeout: a fork of this sanitized process per load
# cost more than the reading. The deadline is short (the seeds load in a few milliseconds), and
# a single allocation above 256 MB ends the process that makes it: the reader child, contained,
# as its memory bound does in a release build, or the target, a finding. The child's contained
# crashes are frequent, so reports are not symbolized while fuzzing; a finding is replayed with
# symbols into its log.
h5_asan=
if [[ ${CN_FUZZ_H5_INPROCESS:-0} != 1 ]]; then
  export CN_FUZZ_H5_CHILD=1 CONVNET_H5_KEEP_READER=1 CONVNET_H5_TIMEOUT=${CONVNET_H5_TIMEOUT:-0.05}
  h5_asan=:max_allocation_size_mb=256:allocator_may_return_null=1:symbolize=0
fi
jobs=${CN_FUZZ_JOBS:-1}
if ! [[ $jobs =~ ^[1-9][0-9]*$ ]]; then
  echo "fuzz.sh: CN_FUZZ_JOBS must be a positive whole number, not '$jobs'" >&2
  exit 2
fi

# Sums "stat::<name>: N" over the logs of a target's jobs.
fuzz_sum() {
  local name=$1 sum=0 v
  shift
  for f in "$@"; do
    v=$(fuzz_stat "$f" "$name")
    [[ $v == '?' ]] && { echo '?'; return; }
    sum=$((sum + v))
  done
  echo "$sum"
}

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
  [[ -z $runs ]] || args+=(-runs="$(((runs + jobs - 1) / jobs))")
  [[ -f fuzz/$t.dict ]] && args+=(-dict="fuzz/$t.dict")
  # New inputs go to build-fuzz/corpus/<target>; the committed seeds are only read.
  dirs=("$work")
  [[ -d fuzz/corpus/$t ]] && dirs+=("fuzz/corpus/$t")
  echo "fuzz.sh: $t for ${runs:+$runs executions or }${seconds} s" >&2
  start=$(date +%s)
  slow_before=$(ls "$findings" | grep -c '^slow-unit-' || true)
  asan=$ASAN_OPTIONS
  [[ $t == keras_h5 ]] && asan+=$h5_asan
  logs=() pids=()
  for ((j = 1; j <= jobs; j++)); do
    ((jobs == 1)) || log=$build/logs/$t.$j.log
    logs+=("$log")
    ASAN_OPTIONS=$asan nice -n 10 "$exe" "${args[@]}" -seed=$((start + j)) "${dirs[@]}" \
      >"$log" 2>&1 &
    pids+=($!)
  done
  rc=0
  for p in "${pids[@]}"; do wait "$p" || rc=$?; done
  took=$(($(date +%s) - start))
  result=ok
  # libFuzzer also saves inputs slower than 10 s (-report_slow_units): worth a look, not failures.
  slow=$(($(ls "$findings" | grep -c '^slow-unit-' || true) - slow_before))
  ((slow == 0)) || result="$result, $slow slow inputs saved"
  if ((rc != 0)); then
    failed=1
    artifact=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "${logs[@]}" | tail -n1)
    kind=$(cat "${logs[@]}" | grep -m1 -o -E 'ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer): [a-z-]+|runtime error' || true)
    result="FINDING (${kind:-exit $rc}) ${artifact:-see ${logs[*]}}"
    if [[ -n $artifact && -f $artifact ]]; then
      echo "== replayed with symbols: $exe $artifact" >>"${logs[0]}"
      "$exe" "$artifact" >>"${logs[0]}" 2>&1 || true
    fi
  fi
  rows+=("$(printf '%-12s %8s %12s %8s  %s' "$t" "$took" \
    "$(fuzz_sum number_of_executed_units "${logs[@]}")" \
    "$(fuzz_sum average_exec_per_sec "${logs[@]}")" "$result")")
done

printf '\n%-12s %8s %12s %8s  %s\n' target seconds executions exec/s result
printf '%s\n' "${rows[@]}"
if ((failed)); then
  echo "fuzz.sh: findings above; logs in $build/logs, inputs in $build/findings" >&2
  exit 1
fi
