#!/usr/bin/env bash
# Installs the Debian tools some of hqrun's steps and tests use beyond pip:
#   iverilog, verilator  - the RTL backend's simulators (firmware.backend=rtl)
#   strace, iproute2     - the loopback-only network test (tests/test_network.py traces connect()
#                          calls inside `unshare -n` and brings `lo` up with `ip`)
# Idempotent and quiet: does nothing when all are present. Needs root (CI runs as root); a user
# without root gets one line naming the command, and hqrun then says the same when a step needs
# a tool (the rest of the step still runs; the tests that need it skip with that reason).
set -euo pipefail
missing=()
{ command -v iverilog && command -v vvp; } >/dev/null 2>&1 || missing+=(iverilog)
command -v verilator >/dev/null 2>&1 || missing+=(verilator)
command -v strace >/dev/null 2>&1 || missing+=(strace)
command -v ip >/dev/null 2>&1 || missing+=(iproute2)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "note: some steps and tests need ${missing[*]}: sudo apt-get install ${missing[*]}" >&2
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
log=$(mktemp)
if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}"; } >"$log" 2>&1; then
    cat "$log" >&2
    rm -f "$log"
    echo "error: could not install ${missing[*]}" >&2
    exit 1
fi
rm -f "$log"
echo "installed ${missing[*]}"
