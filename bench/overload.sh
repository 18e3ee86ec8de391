#!/usr/bin/env bash
# OVERLOAD: Switchboard offered twice the call rate it carries cleanly, beside Kamailio 5.6
# (bench/kamailio/registrar.cfg: the same registrar and record-routing proxy as
# bench/call-load.sh), measured with SIPp over UDP on loopback, all in one run on one machine.
# The target: at twice the highest clean call rate R, goodput stays
# at >= 90 % of R, memory stays bounded, and the server is fully responsive within 2 s after
# the flood ends.
#
# A benchmark, not a test: it prints the machine, the date, the exact commands it ran and
# Markdown tables (a summary, then one row per phase, then the search for R) on stdout;
# progress goes to stderr.
#
#   bench/overload.sh [--rate R | --rate "switchboard=R1 kamailio=R2"] [--duration 30]
#                     [--search-rates "1000 2000 4000"] [--search-seconds 30] [--hold 1000]
#                     [--subjects "switchboard kamailio kamailio-pike"] [--shed-after-ms MS]
#                     [--set SECTION.KEY=VALUE]... [--recovery-limit 30] [--settle 40]
#                     [--quiet-wait 120]
#                     [--switchboard BIN] [--kamailio-shm MIB] [--pin] [--server-cpu PCT]
#                     [--keep] [--out FILE]
#
#   --rate         the clean rate R in calls/s: one figure for every subject, or per subject
#                  (switchboard=R1 kamailio=R2; kamailio-pike takes kamailio's); without it
#                  each server's R is searched for (below)
#   --duration     seconds of the baseline and of the flood (default 30)
#   --search-rates rates tried in the search for R, rising (default 1000 2000 3000 4000 5000
#                  6000 7000 8000 10000 12000 14000 16000)
#   --search-seconds  length of a search step (default: --duration). A rate clean for 5 s
#                  need not be for 30: the daemon's state grows for 32 s (transactions absorb
#                  retransmissions for 64*T1), and at a constant 3,000 calls/s its CPU rose from
#                  0.62 to 0.78 of a core between the first 15 s and 30-45 s; a shorter step
#                  finds an R its own baseline is not clean at
#   --hold         milliseconds between the ACK and the BYE of every call (default 1000)
#   --subjects     switchboard, kamailio, kamailio-pike: which, in this order (default: all)
#   --shed-after-ms  Switchboard's [limits] shed_after_ms (default: not in the config, so the
#                  daemon's own default); short for --set limits.shed_after_ms=MS
#   --set          one more setting of Switchboard's config, SECTION.KEY=VALUE with VALUE as
#                  TOML writes it (repeatable; replaces the benchmark's own value of a key)
#   --recovery-limit  seconds after the flood within which the server must be responsive
#                  again, or the recovery time is reported as ">LIMIT s" (default 30)
#   --settle       the server runs on (probed) until this many seconds after the flood's end,
#                  at least until the recovery is known; its memory then is reported: the
#                  flood's transactions are over after 32 s (default 40)
#   --quiet-wait   before each server start, wait up to this many seconds for the machine to
#                  be quiet (under 15 % busy for a second); 0: do not wait (default 120)
#   --switchboard  use this binary instead of building one
#   --kamailio-shm Kamailio's shared memory pool in MiB (default 4096, as bench/call-load.sh)
#   --pin          the server on CPU 0, the SIPps and the probes on CPU 1 (taskset): on a
#                  2-core machine the load generators then cannot take the server's core
#                  (the flood's caller needs about twice the baseline's CPU); R is searched
#                  for (or given) in the same arrangement
#   --server-cpu   hold the server (every process of it) to PCT % of one core, in a CPU
#                  cgroup with a 2 ms period (root only; bench/lib.sh server_cpu_share). On a
#                  2-core machine the SIPps need more CPU at 2R than the server, so without it
#                  the flood measures them (their sockets drop datagrams); with it (and --pin)
#                  the server is what runs out, as on a machine whose load generators are
#                  elsewhere. R is searched for (or given) under the same share
#   --keep         keep the work directory (logs, SIPp traces, configs) and print its path
#   --out FILE     also write the report to FILE
#
# Subjects:
#   switchboard    the release binary, with bench/call-load.sh's config (no auth, durable
#                  registrations) and the --set settings; load shedding ([limits]
#                  shed_after_ms) as the daemon's default unless set
#   kamailio       Kamailio 5.6, registrar.cfg: its default behaviour, no flood protection
#   kamailio-pike  the same with -A WITH_PIKE: pike and a ban list as Kamailio's example
#                  configuration has them (more than 16 requests in 2 s from an address ban
#                  it for 5 minutes; its requests are dropped). The calling SIPp is one
#                  address, so pike bans it within the first second: this row shows what
#                  pike is for (one flooding address shut out, everyone else served), not
#                  what a flooded Kamailio carries (the kamailio row)
#
# For each subject:
#   1. R: --rate, or a search (kamailio-pike takes kamailio's R): a fresh server per step,
#      --search-rates rising for --search-seconds each, up to the first that is not clean;
#      then the gap between the highest clean rate and that one is halved twice (to the next
#      50 calls/s). Clean: no failed call, no retransmission (caller or callee) and at least
#      90 % of the rate achieved (bench/call-load.sh's method, stricter: 0 instead of 0.1 %).
#   2. A fresh server; the callee's contact registered and an answering SIPp, as in
#      bench/call-load.sh's direct scenario (bench/sipp/call_uas.xml, answers at once).
#   3. Baseline: R calls/s for --duration s (bench/sipp/call_uac.xml: INVITE, 100, 180, 200,
#      ACK, --hold ms, BYE, 200, by the Record-Route set) from a calling SIPp on 127.0.0.2.
#   4. Flood: 2R calls/s for --duration s from a new calling SIPp on 127.0.0.2, once the
#      baseline's calls are over.
#   5. Recovery: the time from the flood's end to the first of 5 consecutive probes answered
#      promptly. A probe is an OPTIONS to the server (no user part: every subject answers it
#      itself) from 127.0.0.1, one every 50 ms from the start of the baseline on; promptly: a
#      2xx within 100 ms (a 503 of load shedding is not). The flood ends when the calling
#      SIPp places its last call (from its statistics, written every second, interpolated);
#      its calls under way go on after that, as a phone's would. The server is stopped
#      --recovery-limit s after the flood's end at the latest ("> LIMIT s": not responsive
#      by then).
#
# Figures: goodput = the flood's successful calls (200 to the INVITE and to the BYE) per
# second of the flood (first call to last call placed); offered = calls placed per second of
# it (under 2R when SIPp could not keep up: it shares the cores, and stops placing calls at
# its limit of open calls); failed = placed - successful, by cause; peak RSS = the highest
# VmRSS of the server's processes sampled every 0.25 s during the flood (Kamailio: the
# largest process and the sum over its processes, an upper bound as shared memory counts in
# each); Switchboard's shed requests and shedding episodes come from its log.
#
# Needs: sipp (Debian: sip-tester), kamailio, python3, ss, cargo (unless --switchboard).
# The Switchboard binary is built with `cargo build --release -p switchboard` into the
# workspace's target directory (CARGO_TARGET_DIR if set).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
# shellcheck source=bench/lib.sh
. "$here/lib.sh"

