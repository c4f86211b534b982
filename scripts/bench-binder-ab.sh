#!/bin/sh
# Runs two builds of benches/binder.rs in alternating rounds (A B A B ...) and prints, per
# run, the load average and the 0-byte shim figures the goals are about: shim p50, relay
# p50, shim CPU and switches per round trip, relay CPU, shim/relay CPU; then the medians per
# build. CPU time and switches follow the work each way does more than latency does on a
# shared machine.
#
#   scripts/bench-binder-ab.sh A_BINARY B_BINARY [ROUNDS]
#
# Build each binary with `cargo bench --bench binder --no-run` and copy it away (the path
# is printed as "Executable benches/binder.rs (...)"). BINDER_BENCH_ITERS (default here
# 5000) and the other BINDER_BENCH_* settings are passed on; throughput is left out.
set -eu
a=$1
b=$2
rounds=${3:-4}
export BINDER_BENCH_ITERS=${BINDER_BENCH_ITERS:-5000}
export BINDER_BENCH_NO_THROUGHPUT=1
out=$(mktemp -d)
i=0
while [ "$i" -lt "$rounds" ]; do
    for which in A B; do
        if [ "$which" = A ]; then bin=$a; else bin=$b; fi
        "$bin" --bench >"$out/$which.$i" 2>&1
    done
    i=$((i + 1))
done
python3 - "$out" "$rounds" <<'PY'
import re, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
rows = {"A": [], "B": []}
for i in range(rounds):
    for w in "AB":
        text = open(f"{out}/{w}.{i}").read()
        load = re.search(r"load average ([\d.]+)", text).group(1)
        lat = re.search(r"^\s+0 B \|\s+([\d.]+)\s+[\d.]+ \|\s+[\d.]+\s+[\d.]+ \|\s+([\d.]+)", text, re.M)
        cpu = re.search(r"^\s+0 B \|\s+([\d.]+) /\s+[\d.]+ /\s+([\d.]+) \([\d.]+\) \|[^|]*\|\s+([\d.]+) /", text, re.M)
        r = dict(load=float(load), shim=float(lat.group(1)), relay=float(lat.group(2)),
                 cpu=float(cpu.group(1)), sw=float(cpu.group(2)), rcpu=float(cpu.group(3)))
        r["ratio"] = r["cpu"] / r["rcpu"]
        rows[w].append(r)
        print(f"{w} run {i}: load {r['load']:5.2f}  shim p50 {r['shim']:6.1f} µs  relay p50 "
              f"{r['relay']:6.1f} µs  shim CPU {r['cpu']:6.1f} µs  switches {r['sw']:4.1f}  "
              f"relay CPU {r['rcpu']:6.1f} µs  shim/relay CPU {r['ratio']:.2f}×")
for w in "AB":
    m = lambda k: statistics.median(x[k] for x in rows[w])
    lo = lambda k: min(x[k] for x in rows[w])
    print(f"{w} median: shim p50 {m('shim'):.1f} µs, relay p50 {m('relay'):.1f} µs, shim CPU "
          f"{m('cpu'):.1f} µs, {m('sw'):.1f} switches, relay CPU {m('rcpu'):.1f} µs, "
          f"shim/relay CPU {m('ratio'):.2f}×")
    # The least disturbed run of each: CPU time inflates with load, never deflates.
    print(f"{w} least: shim CPU {lo('cpu'):.1f} µs, relay CPU {lo('rcpu'):.1f} µs, "
          f"ratio of the two {lo('cpu') / lo('rcpu'):.2f}×, {lo('sw'):.1f} switches")
PY
rm -r "$out"
