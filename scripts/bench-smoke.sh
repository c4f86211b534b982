#!/usr/bin/env bash
# Smoke run of every bench (a second or a few each, once built): proves they still work,
# stays out of the time budget of a full run. Installs dbus-daemon (the binder bench's D-Bus
# peer) when it is missing. Usage: scripts/bench-smoke.sh
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v dbus-daemon >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -q >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q dbus-daemon >/dev/null
    else
        echo "bench-smoke: dbus-daemon missing and not root: the binder bench skips D-Bus" >&2
    fi
fi
for bench in bittube binder sensor_load input_dispatch; do
    echo "== cargo bench --bench $bench (BITTUBE_BENCH_SMOKE=1)"
    BITTUBE_BENCH_SMOKE=1 cargo bench -q --bench "$bench"
done
echo "bench-smoke: 4 passed, 0 failed"