rate_arg=""
duration=30
search_rates="1000 2000 3000 4000 5000 6000 7000 8000 10000 12000 14000 16000"
search_seconds=""
hold=1000
subjects="switchboard kamailio kamailio-pike"
sb_settings=()
recovery_limit=30
settle=40
quiet_wait=120
sb_bin=""
server_cpu=""
keep=0
out=""
while [ $# -gt 0 ]; do
  case "$1" in
    --rate) rate_arg="$2"; shift ;;
    --duration) duration="$2"; shift ;;
    --search-rates) search_rates="$2"; shift ;;
    --search-seconds) search_seconds="$2"; shift ;;
    --hold) hold="$2"; shift ;;
    --subjects) subjects="$2"; shift ;;
    --shed-after-ms) sb_settings+=("limits.shed_after_ms=$2"); shift ;;
    --set) sb_settings+=("$2"); shift ;;
    --recovery-limit) recovery_limit="$2"; shift ;;
    --settle) settle="$2"; shift ;;
    --quiet-wait) quiet_wait="$2"; shift ;;
    --switchboard) sb_bin="$2"; shift ;;
    --kamailio-shm) kamailio_shm="$2"; shift ;;
    --keep) keep=1 ;;
    --pin) need taskset "util-linux"; pin_server=(taskset -c 0); pin_sipp=(taskset -c 1) ;;
    --server-cpu) server_cpu="$2"; shift ;;
    --out) out="$2"; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown option: $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
search_seconds=${search_seconds:-$duration}
for v in "$duration" $search_rates "$search_seconds" "$recovery_limit" "$kamailio_shm"; do
  [[ "$v" =~ ^[1-9][0-9]*$ ]] || { echo "not a positive integer: $v" >&2; exit 2; }
done
if [ -n "$server_cpu" ]; then
  [[ "$server_cpu" =~ ^[1-9][0-9]?$|^100$ ]] || { echo "--server-cpu: a percentage of one core, 1-100: $server_cpu" >&2; exit 2; }
fi
for v in "$hold" "$quiet_wait" "$settle"; do
  [[ "$v" =~ ^[0-9]+$ ]] || { echo "not a non-negative integer: $v" >&2; exit 2; }
done
for s in $subjects; do
  case "$s" in switchboard|kamailio|kamailio-pike) ;;
    *) echo "unknown subject: $s (switchboard, kamailio, kamailio-pike)" >&2; exit 2 ;; esac
done
for v in "${sb_settings[@]}"; do
  [[ "$v" =~ ^[A-Za-z0-9_.-]+\.[A-Za-z0-9_-]+=.+$ ]] || { echo "not SECTION.KEY=VALUE: $v" >&2; exit 2; }
done
# R per server (switchboard, kamailio): given, or searched for.
declare -A given_rate=()
for v in $rate_arg; do
  if [[ "$v" =~ ^[1-9][0-9]*$ ]]; then
    given_rate[switchboard]=$v; given_rate[kamailio]=$v
  elif [[ "$v" =~ ^(switchboard|kamailio)=([1-9][0-9]*)$ ]]; then
    given_rate[${BASH_REMATCH[1]}]=${BASH_REMATCH[2]}
  else
    echo "--rate: a positive integer, or switchboard=R / kamailio=R: $v" >&2; exit 2
  fi
done

need sipp "apt-get install sip-tester"
need python3 "apt-get install python3"
need timeout "coreutils"
need setsid "util-linux"
need ss "apt-get install iproute2"
case " $subjects " in *" kamailio"*) need kamailio "apt-get install kamailio" ;; esac

# The calling SIPps' address: another than the server's, the callee's contact's and the
# probes' (127.0.0.1), so that pike can tell them apart.
caller_ip=127.0.0.2
python3 -c 'import socket, sys; socket.socket(socket.AF_INET, socket.SOCK_DGRAM).bind((sys.argv[1], 0))' "$caller_ip" 2>/dev/null ||
  { echo "cannot bind $caller_ip (loopback 127.0.0.0/8)" >&2; exit 2; }

# ---------------------------------------------------------------------------------------------
# Processes (bench/lib.sh): the server's group, one group per SIPp, the prober's and the
# memory sampler's groups, the UDP sampler; all stopped on exit.
work=$(mktemp -d "${TMPDIR:-/tmp}/sb-overload.XXXXXX")
sipp_pgid=""
uas_pgids=()
prober_pgid=""
rss_pgid=""
sampler_pid=""

cleanup() {
  local rc=$? g
  trap - EXIT INT TERM
  [ -n "$sipp_pgid" ] && kill_group "$sipp_pgid"
  for g in "${uas_pgids[@]}"; do kill_group "$g"; done
  [ -n "$prober_pgid" ] && kill_group "$prober_pgid"
  [ -n "$rss_pgid" ] && kill_group "$rss_pgid"
  [ -n "$sampler_pid" ] && kill "$sampler_pid" 2>/dev/null
  [ -n "$server_pgid" ] && kill_group "$server_pgid"
  wait 2>/dev/null || true
  server_cpu_release
  leave_work "$rc"
}
on_exit cleanup
[ -z "$server_cpu" ] || server_cpu_share "$server_cpu"

