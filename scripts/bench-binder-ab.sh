#!/bin/sh
# Runs several builds of benches/binder.rs in alternating rounds (A B C A B C ...) and prints,
# per run, the load average and the 0-byte figures the goals are about: shim p50, relay p50,
# shim CPU and switches per round trip, relay CPU, shim/relay CPU; then per build the
# medians and the least disturbed run (on a shared machine CPU time inflates with load and
# never deflates; switches barely move).
#
#   scripts/bench-binder-ab.sh [-r ROUNDS] A_BINARY B_BINARY [C_BINARY ...]
#
# Build each binary with `cargo bench --bench binder --no-run` and copy it away (its path
# is printed as "Executable benches/binder.rs (...)"). BINDER_BENCH_ITERS (default here
# 5000) and the other BINDER_BENCH_* settings are passed on; throughput is left out.
set -eu
rounds=4
if [ "${1:-}" = -r ]; then
    rounds=$2
    shift 2
fi
[ "$#" -ge 1 ] || { echo "usage: $0 [-r ROUNDS] BINARY..." >&2; exit 2; }
export BINDER_BENCH_ITERS=${BINDER_BENCH_ITERS:-5000}
export BINDER_BENCH_NO_THROUGHPUT=1
out=$(mktemp -d)
i=0
while [ "$i" -lt "$rounds" ]; do
    n=0
    for bin in "$@"; do
        "$bin" --bench >"$out/$n.$i" 2>&1
        n=$((n + 1))
    done
    i=$((i + 1))
done
python3 - "$out" "$rounds" "$@" <<'PY'
import re, statistics, sys
out, rounds, bins = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
names = [chr(ord("A") + n) for n in range(len(bins))]
for n, b in enumerate(bins):
    print(f"{names[n]}: {b}")
rows = {w: [] for w in names}
for i in range(rounds):
    for n, w in enumerate(names):
        text = open(f"{out}/{n}.{i}").read()
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
for w in names:
    m = lambda k: statistics.median(x[k] for x in rows[w])
    lo = lambda k: min(x[k] for x in rows[w])
    print(f"{w} median: shim p50 {m('shim'):.1f} µs, relay p50 {m('relay'):.1f} µs, shim CPU "
          f"{m('cpu'):.1f} µs, {m('sw'):.1f} switches, relay CPU {m('rcpu'):.1f} µs, "
          f"shim/relay CPU {m('ratio'):.2f}×")
    print(f"{w} least: shim p50 {lo('shim'):.1f} µs, relay p50 {lo('relay'):.1f} µs, shim CPU "
          f"{lo('cpu'):.1f} µs, relay CPU {lo('rcpu'):.1f} µs, ratio of the two "
          f"{lo('cpu') / lo('rcpu'):.2f}× (p50 {lo('shim') / lo('relay'):.2f}×), "
          f"{lo('sw'):.1f} switches")
PY
rm -r "$out"
