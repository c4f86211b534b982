#!/usr/bin/env bash
# Coverage-guided fuzzing of bittube (cargo +nightly fuzz, libFuzzer, AddressSanitizer).
#
#   scripts/fuzz-smoke.sh                 every target for FUZZ_SECONDS (default 15) each
#   scripts/fuzz-smoke.sh --campaign      the long campaign (below), one target after another
#   scripts/fuzz-smoke.sh --table         print the campaign table again from its logs
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
# The campaign (issue 10's acceptance: per target >= 10 million executions, or 30 minutes on
# 2 cores) runs, under nice -n 5 and one target at a time (a lock, so a second --campaign
# queues behind the first), each with -fork=2 (two worker processes; crashes, timeouts and
# OOMs are kept in fuzz/artifacts/<target>/ and fuzzing goes on): the fast targets (FUZZ_FAST,
# default command_reader iio_scan evdev_events input_message) until FUZZ_RUNS (default
# 10000000) executions, at most FUZZ_MAX_SECONDS (default 3600); the slow ones (every other
# target) for FUZZ_SECONDS (default 1800). It runs copies of the binaries taken when it
# starts (fuzz/artifacts/campaign/bin-<commit>/), so rebuilding does not disturb it. Per target
# it keeps the log (fuzz/artifacts/campaign/<target>.log), the wall and CPU time (GNU time) and
# one table row (fuzz/artifacts/campaign/<target>.row); --table prints those rows.
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
table=0
targets=()
for arg in "$@"; do
    case "$arg" in
        --campaign) campaign=1 ;;
        --table) table=1 ;;
        --seeds) seeds=1 ;;
        -h|--help) sed -n '2,36p' "$0"; exit 0 ;;
        -*) echo "unknown option $arg" >&2; exit 2 ;;
        *) targets+=("$arg") ;;
    esac
done
if [ "$campaign" = 1 ]; then secs=${FUZZ_SECONDS:-1800}; else secs=${FUZZ_SECONDS:-15}; fi
timeout_s=${FUZZ_TIMEOUT:-30}
camp=fuzz/artifacts/campaign
header='target          executions   wall_s    cpu_s cores     cov       ft  corpus crashes  commit    result'

print_table() {
    echo "$header"
    for t in $(cargo +nightly fuzz list 2>/dev/null || ls fuzz/fuzz_targets | sed 's/\.rs$//'); do
        [ -f "$camp/$t.row" ] && cat "$camp/$t.row"
    done
    return 0
}
if [ "$table" = 1 ]; then
    print_table
    exit 0
fi

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

is_fast() { # is_fast TARGET: run to FUZZ_RUNS executions rather than for a time
    local f
    for f in ${FUZZ_FAST:-command_reader iio_scan evdev_events input_message}; do
        [ "$f" = "$1" ] && return 0
    done
    return 1
}

campaign_one() { # campaign_one TARGET BINDIR COMMIT: one target's campaign run and table row
    local t=$1 bindir=$2 commit=$3 leaks=1 cores mode log="$camp/$t.log" status=0
    [ "$t" = bc_stream ] && leaks=0
    mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t" "fuzz/seeds/$t"
    local before
    before=$(find "fuzz/artifacts/$t" -maxdepth 1 -type f | wc -l)
    if is_fast "$t"; then
        cores=1
        mode=(-runs="${FUZZ_RUNS:-10000000}" -max_total_time="${FUZZ_MAX_SECONDS:-3600}"
            -print_final_stats=1)
    else
        cores=2
        mode=(-fork=2 -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1
            -max_total_time="$secs")
    fi
    echo "== campaign $t at $commit: ${mode[*]} (log: $log, started $(date -u +%H:%M:%S))"
    /usr/bin/time -f '%e %U %S' -o "$camp/$t.time" nice -n 5 "$bindir/$t" \
        -artifact_prefix="fuzz/artifacts/$t/" -timeout="$timeout_s" -detect_leaks="$leaks" \
        "${mode[@]}" "fuzz/corpus/$t" "fuzz/seeds/$t" >"$log" 2>&1 || status=$?
    local cov ft corp execs wall user sys cpu crashes result=ok
    read -r cov ft corp <<<"$(last_status "$log")" || true
    execs=$(grep -aoE '^#[0-9]+' "$log" | tail -1 | tr -d '#')
    read -r wall user sys < <(tail -1 "$camp/$t.time") || true
    cpu=$(awk -v u="${user:-0}" -v s="${sys:-0}" 'BEGIN { printf "%.0f", u + s }')
    corp=$(find "fuzz/corpus/$t" -maxdepth 1 -type f | wc -l)
    crashes=$(( $(find "fuzz/artifacts/$t" -maxdepth 1 -type f | wc -l) - before ))
    if [ "$status" != 0 ] || [ "$crashes" != 0 ]; then
        result="FAILED (exit $status)"
        grep -aE 'panicked at|ERROR: |SUMMARY: |Test unit written to|CRASH' "$log" | head -8 || true
    fi
    printf '%-15s %11s %8.0f %8s %5s %7s %8s %7s %7s  %-9s %s\n' "$t" "${execs:-?}" \
        "${wall:-0}" "$cpu" "$cores" "${cov:-?}" "${ft:-?}" "$corp" "$crashes" "$commit" \
        "$result" | tee "$camp/$t.row"
    [ "$result" = ok ]
}

if [ "$campaign" = 1 ]; then
    mkdir -p "$camp"
    commit=$(git rev-parse --short=9 HEAD)
    # "+": the code fuzzed differs from that commit (uncommitted changes in src/ or fuzz/).
    git diff --quiet HEAD -- src fuzz ':!*.md' || commit="$commit+"
    bindir="$camp/bin-$commit"
    mkdir -p "$bindir"
    for t in "${targets[@]}"; do cp "$bin/$t" "$bindir/$t"; done
    exec 9>"$camp/lock"
    echo "== campaign: waiting for any other campaign run to finish"
    flock 9
    failed=()
    for t in "${targets[@]}"; do
        if [ -n "$(ls -A "fuzz/regressions/$t" 2>/dev/null)" ] &&
            ! "$bindir/$t" -runs=0 -detect_leaks=0 -timeout="$timeout_s" \
                "fuzz/regressions/$t" >"$camp/$t.regressions.log" 2>&1; then
            echo "$t: a crash in fuzz/regressions/$t still crashes" >&2
            failed+=("$t(regressions)")
        fi
        campaign_one "$t" "$bindir" "$commit" || failed+=("$t")
    done
    echo
    print_table
    if [ "${#failed[@]}" != 0 ]; then
        echo "the campaign found problems in: ${failed[*]} (inputs in fuzz/artifacts/<target>/)" >&2
        exit 1
    fi
    exit 0
fi

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