now() { date +%s.%N; }

# ---------------------------------------------------------------------------------------------
# Inputs (bench/lib.sh): the policy, the registering SIPp's injection file; the probe and the
# memory sampler.

write_call_inputs

# The prober: an OPTIONS to 127.0.0.1:PORT every INTERVAL s, from 127.0.0.1, until SIGTERM;
# LOG gets "S n sent" for each and "R n received status" for each response (epoch seconds).
# When it falls behind (a busy machine) it skips probes rather than sending a burst.

# What the probes say: the recovery time after the flood's end (or "pending", or ">LIMIT"),
# and for each window a summary.
#   probe_verdict LOG FLOOD_END LIMIT FINAL(0|1) [NAME START END]...
# Prints the recovery (seconds, ">LIMIT" or "pending") on the first line, then one line per
# window: NAME<TAB>summary.
cat > "$work/verdict.py" <<'PY'
import os, sys, time
sys.dont_write_bytecode = True  # no __pycache__ in bench/
sys.path.insert(0, os.environ["bench_dir"])
from sipp_stats import probe_log
log, f_end, limit, final = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4] == "1"
windows = sys.argv[5:]
INTERVAL, PROMPT, RUN = 0.05, 0.1, 5
sent, answer = probe_log(log)

def prompt(n):
    a = answer.get(n)
    return a is not None and 200 <= a[1] < 300 and a[0] - sent[n] <= PROMPT

after = sorted(n for n, t in sent.items() if t >= f_end)
verdict = "pending"
for i in range(len(after) - RUN + 1):
    if all(prompt(n) for n in after[i:i + RUN]):
        r = max(0.0, answer[after[i]][0] - f_end)
        verdict = f"{r:.2f}" if r <= limit else f">{limit:g}"
        break
else:
    # Nothing prompt by the limit, and the probes that could have been are out.
    if final or time.time() > f_end + limit + RUN * INTERVAL + PROMPT + 0.2:
        verdict = f">{limit:g}"
print(verdict)

def summary(a, b):
    ns = [n for n, t in sent.items() if a <= t < b]
    if not ns:
        return "-"
    lat = sorted((answer[n][0] - sent[n]) * 1000 for n in ns if n in answer)
    ok = sum(1 for n in ns if prompt(n))
    shed = sum(1 for n in ns if n in answer and answer[n][1] == 503)
    pct = lambda p: lat[min(len(lat) - 1, int(p / 100 * len(lat)))] if lat else float("nan")
    text = f"{len(ns)} sent, {100 * ok / len(ns):.0f} % prompt, {100 * len(lat) / len(ns):.0f} % answered"
    if shed:
        text += f" ({shed} with 503)"
    if lat:
        text += f", ms p50 / p99 / max {pct(50):.0f} / {pct(99):.0f} / {lat[-1]:.0f}"
    return text

for i in range(0, len(windows) - 2, 3):
    print(f"{windows[i]}\t{summary(float(windows[i + 1]), float(windows[i + 2]))}")
PY

# The memory sampler: every 0.25 s, "epoch sum-of-VmRSS-kB largest-VmRSS-kB" of the
# processes PID..., until they are all gone or SIGTERM.
cat > "$work/rss.py" <<'PY'
import signal, sys, time
out, pids = open(sys.argv[1], "w", buffering=1), sys.argv[2:]
stop = []
signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
while not stop:
    rss = []
    for p in pids:
        try:
            with open(f"/proc/{p}/status") as f:
                rss += [int(l.split()[1]) for l in f if l.startswith("VmRSS:")]
        except (OSError, ValueError, IndexError):
            pass
    if not rss:
        break
    out.write(f"{time.time():.3f} {sum(rss)} {max(rss)}\n")
    time.sleep(0.25)
PY

# The peak of the memory samples in $1 between epochs $2 and $3, in MiB: the largest process,
# and for several processes ($4) the largest sum too: "largest (sum S)".
rss_peak() { # $1 = file, $2 = from, $3 = to, $4 = processes
  awk -v a="$2" -v b="$3" -v n="$4" '
    $1 >= a && $1 <= b { if ($2 > s) s = $2; if ($3 > m) m = $3; seen = 1 }
    END {
      if (!seen) { print "-"; exit }
      if (n > 1) printf "%.0f (sum %.0f)", m / 1024, s / 1024; else printf "%.0f", m / 1024
    }' "$1" 2>/dev/null || echo "-"
}
rss_at() { # $1 = file, $2 = epoch: the last sample at or before it, in MiB (largest process)
  awk -v t="$2" '$1 <= t { m = $3 } END { if (m == "") print "-"; else printf "%.0f", m / 1024 }' "$1" 2>/dev/null || echo "-"
}

sb_desc="not run"
if [[ " $subjects " == *" switchboard "* ]]; then
  switchboard_binary
  mkdir -p "$work/check"
  write_call_config "$work/check" 5060 "${sb_settings[@]}"
  if ! "$sb_bin" check --config "$work/check/switchboard.toml" > "$work/check/check.out" 2>&1; then
    echo "switchboard check refuses the benchmark's config or policy:" >&2
    cat "$work/check/check.out" >&2
    exit 1
  fi
fi

sipp_call_limit
commands=()

# ---------------------------------------------------------------------------------------------
# Pieces of a run: the server, the callee, a calling phase.

label_of() {
  case "$1" in
    switchboard) echo "switchboard${sb_settings[*]:+ (${sb_settings[*]})}" ;;
    kamailio) echo "kamailio (default)" ;;
    kamailio-pike) echo "kamailio (pike)" ;;
  esac
}

start_subject() { # $1 = subject, $2 = dir, $3 = port
  case "$1" in
    switchboard) write_call_config "$2" "$3" "${sb_settings[@]}"
                 start_switchboard "$2" "$3" ;;
    kamailio) start_kamailio "$2" "$3" ;;
    kamailio-pike) start_kamailio "$2" "$3" -A WITH_PIKE ;;
  esac
  commands+=("  $server_cmd")
}

