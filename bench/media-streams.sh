#!/usr/bin/env bash
# Media engine load: concurrent G.711 streams played by the media engine (crates/net/src/media.rs)
# to loopback sockets, at rising counts, measured by a receiver on another thread of the same
# process from the kernel's receive timestamps: packet interval p50/p99/max, the share within
# 20 ± 2 ms, lost and out-of-order packets, and the media thread's CPU (from /proc).
#
# A benchmark, not a test: it prints the machine, the date, the exact commands it ran and
# Markdown tables on stdout; progress goes to stderr. Nothing is asserted.
#
#   bench/media-streams.sh [--sessions 100,500,1000] [--seconds 10] [--busy 2] [--bridged]
#                          [--ports FIRST-LAST] [--out FILE]
#
#   --sessions  the counts, comma-separated (default 100,500,1000)
#   --seconds   length of each stream's clip (default 10)
#   --busy      spinning threads beside the engine for the loaded runs (default 2: both
#               cores of a 2-core machine busy, as a daemon at full signalling load)
#   --bridged   relay instead of play: the sessions bridged in pairs (sessions/2 bridges), a
#               sender thread playing every session's far end (50 packets/s each), the engine
#               relaying each packet to the pair's other far end, measured there
#   --ports     the engine's port range (default 20000-29999)
#   --out FILE  also write the report to FILE
#
# Four runs: the media thread at the normal policy and under SCHED_FIFO (MediaConfig's
# realtime_priority; needs root or CAP_SYS_NICE, else the engine warns and runs at the normal
# policy), each on a quiet machine and beside the busy threads.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
sessions=100,500,1000
seconds=10
busy=2
bridged=
ports=20000-29999
out=
while [ $# -gt 0 ]; do
  case "$1" in
    --sessions) sessions=$2; shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    --busy) busy=$2; shift 2 ;;
    --bridged) bridged=--bridged; shift ;;
    --ports) ports=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done

echo "building the example (release)…" >&2
(cd "$root" && cargo build --release -q -p switchboard-net --example media_streams)
bin="$root/target/release/examples/media_streams"

report() {
  echo "# Media engine: concurrent G.711 streams${bridged:+, relayed by bridged pairs}"
  echo
  echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(uname -sr), load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo
  for opts in "" "--realtime 10" "--busy $busy" "--busy $busy --realtime 10"; do
    # shellcheck disable=SC2086
    cmd="$bin --sessions $sessions --seconds $seconds --ports $ports $bridged $opts"
    echo "\`$cmd\`"
    echo
    # shellcheck disable=SC2086
    $cmd
    echo
  done
}

if [ -n "$out" ]; then
  report | tee "$out"
else
  report
fi
