#!/usr/bin/env bash
# Runs the crate's test binaries against the real Linux binder driver.
#
# Boots a Debian kernel (which ships binder_linux.ko) under qemu (TCG, no KVM needed) with a
# small initramfs that loads the binder module (devices=binder,hwbinder,vndbinder), sets
# BITTUBE_REQUIRE_KERNEL=1 and runs every test binary of the crate, built statically. Prints the
# guest's output, then one line `kernel: N passed, M failed`, and exits non-zero when a test
# failed, a test binary gave no libtest summary, or the guest timed out.
#
# Usage: scripts/kernel-binder-test.sh [TEST-NAME | CARGO-TEST-ARG]... [-- TEST-BINARY-ARG...]
#   TEST-NAME        an integration test target (tests/NAME.rs): same as `--test NAME`
#   CARGO-TEST-ARG   passed to `cargo test --no-run` (e.g. --lib, --features tokio)
#   TEST-BINARY-ARG  passed to every test binary in the guest, after --test-threads=1
#                    (e.g. -- --nocapture, or a test name filter)
# Examples:
#   scripts/kernel-binder-test.sh                       # every test binary of the crate
#   scripts/kernel-binder-test.sh kernel_device -- --nocapture
#
# Needs: Debian (apt), root or sudo for `apt-get install qemu-system-x86` when it is missing,
# and the Rust toolchain. Everything it fetches is cached under target/kernel-binder/:
#   kernel/       vmlinuz, binder_linux.ko and the name of the package they came from
#   busybox/      a static busybox, extracted from Debian's busybox-static (not installed)
#   cargo/        the target dir of the static build (the host build is left alone)
# Environment:
#   BITTUBE_KERNEL_TIMEOUT  seconds the guest may run (default 900: the differential tester
#                           alone takes about 270 s for its 100 scenarios under TCG)
#   BITTUBE_KERNEL_PACKAGE  a linux-image package to use instead of the newest one found
#   BITTUBE_KERNEL_DMESG=1  print the guest's binder kernel messages after the tests
#   BITTUBE_KERNEL_MODULES  more modules to load in the guest before the tests (e.g. "evdev
#                           uinput"), taken with their dependencies from the same package
#   BITTUBE_DIFF_SEEDS, BITTUBE_DIFF_SEED, BITTUBE_DIFF_REPLAY
#                           passed into the guest for tests/differential.rs (scenario count,
#                           first seed, scenarios to replay)
#   BITTUBE_KERNEL_SMP      the guest's vCPUs (default 2)
#   BITTUBE_KERNEL_OPT_LEVEL  opt-level of the static build (default 0, the debug build).
#                           2 makes the code run several times faster under TCG (debug
#                           assertions and overflow checks stay on); for long differential
#                           campaigns. Its own target dir (cargo-optN/), so switching does not
#                           rebuild the other.
#
# When tests/differential.rs ran, its count line `differential: N scenarios, M differences`
# is printed again on a line of its own after the `kernel:` line.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
work="$root/target/kernel-binder"
guest_timeout=${BITTUBE_KERNEL_TIMEOUT:-900}
target=x86_64-unknown-linux-gnu
mkdir -p "$work"

say() { echo "kernel-binder-test: $*" >&2; }
die() { say "error: $*"; exit 2; }

# ------------------------------------------------------------------------------------------
# Arguments

cargo_args=()
guest_args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --) shift; guest_args=("$@"); break ;;
        -*) cargo_args+=("$1") ;;
        *) cargo_args+=(--test "$1") ;;
    esac
    shift
done

# ------------------------------------------------------------------------------------------
# Host tools

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"
    elif command -v sudo >/dev/null; then sudo "$@"
    else die "need root to run: $*"
    fi
}

apt_updated=
apt_update_once() {
    if [ -z "$apt_updated" ]; then
        say "apt-get update"
        as_root apt-get update -qq >&2 || die "apt-get update failed"
        apt_updated=1
    fi
}

# apt_install PACKAGE...: installs with apt (updating the lists first if they do not know it).
apt_install() {
    if ! apt-cache show "$@" >/dev/null 2>&1; then apt_update_once; fi
    say "apt-get install $*"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >&2 \
        || { apt_update_once; as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
                 --no-install-recommends "$@" >&2; } \
        || die "apt-get install $* failed"
}