# The callee: its contact registered, its answering SIPp started (for at most $3 s). Sets
# uas_dir and uas_port; false when the registration failed.
start_callee() { # $1 = dir, $2 = server port, $3 = seconds
  uas_port=$(free_udp_port)
  while [ "$uas_port" = "$2" ]; do uas_port=$(free_udp_port); done
  register_contact "$1/register" "$2" "$uas_port"
  [ -z "$reg_failed" ] || return 1
  uas_dir="$1/uas"
  uas_pgids=()
  start_answering "$uas_dir" "$uas_port" call_uas.xml 0 1000000000 "$3"
}

stop_callee() {
  local g
  for g in "${uas_pgids[@]}"; do kill_group "$g"; wait "$g" 2>/dev/null || true; done
  uas_pgids=()
}

# A calling SIPp on $caller_ip: $3 calls/s for $4 s to the server on port $2, in dir $1.
# Sets phase: lines KEY=VALUE (read them with pv), those of phase_stats and
#   t0, t1          the SIPp's start and exit (epochs)
#   server_cpu      the server's CPU s meanwhile; cores: over the time
#   callee_cpu      the answering SIPp's CPU s meanwhile
#   busy            the machine's CPU s meanwhile (all processes)
#   drops_server    datagrams dropped at the server's socket meanwhile
#   drops_sipp      at the calling SIPp's and the answering SIPp's
call_phase() { # $1 = dir, $2 = server port, $3 = rate, $4 = seconds
  local dir=$1 port=$2 rate=$3 n=$(($3 * $4)) uac_port
  mkdir -p "$dir"
  uac_port=$(free_udp_port "$caller_ip")
  # SIPp gives up on a call 5 s after its last transmission without the expected response,
  # and on the whole run after 3 x seconds + 10 s (+ the hold time); `timeout` is the last
  # resort. Statistics every second (-fd 1): the flood's end is read from them.
  local global=$(($4 * 3 + 10 + (hold + 999) / 1000))
  local cmd=(sipp "127.0.0.1:$port" -sf "$here/sipp/call_uac.xml" -s callee
    -i "$caller_ip" -p "$uac_port" -m "$n" -r "$rate" -rp 1000 -l "$sipp_limit" -d "$hold"
    -buff_size 4194304 -recv_timeout 5000 -timeout "${global}s" -timeout_error
    -max_recv_loops 10000 -max_sched_loops 10000
    -nostdin -trace_screen -trace_err -trace_error_codes -max_log_size 20000000
    -trace_stat -fd 1 -trace_counts -trace_rtt -rtt_freq 100)
  commands+=("  ${cmd[*]}")
  local t0 t1 cpu0 cpu1 ucpu0 ucpu1 d0 d1 u0 u1 b0 b1
  # The calling SIPp's socket is gone once it exits: sampled while it runs.
  : > "$dir/udp-drops"
  udp_sampler "$dir/udp-drops" "$uac_port" &
  sampler_pid=$!
  cpu0=$(server_cpu); ucpu0=$(group_cpu "${uas_pgids[0]}")
  d0=$(udp_drops_now "$port"); u0=$(udp_drops_now "$uas_port"); b0=$(machine_busy)
  sipp_timer_for "$dir/sipp.time"
  t0=$(now)
  run_sipp "$dir" $((global + 20)) "${sipp_timer[@]}" "${cmd[@]}"
  t1=$(now)
  cpu1=$(server_cpu); ucpu1=$(group_cpu "${uas_pgids[0]}")
  d1=$(udp_drops_now "$port"); u1=$(udp_drops_now "$uas_port"); b1=$(machine_busy)
  kill "$sampler_pid" 2>/dev/null || true
  wait "$sampler_pid" 2>/dev/null || true
  sampler_pid=""
  if [ "$sipp_rc" -eq 255 ] || [ "$sipp_rc" -eq 254 ]; then
    echo "  SIPp failed to run (exit $sipp_rc):" >&2
    tail -n 5 "$dir/sipp.out" >&2
  fi
  phase=$(phase_stats "$dir" "$n" "$t0" "$t1"
    awk -v t0="$t0" -v t1="$t1" -v c0="$cpu0" -v c1="$cpu1" -v u0="$ucpu0" -v u1="$ucpu1" \
      -v b0="$b0" -v b1="$b1" 'BEGIN {
      printf "t0=%s\nt1=%s\nserver_cpu=%.1f\ncores=%.2f\ncallee_cpu=%.1f\nbusy=%.1f\n",
        t0, t1, c1 - c0, (c1 - c0) / (t1 - t0), u1 - u0, b1 - b0 }'
    echo "drops_server=$((d1 - d0))"
    echo "drops_sipp=$(($(udp_drops_of "$dir/udp-drops" "$uac_port") + u1 - u0))")
}

# A value of a phase (see call_phase): pv "$phase" KEY; pvd: "-" when there is none.
pv() { sed -n "s/^$2=//p" <<< "$1" | head -n 1; }
pvd() { local v; v=$(pv "$1" "$2"); echo "${v:--}"; }

