#!/bin/bash
# run.sh: runs every libFuzzer target of a `-DSDW_FUZZ=ON` build folder and
# prints one summary line per target (executions, corpus, coverage).
#
#   run.sh -t SECONDS BUILD_DIR [TARGET...]   each target for SECONDS (fuzz-smoke)
#   run.sh -r RUNS    BUILD_DIR [TARGET...]   each target for RUNS executions (fuzz)
#   -j JOBS: targets run side by side (default 1)
#
# Inputs for a target: its committed seeds (tests/fuzz/corpus/<target>/, kept
# small), seeds generated here from tests/data (BUILD_DIR/seeds/<target>/), and
# its dictionary tests/fuzz/<target>.dict if there is one. What it finds goes
# into BUILD_DIR/corpus/<target>/, emptied first so every run starts from the
# same seeds; crashes, leaks and timeouts into BUILD_DIR/artifacts/, the log
# into BUILD_DIR/logs/<target>.log. Any sanitizer report, leak, timeout
# (-timeout, 25 s an input) or RSS over 2 GB fails the target, and the run.
set -u -o pipefail
mode= limit= jobs=1
while getopts t:r:j: opt; do
    case $opt in
    t) mode=time limit=$OPTARG ;;
    r) mode=runs limit=$OPTARG ;;
    j) jobs=$OPTARG ;;
    *) exit 2 ;;
    esac
done
shift $((OPTIND - 1))
[ -n "$mode" ] && [ $# -ge 1 ] || { echo "usage: $0 -t SECONDS|-r RUNS [-j JOBS] BUILD_DIR [TARGET...]" >&2; exit 2; }
B=$1
shift
SRC=$(cd "$(dirname "$0")/../.." && pwd)
if [ $# -eq 0 ]; then
    set --
    for f in "$B"/fuzz_*; do [ -x "$f" ] && set -- "$@" "$(basename "$f")"; done
fi
[ $# -ge 1 ] || { echo "no fuzz targets in $B" >&2; exit 2; }

# Seeds from the test data, written once per run.
S=$B/seeds
rm -rf "$S" "$B/corpus" "$B/artifacts" "$B/logs"
mkdir -p "$S/fuzz_safetensors" "$S/fuzz_image" "$S/fuzz_sidecar_yaml" "$S/fuzz_json_config" \
         "$B/corpus" "$B/artifacts" "$B/logs" || exit 1
# safetensors: the header and first bytes of every test file (so most are cut
# short of their data: invalid, but with real headers to mutate).
for f in "$SRC"/tests/data/*.safetensors "$SRC"/tests/data/models/*/*.safetensors; do
    head -c 65536 "$f" > "$S/fuzz_safetensors/$(echo "${f#"$SRC"/tests/data/}" | tr / _)"
done
# images: every format and layout (fuzz_image.c's seed mode) and the test PNGs.
"$B/make_image_seeds" "$S/fuzz_image" || exit 1
cp "$SRC"/tests/data/inputs/*.png "$S/fuzz_image/"
for f in "$SRC"/tests/data/models/*/*.yaml; do cp "$f" "$S/fuzz_sidecar_yaml/"; done
# the diffusers configs (not the tokenizers' 1 MB vocab.json files).
find "$SRC/tests/data/models" -name '*.json' -size -64k | while read -r f; do
    cp "$f" "$S/fuzz_json_config/$(echo "${f#"$SRC"/tests/data/models/}" | tr / _)"
done

# One target: prints "name status execs corpus cov ft seconds" into its .sum.
run_one() {
    t=$1
    log=$B/logs/$t.log
    mkdir -p "$B/corpus/$t"
    set -- "$B/$t" "$B/corpus/$t"
    [ -d "$SRC/tests/fuzz/corpus/$t" ] && set -- "$@" "$SRC/tests/fuzz/corpus/$t"
    [ -d "$S/$t" ] && set -- "$@" "$S/$t"
    [ -f "$SRC/tests/fuzz/$t.dict" ] && set -- "$@" "-dict=$SRC/tests/fuzz/$t.dict"
    if [ "$mode" = time ]; then set -- "$@" "-max_total_time=$limit"; else set -- "$@" "-runs=$limit"; fi
    start=$(date +%s)
    OMP_NUM_THREADS=1 ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=1 \
        "$@" -print_final_stats=1 -timeout=25 -rss_limit_mb=2048 -artifact_prefix="$B/artifacts/$t-" \
        >"$log" 2>&1
    rc=$?
    secs=$(($(date +%s) - start))
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    last=$(grep -E '^#[0-9]+[[:space:]]+(DONE|INITED|REDUCE|NEW|pulse|RELOAD)' "$log" | tail -1)
    cov=$(echo "$last" | sed -n 's/.* cov: \([0-9]*\).*/\1/p')
    ft=$(echo "$last" | sed -n 's/.* ft: \([0-9]*\).*/\1/p')
    corp=$(echo "$last" | sed -n 's/.* corp: \([^ ]*\).*/\1/p')
    status=ok
    [ $rc -eq 0 ] || status="FAIL($rc)"
    echo "$t $status ${execs:-?} ${corp:-?} ${cov:-?} ${ft:-?} $secs" > "$B/logs/$t.sum"
    if [ $rc -ne 0 ]; then
        echo "=== $t failed (exit $rc); the end of $log:"
        tail -40 "$log"
    else
        echo "=== $t: ${execs:-?} executions in ${secs}s"
    fi
}

if [ "$jobs" -le 1 ]; then
    for t in "$@"; do run_one "$t"; done
else
    running=0
    for t in "$@"; do
        run_one "$t" &
        if [ $((++running)) -ge "$jobs" ]; then wait -n; running=$((running - 1)); fi
    done
    wait
fi

{
    echo
    printf '%-22s %-9s %12s %16s %7s %7s %6s\n' target status executions "corpus(n/size)" cov ft secs
    for t in "$@"; do
        sum=("$t" "FAIL(none)" ? ? ? ? ?)
        [ -f "$B/logs/$t.sum" ] && read -r -a sum < "$B/logs/$t.sum"
        printf '%-22s %-9s %12s %16s %7s %7s %6s\n' "${sum[@]}"
    done
} > "$B/fuzz-summary.txt"
cat "$B/fuzz-summary.txt"
fails=$(grep -c ' FAIL' "$B/fuzz-summary.txt")
[ "$fails" -eq 0 ] || { echo "$fails fuzz target(s) failed; logs in $B/logs/" >&2; exit 1; }