need_tool() { # need_tool COMMAND PACKAGE
    command -v "$1" >/dev/null 2>&1 || apt_install "$2"
    command -v "$1" >/dev/null 2>&1 || die "$1 still missing after installing $2"
}

need_tool qemu-system-x86_64 qemu-system-x86
need_tool cpio cpio
need_tool xz xz-utils
need_tool dpkg-deb dpkg
need_tool cargo cargo # the toolchain is expected; this only makes the message clear

# apt_fetch PACKAGE DIR: downloads PACKAGE's .deb into DIR (never installs it); prints its path.
apt_fetch() {
    local pkg=$1 dir=$2 deb
    mkdir -p "$dir"
    rm -f "$dir"/*.deb
    local opts=()
    # As root, apt would warn that its sandbox user cannot write into $dir.
    [ "$(id -u)" != 0 ] || opts=(-o APT::Sandbox::User=root)
    (cd "$dir" && apt-get download -q "${opts[@]}" "$pkg" >&2) \
        || { apt_update_once; (cd "$dir" && apt-get download -q "${opts[@]}" "$pkg" >&2); } \
        || return 1
    deb=$(ls "$dir"/*.deb 2>/dev/null | head -n1)
    [ -n "$deb" ] || return 1
    echo "$deb"
}

# ------------------------------------------------------------------------------------------
# Static busybox for the guest's /init (extracted, not installed)

busybox="$work/busybox/busybox"
if [ ! -x "$busybox" ]; then
    say "fetching busybox-static"
    deb=$(apt_fetch busybox-static "$work/dl") || die "cannot download busybox-static"
    rm -rf "$work/dl/x" && mkdir -p "$work/dl/x" "$work/busybox"
    dpkg-deb -x "$deb" "$work/dl/x"
    cp "$work/dl/x/bin/busybox" "$busybox.tmp" && mv "$busybox.tmp" "$busybox"
    rm -rf "$work/dl"
fi

# ------------------------------------------------------------------------------------------
# Kernel and binder module (extracted from a Debian linux-image package, not installed)

kdir="$work/kernel"
kernel_candidates() {
    apt-cache search --names-only '^linux-image-[0-9][^ ]*-amd64(-unsigned)?$' 2>/dev/null \
        | awk '{print $1}' | grep -Ev -e '-(cloud|rt)-' -e '-dbg' \
        | sed 's/-unsigned$//' | sort -uVr
}
if [ ! -f "$kdir/vmlinuz" ] || [ ! -f "$kdir/binder_linux.ko" ]; then
    if [ -n "${BITTUBE_KERNEL_PACKAGE:-}" ]; then
        candidates=$BITTUBE_KERNEL_PACKAGE
    else
        candidates=$(kernel_candidates)
        if [ -z "$candidates" ]; then apt_update_once; candidates=$(kernel_candidates); fi
    fi
    [ -n "$candidates" ] || die "apt-cache knows no linux-image-*-amd64 package"
    found=
    tries=0
    for pkg in $candidates; do
        tries=$((tries + 1))
        [ $tries -le 4 ] || break
        say "fetching $pkg"
        deb=$(apt_fetch "$pkg" "$work/dl") || { say "cannot download $pkg"; continue; }
        members=$(dpkg-deb --fsys-tarfile "$deb" | tar -t)
        vmlinuz=$(grep -m1 -E '^\./boot/vmlinuz-' <<<"$members" || true)
        module=$(grep -m1 -E '/binder_linux\.ko(\.xz|\.zst)?$' <<<"$members" || true)
        if [ -z "$vmlinuz" ] || [ -z "$module" ]; then
            say "$pkg ships no binder_linux module; trying an older one"
            continue
        fi
        rm -rf "$work/dl/x" && mkdir -p "$work/dl/x"
        dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$work/dl/x" "$vmlinuz" "$module"
        rm -rf "$kdir.tmp" && mkdir -p "$kdir.tmp"
        cp "$work/dl/x/$vmlinuz" "$kdir.tmp/vmlinuz"
        case "$module" in
            *.xz) xz -dc "$work/dl/x/$module" >"$kdir.tmp/binder_linux.ko" ;;
            *.zst) need_tool zstd zstd
                   zstd -dcq "$work/dl/x/$module" >"$kdir.tmp/binder_linux.ko" ;;
            *) cp "$work/dl/x/$module" "$kdir.tmp/binder_linux.ko" ;;
        esac
        echo "$pkg $(basename "$deb")" >"$kdir.tmp/package"
        rm -rf "$kdir" && mv "$kdir.tmp" "$kdir"
        found=1
        break
    done
    rm -rf "$work/dl"
    [ -n "$found" ] || die "no linux-image package with binder_linux.ko found (tried: $(echo $candidates | cut -d' ' -f1-4))"
fi
say "kernel: $(cat "$kdir/package")"

# ------------------------------------------------------------------------------------------
# Extra modules (BITTUBE_KERNEL_MODULES): extracted with their dependencies (the `depends=`
# of each module's .modinfo) from the same package into kernel/modules/, with `order`
# listing them dependencies first; the guest insmods them in that order.
extra_modules=$(echo ${BITTUBE_KERNEL_MODULES:-} | tr ' -' '\n_')
mdir="$kdir/modules"
if [ -n "$extra_modules" ] && [ "$(cat "$mdir/request" 2>/dev/null)" != "$(echo $extra_modules)" ]; then
    pkg=$(cut -d' ' -f1 "$kdir/package")
    say "fetching modules $(echo $extra_modules) from $pkg"
    deb=$(apt_fetch "$pkg" "$work/dl") || die "cannot download $pkg"
    all=$(dpkg-deb --fsys-tarfile "$deb" | tar -t | grep -E '\.ko(\.xz|\.zst)?$')
    rm -rf "$mdir" "$work/dl/m" && mkdir -p "$mdir" "$work/dl/m"
    declare -A deps_of=()
    todo=$extra_modules
    while [ -n "$todo" ]; do
        paths=()
        for m in $todo; do
            p=$(grep -m1 -E "/$(sed 's/_/[-_]/g' <<<"$m")\.ko(\.xz|\.zst)?$" <<<"$all") \
                || die "$pkg has no module $m"
            paths+=("$p")
        done
        dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$work/dl/m" "${paths[@]}"
        next= i=0
        for m in $todo; do
            p=$work/dl/m/${paths[$i]} i=$((i + 1))
            case "$p" in
                *.xz) xz -dc "$p" >"$mdir/$m.ko" ;;
                *.zst) need_tool zstd zstd; zstd -dcq "$p" >"$mdir/$m.ko" ;;
                *) cp "$p" "$mdir/$m.ko" ;;
            esac
            deps_of[$m]=$(tr '\0' '\n' <"$mdir/$m.ko" | sed -n 's/^depends=//p' | head -n1 | tr ',-' ' _')
            for d in ${deps_of[$m]}; do
                [ -n "${deps_of[$d]+set}" ] || [[ " $(echo $todo $next) " == *" $d "* ]] || next+=" $d"
            done
        done
        todo=$next
    done
    order=()
    visit() {
        local d
        [[ " ${order[*]-} " != *" $1 "* ]] || return 0
        for d in ${deps_of[$1]}; do visit "$d"; done
        order+=("$1")
    }
    for m in $extra_modules; do visit "$m"; done
    printf '%s\n' "${order[@]}" >"$mdir/order"
    echo $extra_modules >"$mdir/request"
    rm -rf "$work/dl"
fi
[ -z "$extra_modules" ] || say "extra modules: $(echo $(cat "$mdir/order"))"

# ------------------------------------------------------------------------------------------
# Static test binaries (in their own target dir, so the host build is not invalidated)

opt_level=${BITTUBE_KERNEL_OPT_LEVEL:-0}
case "$opt_level" in 0|1|2|3) ;; *) die "BITTUBE_KERNEL_OPT_LEVEL must be 0..3" ;; esac
opt_suffix=
[ "$opt_level" = 0 ] || opt_suffix="-opt$opt_level"
say "building static test binaries (opt-level $opt_level)"
json="$work/cargo-test.json"
(
    cd "$root"
    CARGO_TARGET_DIR="$work/cargo$opt_suffix" \
    CARGO_PROFILE_DEV_OPT_LEVEL=$opt_level \
    CARGO_PROFILE_TEST_OPT_LEVEL=$opt_level \
    RUSTFLAGS="-C target-feature=+crt-static" \
    CARGO_PROFILE_DEV_DEBUG=line-tables-only \
    CARGO_PROFILE_TEST_DEBUG=line-tables-only \
        cargo test --no-run --target "$target" --message-format=json-render-diagnostics \
        ${cargo_args[@]+"${cargo_args[@]}"} >"$json"
) || die "cargo test --no-run failed"

# Executables of the build: test binaries run in the guest; the others (crate binaries that
# tests start through CARGO_BIN_EXE_*) are copied along at the same absolute paths.
# (`"test":true` inside "profile" marks a test build; the target object has its own "test".)
artifacts() { # artifacts true|false: executables whose profile.test is $1
    grep '"reason":"compiler-artifact"' "$json" | grep -E "\"profile\":\{[^}]*\"test\":$1" \
        | grep -o '"executable":"[^"]*"' | cut -d'"' -f4 | sort -u
}
mapfile -t tests < <(artifacts true)
mapfile -t others < <(artifacts false)
[ ${#tests[@]} -gt 0 ] || die "the build produced no test binaries"
if command -v file >/dev/null; then
    for t in "${tests[@]}"; do
        if file -L "$t" | grep -q 'dynamically linked'; then die "$t is not statically linked"; fi
    done
fi

# ------------------------------------------------------------------------------------------
# Initramfs

rootfs="$work/initramfs"
rm -rf "$rootfs"
mkdir -p "$rootfs"/{bin,proc,sys,dev,tmp}
cp "$busybox" "$rootfs/bin/busybox"
for tool in sh mount insmod mkdir cat poweroff dmesg grep echo sleep ifconfig; do
    ln -s busybox "$rootfs/bin/$tool"
done
cp "$kdir/binder_linux.ko" "$rootfs/binder_linux.ko"
if [ -n "$extra_modules" ]; then
    mkdir -p "$rootfs/modules" && cp "$mdir"/*.ko "$mdir/order" "$rootfs/modules/"
fi
for f in "${tests[@]}" ${others[@]+"${others[@]}"}; do
    mkdir -p "$rootfs$(dirname "$f")"
    cp "$f" "$rootfs$f"
done
mkdir -p "$rootfs$root"
printf '%s\n' "${tests[@]}" >"$rootfs/tests.list"
diff_env=""
for v in BITTUBE_DIFF_SEEDS BITTUBE_DIFF_SEED BITTUBE_DIFF_REPLAY; do
    if [ -n "${!v:-}" ]; then diff_env+=" $v='${!v//\'/}'"; fi
done
quoted_args=""
for a in ${guest_args[@]+"${guest_args[@]}"}; do
    quoted_args+=" '${a//\'/\'\\\'\'}'"
done
cat >"$rootfs/init" <<EOF
#!/bin/sh
export PATH=/bin HOME=/tmp TMPDIR=/tmp BITTUBE_REQUIRE_KERNEL=1 RUST_BACKTRACE=1$diff_env
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
# /tmp stays a plain directory of the initramfs (writable, in RAM): a tmpfs mounted over it
# would hide the binaries of a checkout that lives under /tmp.
mkdir -p /dev/shm && mount -t tmpfs shm /dev/shm
ifconfig lo 127.0.0.1 up
echo "kernel-binder: kernel \$(cat /proc/sys/kernel/osrelease)"
if insmod /binder_linux.ko devices=binder,hwbinder,vndbinder; then
    echo "kernel-binder: binder module loaded"
else
    echo "kernel-binder: insmod binder_linux.ko failed"
fi
if [ -f /modules/order ]; then
    while read -r m; do
        if insmod /modules/\$m.ko; then echo "kernel-binder: module \$m loaded"
        else echo "kernel-binder: insmod \$m failed"; fi
    done </modules/order
fi
cd '$root'
while read -r t; do
    echo "kernel-binder: running \$t"
    "\$t" --test-threads=1$quoted_args
    echo "kernel-binder: exit \$? \$t"
done </tests.list
if [ "${BITTUBE_KERNEL_DMESG:-}" = 1 ]; then dmesg | grep -i binder; fi
echo "kernel-binder: all done"
poweroff -f
EOF
chmod +x "$rootfs/init"
initrd="$work/initramfs.cpio"
(cd "$rootfs" && find . | LC_ALL=C sort | cpio -o -H newc --quiet >"$initrd")
say "initramfs: $(du -h "$initrd" | cut -f1), ${#tests[@]} test binaries"

# ------------------------------------------------------------------------------------------
# Boot

log="$work/guest.log"
say "booting $(cat "$kdir/package" | cut -d' ' -f1) under qemu (timeout ${guest_timeout}s)"
set +e
timeout -k 5 "$guest_timeout" qemu-system-x86_64 -accel tcg -m 1024 -smp "${BITTUBE_KERNEL_SMP:-2}" -nic none -no-reboot \
    -nographic \
    -kernel "$kdir/vmlinuz" -initrd "$initrd" \
    -append "console=ttyS0 panic=-1 no_timer_check quiet" </dev/null \
    | tr -d '\r' | tee "$log"
qemu_status=${PIPESTATUS[0]}
set -e

# ------------------------------------------------------------------------------------------
# Verdict

passed=0
failed=0
problems=()
[ "$qemu_status" = 0 ] || problems+=("qemu exited with status $qemu_status$([ "$qemu_status" = 124 ] && echo ' (timed out)')")
grep -q '^kernel-binder: binder module loaded' "$log" || problems+=("the binder module did not load")
grep -q '^kernel-binder: all done' "$log" || problems+=("the guest did not finish its run")
# Per test binary, its own summary is the last one before its exit line: summaries before it
# come from child processes the tests started (re-executions of the same binary).
current= last=
while IFS= read -r line; do
    case "$line" in
        "kernel-binder: running "*) current=${line#kernel-binder: running }; last= ;;
        "test result: "*)
            if [[ $line =~ ([0-9]+)\ passed\;\ ([0-9]+)\ failed ]]; then
                last="${BASH_REMATCH[1]} ${BASH_REMATCH[2]}"
            fi ;;
        "kernel-binder: exit "*)
            rest=${line#kernel-binder: exit }
            status=${rest%% *}
            if [ -n "$last" ]; then
                passed=$((passed + ${last% *}))
                failed=$((failed + ${last#* }))
            else
                problems+=("$(basename "$current") printed no test summary")
            fi
            [ "$status" = 0 ] || problems+=("$(basename "$current") exited with status $status")
            current= last= ;;
    esac
done <"$log"
ran=$(grep -c '^kernel-binder: exit ' "$log" || true)
[ "$ran" = "${#tests[@]}" ] || problems+=("$ran of ${#tests[@]} test binaries finished")

# SeaBIOS turns off line wrapping (ESC[?7l); turn it back on for a terminal. The guest's
# output may end without a newline: the total goes on a line of its own.
if [ -t 1 ]; then printf '\033[?7h'; fi
echo
echo "kernel: $passed passed, $failed failed"
# Device tests (evdev, iio) print a line `devices: ran NAME` when they ran on a device and
# `skipped: needs ...` when the guest lacked it.
echo "kernel: $(grep -c '^devices: ran ' "$log" || true) device tests ran, $(grep -c '^skipped: needs ' "$log" || true) skipped"
# The differential tester's count (its own line; the guest may have glued it to other output).
diff_line=$(grep -o 'differential: [0-9]* scenarios, [0-9]* differences' "$log" | tail -n1 || true)
if grep -q '/differential-[0-9a-f]*$' "$rootfs/tests.list"; then
    if [ -n "$diff_line" ]; then
        echo "$diff_line"
    else
        echo "differential: no count (the differential test did not finish)"
        problems+=("the differential test printed no count")
    fi
fi
if [ ${#problems[@]} -gt 0 ] || [ "$failed" != 0 ] || [ "$passed" = 0 ]; then
    for p in ${problems[@]+"${problems[@]}"}; do say "FAIL: $p"; done
    [ "$passed" != 0 ] || say "FAIL: no test passed"
    exit 1
fi