# The calling SIPp's statistics, lines KEY=VALUE:
#   placed ok failed  calls placed, successful (200 to the INVITE and to the BYE), the rest
#   answered          calls whose INVITE got its 200
#   refused503 refused_other  calls refused with 503, with another response
#   unanswered        calls whose INVITE got no final response (SIPp gave up)
#   after_answer      calls answered whose BYE got no 200 (a call under way not served)
#   causes            SIPp's failure counters and unexpected responses, as words
#   retrans           SIPp's retransmissions
#   first last        the first call (SIPp's start) and the last one placed (epochs)
#   offered goodput   calls placed, successful, per second from the first to the last
#   setup             setup ms (INVITE to 200) p50 / p99 / max
#   sipp_cpu          the calling SIPp's CPU s (GNU time)
phase_stats() { # $1 = dir, $2 = calls to place, $3 = start, $4 = exit (epochs)
  bench_dir=$here python3 - "$@" "$sipp_limit" <<'PY'
import os, re, sys
sys.dont_write_bytecode = True  # no __pycache__ in bench/
sys.path.insert(0, os.environ["bench_dir"])
from sipp_stats import (stat_rows, num, epoch, error_codes, causes_of, message_counts,
                        response_times, pcts)
d, n, t0, t1, limit = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
rows = stat_rows(d)
s = rows[-1] if rows else {}
placed = num(s, "OutgoingCall(C)")
ok = num(s, "SuccessfulCall(C)")
counts = message_counts(d)
# The first 200 received in bench/sipp/call_uac.xml answers the INVITE, the second the BYE.
ok200 = sorted((int(k.split("_")[0]), v) for k, v in counts.items() if re.match(r"^\d+_200_Recv$", k))
answered = ok200[0][1] if ok200 else ok
codes = error_codes(d)
refused503 = codes.get("503", 0)
refused_other = sum(codes.values()) - refused503
unanswered = max(0, placed - answered - refused503 - refused_other)
causes = causes_of(s, d) if s else ["no SIPp statistics"]
if placed < n:
    causes.append(f"placed {placed} of {n}")
if placed - ok - num(s, "FailedCall(C)") > 0:
    causes.append(f"not completed {placed - ok - num(s, 'FailedCall(C)')}")
most_open = max((num(r, "CurrentCall") for r in rows), default=0)
if most_open >= 0.98 * limit:
    causes.append(f"SIPp at its limit of {limit} open calls (placed calls more slowly)")
# The first call: SIPp's start. The last one placed: between the last row before the count
# of placed calls reached its final value and the first row with it, by the rate between.
start = epoch(s, "StartTime") or t0
end, prev = None, None
for r in rows:
    c, t = num(r, "OutgoingCall(C)"), epoch(r)
    if t is None:
        continue
    if c >= placed:
        if prev is None or c == prev[0]:
            end = t
        else:
            end = prev[1] + (t - prev[1]) * (placed - prev[0]) / (c - prev[0])
        break
    prev = (c, t)
if end is None:
    end = t1
span = max(end - start, 1e-3)
try:
    u, sy, _ = open(f"{d}/sipp.time").read().split()[-3:]
    sipp_cpu = f"{float(u) + float(sy):.1f}"
except Exception:
    sipp_cpu = "-"
out = dict(placed=placed, ok=ok, failed=max(0, placed - ok), answered=answered,
           refused503=refused503, refused_other=refused_other, unanswered=unanswered,
           after_answer=max(0, answered - ok), causes="; ".join(causes) or "-",
           retrans=num(s, "Retransmissions(C)"), first=f"{start:.3f}", last=f"{end:.3f}",
           offered=f"{placed / span:.0f}", goodput=f"{ok / span:.0f}",
           setup=pcts([ms for _, ms in response_times(d).get("1", [])]), sipp_cpu=sipp_cpu)
for k, v in out.items():
    print(f"{k}={v}")
PY
}

# The answering SIPp's problems, after it was stopped: incoming, failed, retransmissions,
# still open (tab-separated).
uas_stats() { # $1 = dir
  bench_dir=$here python3 - "$1" <<'PY'
import os, sys
sys.dont_write_bytecode = True  # no __pycache__ in bench/
sys.path.insert(0, os.environ["bench_dir"])
from sipp_stats import last_row, num
u = last_row(sys.argv[1])
if not u:
    print("-\t-\t-\t-")
else:
    inc, ok, failed = num(u, "IncomingCall(C)"), num(u, "SuccessfulCall(C)"), num(u, "FailedCall(C)")
    print(f"{inc}\t{failed}\t{num(u, 'Retransmissions(C)')}\t{max(0, inc - ok - failed)}")
PY
}

# "F (503: a, no answer: b, other responses: c, BYE unanswered: d)" of a phase.
failed_text() { # $1 = phase
  local t
  t="$(pv "$1" failed) (503: $(pv "$1" refused503), no answer: $(pv "$1" unanswered)"
  [ "$(pv "$1" refused_other)" = 0 ] || t+=", other responses: $(pv "$1" refused_other)"
  echo "$t, BYE unanswered: $(pv "$1" after_answer))"
}

# ---------------------------------------------------------------------------------------------
# The search for R.

search_rows=()
declare -A clean_rate=()

# One step: a fresh server, the callee, $3 calls/s for --search-seconds. Sets step_clean.
search_step() { # $1 = server (switchboard, kamailio), $2 = step number, $3 = rate
  local subject=$1 rate=$3 dir="$work/search-$1-$2-$3" port
  mkdir -p "$dir"
  wait_quiet
  port=$(free_udp_port)
  commands+=("search $subject @ $rate/s:")
  start_subject "$subject" "$dir" "$port"
  step_clean=0
  local why="" inc="" ufailed="" uretrans="-" uopen=""
  phase=""
  if start_callee "$dir" "$port" $((search_seconds * 3 + 60)); then
    call_phase "$dir/uac" "$port" "$rate" "$search_seconds"
    sleep 0.3
    stop_callee
    IFS=$'\t' read -r inc ufailed uretrans uopen <<< "$(uas_stats "$dir/uas")"
    [ "$(pv "$phase" failed)" = 0 ] || why+="failed $(pv "$phase" failed) ($(pv "$phase" causes)); "
    [ "$(pv "$phase" retrans)" = 0 ] && [ "$uretrans" = 0 ] ||
      why+="retransmissions caller $(pv "$phase" retrans), callee $uretrans; "
    [ "$ufailed" = 0 ] && [ "$uopen" = 0 ] || why+="callee: failed $ufailed, open $uopen; "
    # Achieved: successful calls per second of placing calls.
    [ "$(( $(pv "$phase" goodput) * 10))" -ge "$((rate * 9))" ] || why+="saturated: $(pv "$phase" goodput)/s; "
    [ -n "$why" ] || step_clean=1
    [ -z "$quiet_note" ] || why+="$quiet_note; "
  else
    why="$reg_failed"
  fi
  stop_server
  why=${why%; }
  echo "    $subject @ $rate/s: $([ "$step_clean" = 1 ] && echo clean || echo "not clean: $why")" >&2
  search_rows+=("| $(label_of "$subject") | $rate | $(pvd "$phase" placed) | $(pvd "$phase" ok) | $(pvd "$phase" setup) | $(pvd "$phase" retrans) / $uretrans | $(pvd "$phase" drops_server) / $(pvd "$phase" drops_sipp) | $(pvd "$phase" server_cpu) | $([ "$step_clean" = 1 ] && echo clean || echo "$why") |")
}

