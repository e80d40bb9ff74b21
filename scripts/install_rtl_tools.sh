#!/usr/bin/env bash
# Installs the system simulators of the RTL backend (Debian packages iverilog and verilator).
# Idempotent and quiet: does nothing when both are present. Needs root (CI runs as root); a user
# without root gets one line naming the command, and hqrun's RTL step then says the same when
# it needs the simulator (the rest of the firmware step still runs; the RTL tests skip).
set -euo pipefail
missing=()
command -v iverilog >/dev/null 2>&1 && command -v vvp >/dev/null 2>&1 || missing+=(iverilog)
command -v verilator >/dev/null 2>&1 || missing+=(verilator)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "note: RTL simulation needs ${missing[*]}: sudo apt-get install ${missing[*]}" >&2
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
log=$(mktemp)
if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}"; } >"$log" 2>&1; then
    cat "$log" >&2
    rm -f "$log"
    echo "error: could not install ${missing[*]} (needed by the RTL backend's tests)" >&2
    exit 1
fi
rm -f "$log"
echo "installed ${missing[*]} for the RTL backend"
