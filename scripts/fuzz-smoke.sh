#!/usr/bin/env bash
# Coverage-guided fuzzing of bittube (cargo +nightly fuzz, libFuzzer, AddressSanitizer).
#
#   scripts/fuzz-smoke.sh                 every target for FUZZ_SECONDS (default 15) each
#   scripts/fuzz-smoke.sh --campaign      every target for FUZZ_SECONDS (default 1800) each
#   scripts/fuzz-smoke.sh --seeds         regenerate fuzz/seeds/ first (fuzz/seedgen)
#   scripts/fuzz-smoke.sh parcel_read ... only these targets
#
# Each target first replays the crashes found so far, minimised, in fuzz/regressions/<target>/
# (in git; tests/fuzz_regressions.rs replays the same cases in the normal suite), then runs
# from its corpus fuzz/corpus/<target>/ (kept between runs, gitignored; new inputs go there)
# and the seeds fuzz/seeds/<target>/ (in git). The run fails on any crash,
# panic, leak, timeout (FUZZ_TIMEOUT, default 30 s per input) or out-of-memory; the input
# that did it is in fuzz/artifacts/<target>/. At the end a table gives, per target, the
# executions, the coverage (cov: edges, ft: features) and the corpus size, from libFuzzer's
# final stats (-print_final_stats=1).
#
# Leaks: every target runs with -detect_leaks=1 except bc_stream, whose shim thread and
# manager child allocate while an input runs: libFuzzer then sees mallocs and frees differ on
# every input and runs a full LeakSanitizer scan each time (20x slower). bc_stream checks
# instead that the shim releases every process of an input and that fds stay bounded;
# shim_frames runs the same shim code without threads, with -detect_leaks=1 and exact fd
# accounting.
set -euo pipefail
cd "$(dirname "$0")/.."

campaign=0
seeds=0
targets=()
for arg in "$@"; do
    case "$arg" in
        --campaign) campaign=1 ;;
        --seeds) seeds=1 ;;
        -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
        -*) echo "unknown option $arg" >&2; exit 2 ;;
        *) targets+=("$arg") ;;
    esac
done
if [ "$campaign" = 1 ]; then secs=${FUZZ_SECONDS:-1800}; else secs=${FUZZ_SECONDS:-15}; fi
timeout_s=${FUZZ_TIMEOUT:-30}

if ! rustup run nightly rustc --version >/dev/null 2>&1; then
    rustup toolchain install nightly --profile minimal
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

if [ "$seeds" = 1 ]; then
    (cd fuzz/seedgen && cargo run -q --target-dir ../../target -- ../seeds)
fi

echo "== building the fuzz targets (nightly, ASan, debug assertions)"
cargo +nightly fuzz build
if [ "${#targets[@]}" = 0 ]; then
    mapfile -t targets < <(cargo +nightly fuzz list)
fi
bin=fuzz/target/x86_64-unknown-linux-gnu/release
logs=fuzz/artifacts/logs
mkdir -p "$logs"

stat() { # stat NAME LOG: a value of libFuzzer's final stats
    sed -n "s/^stat::$1: *//p" "$2" | tail -1
}
last_status() { # cov and ft of the last status line
    grep -aE '^#[0-9]+' "$1" | tail -1 | sed -nE 's/.*cov: ([0-9]+) ft: ([0-9]+) corp: ([0-9]+).*/\1 \2 \3/p'
}

failed=()
rows=()
for t in "${targets[@]}"; do
    mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t" "fuzz/seeds/$t"
    leaks=1
    [ "$t" = bc_stream ] && leaks=0
    log="$logs/$t.log"
    if [ -n "$(ls -A "fuzz/regressions/$t" 2>/dev/null)" ]; then
        echo "== $t: replaying fuzz/regressions/$t"
        if ! "$bin/$t" -runs=0 -detect_leaks=0 -timeout="$timeout_s" "fuzz/regressions/$t" \
            >"$logs/$t.regressions.log" 2>&1; then
            grep -aE 'panicked at|ERROR: |Running: ' "$logs/$t.regressions.log" | head -6 || true
            echo "$t: a crash in fuzz/regressions/$t still crashes" >&2
            failed+=("$t(regressions)")
        fi
    fi
    echo "== $t: ${secs}s (log: $log)"
    status=0
    "$bin/$t" -artifact_prefix="fuzz/artifacts/$t/" -max_total_time="$secs" \
        -timeout="$timeout_s" -detect_leaks="$leaks" -print_final_stats=1 \
        "fuzz/corpus/$t" "fuzz/seeds/$t" >"$log" 2>&1 || status=$?
    read -r cov ft corp <<<"$(last_status "$log")" || true
    execs=$(stat number_of_executed_units "$log")
    rate=$(stat average_exec_per_sec "$log")
    rss=$(stat peak_rss_mb "$log")
    result=ok
    if [ "$status" != 0 ]; then
        result="FAILED (exit $status)"
        failed+=("$t")
        grep -aE 'panicked at|ERROR: |SUMMARY: |Test unit written to' "$log" | head -8 || true
    fi
    rows+=("$(printf '%-15s %12s %9s %7s %8s %7s %8s  %s' "$t" "${execs:-?}" "${rate:-?}" \
        "${cov:-?}" "${ft:-?}" "${corp:-?}" "${rss:-?}" "$result")")
done

echo
printf '%-15s %12s %9s %7s %8s %7s %8s  %s\n' target executions exec/s cov ft corpus rss_mb result
for r in "${rows[@]}"; do echo "$r"; done
if [ "${#failed[@]}" != 0 ]; then
    echo "fuzzing found problems in: ${failed[*]} (new inputs in fuzz/artifacts/<target>/)" >&2
    exit 1
fi