search_rate() { # $1 = server; sets clean_rate[$1] (0: none)
  local subject=$1 best=0 fail="" r step=0
  echo "== $(label_of "$subject"): searching for the clean rate (${search_seconds} s steps)" >&2
  for r in $search_rates; do
    step=$((step + 1))
    search_step "$subject" "$step" "$r"
    if [ "$step_clean" = 1 ]; then best=$r; else fail=$r; break; fi
  done
  # Twice: halve the gap (to 50 calls/s).
  local i mid
  for i in 1 2; do
    [ -n "$fail" ] && [ "$best" -gt 0 ] || break
    mid=$(( (best + fail) / 2 / 50 * 50 ))
    [ "$mid" -gt "$best" ] && [ "$mid" -lt "$fail" ] || break
    step=$((step + 1))
    search_step "$subject" "$step" "$mid"
    if [ "$step_clean" = 1 ]; then best=$mid; else fail=$mid; fi
  done
  clean_rate[$subject]=$best
  echo "  clean rate of $(label_of "$subject"): $best/s" >&2
}

# ---------------------------------------------------------------------------------------------
# The run of a subject: baseline, flood, recovery on one server.

summary_rows=()
phase_rows=()
notes=()

run_subject() { # $1 = subject, $2 = R
  local subject=$1 R=$2 dir="$work/run-$1" port label
  label=$(label_of "$subject")
  mkdir -p "$dir"
  echo "== $label: R = $R/s, baseline ${duration} s, flood $((2 * R))/s for ${duration} s" >&2
  wait_quiet
  local run_quiet_note=$quiet_note
  port=$(free_udp_port)
  commands+=("$label:")
  start_subject "$subject" "$dir" "$port"
  local phase_limit=$((duration * 3 + 10 + (hold + 999) / 1000 + 20))
  local lifetime=$((2 * phase_limit + recovery_limit + settle + 60))
  if ! start_callee "$dir" "$port" "$lifetime"; then
    stop_server
    summary_rows+=("| $label | $R | - | - | - | $reg_failed | - | - |")
    return 0
  fi
  local pids nproc_server
  pids=$(server_pids | tr '\n' ' ')
  nproc_server=$(wc -w <<< "$pids")
  (exec timeout -k 2 "$lifetime" python3 "$work/rss.py" "$dir/rss" $pids) &
  rss_pgid=$!
  (exec timeout -k 2 "$lifetime" "${pin_sipp[@]}" python3 "$here/probe.py" "$port" "$dir/probes" 0.05) &
  prober_pgid=$!
  commands+=("  python3 bench/probe.py $port LOG 0.05 (an OPTIONS every 50 ms from 127.0.0.1)")

  echo "  baseline: $R/s for $duration s" >&2
  call_phase "$dir/baseline" "$port" "$R" "$duration"
  local base=$phase
  echo "    placed $(pv "$base" placed), ok $(pv "$base" ok), failed $(pv "$base" failed), retransmissions $(pv "$base" retrans); $(pv "$base" causes)" >&2

  echo "  flood: $((2 * R))/s for $duration s" >&2
  call_phase "$dir/flood" "$port" "$((2 * R))" "$duration"
  local flood=$phase f_last
  f_last=$(pv "$flood" last)
  echo "    placed $(pv "$flood" placed) ($(pv "$flood" offered)/s), ok $(pv "$flood" ok) ($(pv "$flood" goodput)/s), failed $(pv "$flood" failed); $(pv "$flood" causes)" >&2

  # Recovery: wait for the verdict (at most --recovery-limit s after the flood's end), and
  # until --settle s after the flood's end for the memory.
  local verdict deadline settle_end
  deadline=$(awk -v e="$f_last" -v l="$recovery_limit" 'BEGIN { printf "%.0f", e + l + 2 }')
  settle_end=$(awk -v e="$f_last" -v l="$settle" 'BEGIN { printf "%.0f", e + l }')
  while :; do
    verdict=$(bench_dir=$here python3 "$work/verdict.py" "$dir/probes" "$f_last" "$recovery_limit" 0 | head -n 1)
    [ "$verdict" = pending ] || break
    [ "$(date +%s)" -lt "$deadline" ] || break
    sleep 0.5
  done
  echo "    recovery: $verdict s; the server runs on until $settle s after the flood's end" >&2
  while [ "$(date +%s)" -lt "$settle_end" ]; do sleep 0.5; done
  local t_stop
  t_stop=$(now)
  kill_group "$prober_pgid"; wait "$prober_pgid" 2>/dev/null || true; prober_pgid=""
  kill_group "$rss_pgid"; wait "$rss_pgid" 2>/dev/null || true; rss_pgid=""
  stop_callee
  local inc ufailed uretrans uopen
  IFS=$'\t' read -r inc ufailed uretrans uopen <<< "$(uas_stats "$dir/uas")"
  local rss_base rss_flood rss_before rss_end rss_hwm
  rss_base=$(rss_peak "$dir/rss" "$(pv "$base" t0)" "$(pv "$base" t1)" "$nproc_server")
  rss_flood=$(rss_peak "$dir/rss" "$(pv "$flood" t0)" "$(pv "$flood" t1)" "$nproc_server")
  rss_before=$(rss_at "$dir/rss" "$(pv "$flood" t0)")
  rss_end=$(rss_at "$dir/rss" "$t_stop")
  rss_hwm=$(server_peak_rss)
  if ! kill -0 "$server_pgid" 2>/dev/null; then
    echo "  the server exited during the run; its log:" >&2
    tail -n 20 "$server_log" >&2
    notes+=("$label: the server exited during the run")
  fi
  stop_server
  local server_note
  server_note=$(server_log_note "${subject%-pike}")

  # The probes, final.
  local probe_out recovery
  probe_out=$(bench_dir=$here python3 "$work/verdict.py" "$dir/probes" "$f_last" "$recovery_limit" 1 \
    baseline "$(pv "$base" first)" "$(pv "$base" last)" \
    flood "$(pv "$flood" first)" "$f_last" after "$f_last" "$t_stop")
  recovery=$(sed -n 1p <<< "$probe_out")

  # Shedding (Switchboard's log) or pike's bans (Kamailio's).
  local shed="-"
  case "$subject" in
    switchboard) shed=$(shed_summary "$server_log" "$(pv "$flood" first)" "$f_last") ;;
    kamailio-pike) shed="pike bans: $(grep -c 'pike blocking' "$server_log" || true)" ;;
  esac

  local pct
  pct=$(awk -v g="$(pv "$flood" goodput)" -v r="$R" 'BEGIN { printf "%.0f", 100 * g / r }')
  summary_rows+=("| $label | $R | $(pv "$flood" offered) | $(pv "$flood" goodput) | $pct | $(failed_text "$flood") | $rss_flood | $recovery |")
  notes+=("$label: $(awk -v p="$pct" -v r="$recovery" 'BEGIN {
      printf "goodput >= 90 %% of R: %s (%s %%); responsive within 2 s: %s (%s s)",
        (p >= 90) ? "met" : "not met", p, (r !~ /^>/ && r + 0 <= 2) ? "met" : "not met", r }'); RSS MiB (largest process): $rss_before before the flood, $rss_end ${settle} s after its end; VmHWM $rss_hwm${run_quiet_note:+; $run_quiet_note}")
  local others ph disturbed=""
  for ph in base flood; do
    local v=${!ph} name=baseline rate=$R
    [ "$ph" = flood ] && { name=flood; rate=$((2 * R)); }
    others=$(awk -v b="$(pv "$v" busy)" -v c="$(pv "$v" server_cpu)" -v s="$(pv "$v" sipp_cpu)" -v u="$(pv "$v" callee_cpu)" \
      'BEGIN { o = b - c - u - (s == "-" ? 0 : s); printf "%.1f", o < 0 ? 0 : o }')
    # Over 1/8 of the machine's CPU time went to other processes (as bench/call-load.sh).
    if awk -v o="$others" -v w="$(awk -v a="$(pv "$v" t0)" -v b="$(pv "$v" t1)" 'BEGIN { print b - a }')" -v n="$(nproc)" \
      'BEGIN { exit !(o > n * w / 8) }'; then
      disturbed+="$name: other processes busy ($others CPU s); "
    fi
    [ "$(pv "$v" drops_sipp)" = 0 ] || disturbed+="$name: the SIPps' sockets dropped $(pv "$v" drops_sipp) datagrams; "
    local rss=$rss_base shed_col="-" probes
    [ "$ph" = flood ] && { rss=$rss_flood; shed_col=$shed; }
    probes=$(sed -n "s/^$name\t//p" <<< "$probe_out")
    phase_rows+=("| $label | $name | $rate | $(pv "$v" placed) ($(pv "$v" offered)/s) | $(pv "$v" ok) ($(pv "$v" goodput)/s) | $(failed_text "$v") | $(pv "$v" causes) | $(pv "$v" setup) | $(pv "$v" retrans) | $(pv "$v" drops_server) / $(pv "$v" drops_sipp) | $(pv "$v" server_cpu) ($(pv "$v" cores)) | $(pv "$v" sipp_cpu) + $(pv "$v" callee_cpu) | $others | $rss | $probes | $shed_col |")
  done
  [ -z "$disturbed" ] || notes+=("$label: disturbed, the figures are partly the machine's: ${disturbed%; }")
  phase_rows+=("| $label | after the flood (${settle} s) | - | - | - | - | callee over the run: $inc calls, failed $ufailed, retransmissions $uretrans, open at the end $uopen | - | - | - | - | - | - | $rss_end | $(sed -n "s/^after\t//p" <<< "$probe_out") | recovery $recovery s; $server_note |")
  echo "    goodput $(pv "$flood" goodput)/s ($pct % of R), peak RSS $rss_flood MiB, recovery $recovery s; $shed" >&2
}

# Switchboard's shedding, from its log: the requests shed (its stop line), the episodes (one
# line when shedding begins, one when it ends), when the first began after the flood's
# start and when the last ended after the flood's end.
shed_summary() { # $1 = log, $2 = flood start, $3 = flood end (epochs)
  python3 - "$@" <<'PY'
import datetime, re, sys
log, f0, f1 = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
def at(line):
    m = re.match(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?)Z", line)
    if not m:
        return None
    return datetime.datetime.fromisoformat(m.group(1)).replace(tzinfo=datetime.timezone.utc).timestamp()
total, began, ended = None, [], []
for line in open(log, errors="replace"):
    if "switchboard stopped" in line:
        m = re.search(r"\bshed=(\d+)", line)
        if m:
            total = int(m.group(1))
    elif "behind" in line and ("WARN" in line or "INFO" in line):
        began.append(at(line))
    elif "caught up" in line:
        ended.append(at(line))
parts = [f"shed {total if total is not None else '?'}", f"episodes {len(began)}"]
began = [t for t in began if t is not None]
ended = [t for t in ended if t is not None]
def rel(t, ref, what):
    d = t - ref
    return f"{abs(d):.1f} s {'after' if d >= 0 else 'before'} {what}"
if began:
    parts.append("the first began " + rel(began[0], f0, "the flood's start"))
if ended:
    parts.append("the last ended " + rel(ended[-1], f1, "its end"))
if len(began) > len(ended):
    parts.append("still shedding at the stop")
print(", ".join(parts))
PY
}

# ---------------------------------------------------------------------------------------------

started=$(date -u '+%Y-%m-%d %H:%M:%S UTC')
t_start=$(date +%s)
others_at_start=$( (pgrep -a -x kamailio; pgrep -a -x sipp) 2>/dev/null | cut -c1-120 || true)
loads=()
declare -A rate_of=()
for subject in $subjects; do
  server=$subject
  [ "$subject" = kamailio-pike ] && server=kamailio
  if [ -n "${given_rate[$server]:-}" ]; then
    rate_of[$subject]=${given_rate[$server]}
  else
    [ -n "${clean_rate[$server]:-}" ] || search_rate "$server"
    rate_of[$subject]=${clean_rate[$server]}
  fi
done
for subject in $subjects; do
  loads+=("$subject: $(cut -d' ' -f1-3 /proc/loadavg)")
  if [ "${rate_of[$subject]}" -gt 0 ]; then
    run_subject "$subject" "${rate_of[$subject]}"
  else
    summary_rows+=("| $(label_of "$subject") | none clean | - | - | - | - | - | - |")
  fi
done
run_time=$(($(date +%s) - t_start))

report() {
  echo "# OVERLOAD: Switchboard beside Kamailio at twice the clean call rate"
  echo
  echo "- Date: $started (the run took $((run_time / 60)) min $((run_time % 60)) s)"
  report_machine
  echo "- Load average before each subject: ${loads[*]}"
  echo "- Other SIP processes at the start: ${others_at_start:-none}"
  if [ "$quiet_wait" -gt 0 ]; then
    echo "- Before each server start the run waited for the machine to be under 15 % busy (at most $quiet_wait s): $quiet_waited s in all"
  else
    echo "- No wait for a quiet machine (--quiet-wait 0): other processes may have shared the cores"
  fi
  report_versions
  local settings="none (load shedding as the daemon's default)"
  [ "${#sb_settings[@]}" = 0 ] || settings=${sb_settings[*]}
  echo "- Switchboard: $sb_desc; settings beyond bench/call-load.sh's config: $settings"
  case " $subjects " in *" kamailio"*) report_kamailio
    echo "  kamailio (pike): -A WITH_PIKE, pike 16 requests / 2 s per address, banned 300 s (Kamailio's example config)" ;; esac
  local s how rates_text=""
  for s in $subjects; do
    how=searched
    [ -z "${given_rate[${s%-pike}]:-}" ] || how=given
    rates_text+="$s ${rate_of[$s]}/s ($how); "
  done
  if [ ${#pin_sipp[@]} -gt 0 ]; then
    echo "- CPUs (--pin): the server taskset -c 0, the SIPps and the probes ${pin_sipp[*]}"
  fi
  if [ -n "$server_cpu" ]; then
    echo "- Server CPU (--server-cpu): $server_cpu % of one core, CFS bandwidth in cgroup $server_cgroup (2 ms period)"
  fi
  echo "- R: ${rates_text%; }"
  echo "  baseline R and flood 2R for $duration s each, $hold ms hold, callers on $caller_ip, probes from 127.0.0.1"
  echo
  echo "| subject | R | offered calls/s | goodput calls/s | goodput % of R | failed | peak RSS MiB | recovery s |"
  echo "|---|---:|---:|---:|---:|---|---|---:|"
  local r
  for r in "${summary_rows[@]}"; do echo "$r"; done
  echo
  for r in "${notes[@]}"; do echo "- $r"; done
  echo
  echo "Target: at 2R, goodput >= 90 % of R; memory bounded; responsive within 2 s of the flood's end."
  echo "recovery = from the flood's end (the last call placed) to the first of 5 consecutive probes"
  echo "(OPTIONS from 127.0.0.1 every 50 ms) answered 2xx within 100 ms; \">$recovery_limit\": not by"
  echo "$recovery_limit s. goodput = successful calls (200 to the INVITE and to the BYE) per second"
  echo "of the flood (first to last call placed); offered = calls placed per second of it."
  echo "failed = placed - successful: 503 = refused with 503 (shed); no answer = the INVITE got no"
  echo "final response (SIPp gave up 5 s after its last transmission, or its retransmissions ran"
  echo "out); other responses; BYE unanswered = calls answered whose BYE got no 200 (calls under"
  echo "way that were not served to their end)."
  echo "peak RSS = the highest VmRSS sampled (every 0.25 s) during the flood (Kamailio: the largest"
  echo "process (the sum over its processes, an upper bound: shared memory counts in each))."
  echo
  echo "Phases:"
  echo
  echo "| subject | phase | rate/s | placed | ok | failed | causes | setup ms p50 / p99 / max | retrans caller | UDP drops server / SIPps | server CPU s (cores) | SIPp CPU s caller + callee | others CPU s | RSS MiB | probes | shedding / server |"
  echo "|---|---|---:|---:|---:|---|---|---|---:|---|---|---|---:|---|---|---|"
  for r in "${phase_rows[@]}"; do echo "$r"; done
  echo
  echo "probes: sent in the phase, the share answered 2xx within 100 ms (prompt), the share answered"
  echo "at all (with 503: shed), their answer times. UDP drops = datagrams the kernel dropped at the"
  echo "server's socket / at the SIPps' (receive buffer full). server CPU = during the calling SIPp's"
  echo "run (cores: over its time). others CPU = the machine's CPU time meanwhile minus the server's"
  echo "and the SIPps' (the probes and other processes: large means a busy machine). RSS = the peak"
  echo "in the phase; after the flood: at the end."
  if [ "${#search_rows[@]}" -gt 0 ]; then
    echo
    echo "Search for R ($search_seconds s steps; clean: no failed call, no retransmission, >= 90 % achieved):"
    echo
    echo "| subject | rate/s | placed | ok | setup ms p50 / p99 / max | retrans caller / callee | UDP drops server / SIPps | server CPU s | verdict |"
    echo "|---|---:|---:|---:|---|---|---|---:|---|"
    for r in "${search_rows[@]}"; do echo "$r"; done
  fi
  echo
  echo "Commands:"
  echo
  local c
  for c in "${commands[@]}"; do echo "    $c"; done
  echo
  echo "Switchboard config (port and paths vary) and policy:"
  echo
  if [ -f "$work/check/switchboard.toml" ]; then
    sed 's/^/    /' "$work/check/switchboard.toml"
    echo
    sed 's/^/    /' "$work/policy.toml"
  else
    echo "    (no Switchboard run)"
  fi
}

if [ -n "$out" ]; then report | tee "$out"; else report; fi
