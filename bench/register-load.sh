#!/usr/bin/env bash
# REGISTER load: REGISTERs per second through Switchboard (digest auth and no auth, durable
# registrations, in its embedded store or in Redis) beside Kamailio 5.6 (no auth, memory-only
# location table), measured with SIPp over UDP on loopback, all in one run on one machine.
#
# A benchmark, not a test: it prints the machine, the date, the exact commands it ran and a
# Markdown table (one row per subject x offered rate) on stdout; progress goes to stderr.
#
#   bench/register-load.sh [--quick] [--rates "2000 5000 10000"] [--seconds 5] [--users 10000]
#                          [--subjects "sb-auth sb-noauth kamailio"] [--switchboard BIN]
#                          [--kamailio-shm MIB] [--keep] [--out FILE]
#
#   --quick        smoke run: rates "1000 5000", 2 s per step, 1000 users
#   --rates        offered rates in REGISTERs/s, rising (default 2000 5000 10000 20000 30000
#                  40000 60000 80000)
#   --seconds      length of a step: each step sends rate x seconds registrations (default 5)
#   --users        users u0..u(N-1) with password pw-<n> in the policy and the CSV (default 10000)
#   --subjects     which subjects, in this order (default: sb-auth sb-noauth kamailio):
#                    sb-auth          Switchboard, digest auth, state in its embedded store
#                    sb-noauth        Switchboard, no auth, state in its embedded store
#                    sb-redis-auth    Switchboard, digest auth, state in Redis
#                    sb-redis-noauth  Switchboard, no auth, state in Redis
#                    kamailio         Kamailio, no auth, memory-only location table
#                  e.g. --subjects "sb-auth sb-redis-auth kamailio" for both stores beside
#                  Kamailio in one run
#   --switchboard  use this binary instead of building one
#   --kamailio-shm Kamailio's shared memory pool in MiB (default 4096, as bench/call-load.sh)
#   --keep         keep the work directory (logs, SIPp traces, configs) and print its path
#   --out FILE     also write the report to FILE
#
# Each step starts the server afresh (Kamailio collapses past its limit and stays broken for a
# while; Switchboard gets an empty state directory) on a free loopback port, sends the step's
# registrations with one SIPp instance, records what happened and stops the server. A subject
# stops at the first rate where more than 0.1 % of the registrations did not succeed; a step
# whose achieved rate stays under 90 % of the offered one is marked "saturated".
#
# The Redis subjects (sb-redis-*) start a redis-server of their own for every step too, on a
# free loopback port with an empty data directory in the work directory, appending every
# write to its AOF and fsyncing it before it answers (appendonly yes, appendfsync always: a
# REGISTER's 200 means the binding is on disk, as with the embedded store); the daemon's
# [store] gets redis_url and node (and redis_shards = $REDIS_SHARDS when that is set). The
# server CPU column counts both processes, the daemon's and Redis's (so µs/reg compares the
# subjects' whole cost); the Redis column shows Redis's part and its peak RSS. Redis is
# stopped after the daemon at the step's end, and on exit. The work directory is in $TMPDIR
# (default /tmp): its filesystem, printed in the report, decides what an fsync costs both
# stores.
#
# Short steps hide what builds up over time (e.g. state a server keeps per request for tens of
# seconds); a sustained run shows it: --rates 10000 --seconds 40.
#
# Needs: sipp (Debian: sip-tester), kamailio, python3, cargo (unless --switchboard);
# redis-server and redis-cli (Debian: redis-server, redis-tools) for the Redis subjects.
# The Switchboard binary is built with `cargo build --release -p switchboard` into the
# workspace's target directory (CARGO_TARGET_DIR if set).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
# shellcheck source=bench/lib.sh
. "$here/lib.sh"

rates="2000 5000 10000 20000 30000 40000 60000 80000"
seconds=5
users=10000
subjects="sb-auth sb-noauth kamailio"
sb_bin=""
keep=0
out=""
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) rates="1000 5000"; seconds=2; users=1000 ;;
    --rates) rates="$2"; shift ;;
    --seconds) seconds="$2"; shift ;;
    --users) users="$2"; shift ;;
    --subjects) subjects="$2"; shift ;;
    --switchboard) sb_bin="$2"; shift ;;
    --kamailio-shm) kamailio_shm="$2"; shift ;;
    --keep) keep=1 ;;
    --out) out="$2"; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown option: $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
for v in "$seconds" "$users" $rates "$kamailio_shm"; do
  [[ "$v" =~ ^[1-9][0-9]*$ ]] || { echo "not a positive integer: $v" >&2; exit 2; }
done
for s in $subjects; do
  case "$s" in
    sb-auth|sb-noauth|sb-redis-auth|sb-redis-noauth|kamailio) ;;
    *) echo "unknown subject: $s (sb-auth, sb-noauth, sb-redis-auth, sb-redis-noauth, kamailio)" >&2; exit 2 ;;
  esac
done

need sipp "apt-get install sip-tester"
need python3 "apt-get install python3"
need timeout "coreutils"
need setsid "util-linux"
case " $subjects " in *" kamailio "*) need kamailio "apt-get install kamailio" ;; esac
case " $subjects " in *" sb-redis-"*)
  need redis-server "apt-get install redis-server"
  need redis-cli "apt-get install redis-tools" ;;
esac

# ---------------------------------------------------------------------------------------------
# Processes (bench/lib.sh): the server's group, the Redis server's (Redis subjects) and SIPp's,
# killed on exit.
work=$(mktemp -d "${TMPDIR:-/tmp}/sb-register-load.XXXXXX")
server_pgid=""
redis_pgid=""
sipp_pgid=""

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  [ -n "$sipp_pgid" ] && kill_group "$sipp_pgid"
  [ -n "$server_pgid" ] && kill_group "$server_pgid"
  [ -n "$redis_pgid" ] && kill_group "$redis_pgid"
  wait 2>/dev/null || true
  leave_work "$rc"
}
on_exit cleanup

# ---------------------------------------------------------------------------------------------
# Inputs (bench/lib.sh): the policy (N users) and SIPp's injection file.

write_policy "$users" "$work/policy.toml"
write_users_csv "$users" "$work/users.csv"

sb_desc="not run"
if [[ " $subjects " == *" sb-"* ]]; then
  switchboard_binary
fi

# ---------------------------------------------------------------------------------------------
# One step: one SIPp run against a fresh server (bench/lib.sh: write_register_config,
# start_switchboard, start_kamailio, start_redis, stop_server, ...).

sipp_call_limit

commands=()
rows=()
step_no=0

# Sets step_ok=1 when at most 0.1 % of the registrations failed.
run_step() { # $1 = subject, $2 = rate
  local subject=$1 rate=$2
  local n=$((rate * seconds))
  step_no=$((step_no + 1))
  local dir="$work/step-$step_no-$subject-$rate"
  mkdir -p "$dir"
  local port sipp_port
  port=$(free_udp_port)
  sipp_port=$(free_udp_port)
  while [ "$sipp_port" = "$port" ]; do sipp_port=$(free_udp_port); done

  local scenario=register.xml label
  case "$subject" in
    sb-auth) label="switchboard (auth, durable)"; scenario=register_auth.xml
             write_register_config "$dir" "$port" true
             start_switchboard "$dir" "$port" ;;
    sb-noauth) label="switchboard (no auth, durable)"
               write_register_config "$dir" "$port" false
               start_switchboard "$dir" "$port" ;;
    sb-redis-auth) label="switchboard (auth, durable in Redis)"; scenario=register_auth.xml
                   start_redis "$dir/redis"
                   commands+=("$redis_cmd")
                   write_register_config "$dir" "$port" true redis
                   start_switchboard "$dir" "$port" ;;
    sb-redis-noauth) label="switchboard (no auth, durable in Redis)"
                     start_redis "$dir/redis"
                     commands+=("$redis_cmd")
                     write_register_config "$dir" "$port" false redis
                     start_switchboard "$dir" "$port" ;;
    kamailio) label="kamailio (no auth, memory)"
              start_kamailio "$dir" "$port" ;;
    *) echo "unknown subject: $subject" >&2; exit 2 ;;
  esac
  commands+=("$server_cmd")

  # SIPp gives up on a registration 5 s after its last transmission without the expected
  # response, and on the whole run after 3 x seconds + 10 s; `timeout` is the last resort.
  local global=$((seconds * 3 + 10))
  local cmd=(sipp "127.0.0.1:$port" -sf "$here/sipp/$scenario" -inf "$work/users.csv"
    -i 127.0.0.1 -p "$sipp_port" -m "$n" -r "$rate" -rp 1000 -l "$sipp_limit"
    -buff_size 4194304 -recv_timeout 5000 -timeout "${global}s" -timeout_error
    -max_recv_loops 10000 -max_sched_loops 10000
    -default_behaviors all,-bye -nostdin -trace_screen -trace_err -max_log_size 20000000 -trace_stat -fd 3600 -trace_rtt -rtt_freq 1000)
  [ "$scenario" = register_auth.xml ] && cmd+=(-auth_uri switchboard.local)
  commands+=("${cmd[*]}")

  # GNU time, when there, reports SIPp's own CPU use.
  sipp_timer_for "$dir/sipp.time"

  echo "  $label @ $rate/s: $n registrations, server on 127.0.0.1:$port" >&2
  local t0 t1 rc=0
  t0=$(date +%s.%N)
  (
    cd "$dir"
    exec timeout -k 5 $((global + 20)) "${sipp_timer[@]}" "${cmd[@]}" > "$dir/sipp.out" 2>&1 < /dev/null
  ) &
  sipp_pgid=$!
  wait "$sipp_pgid" || rc=$?
  sipp_pgid=""
  t1=$(date +%s.%N)

  local rss cpu redis_col="-" rcpu=""
  rss=$(server_peak_rss)
  cpu=$(server_cpu)
  if [ -n "$redis_pgid" ]; then
    # The server's CPU is the daemon's and Redis's together; the Redis column is its part.
    rcpu=$(redis_cpu)
    redis_col="$rcpu / $(redis_peak_rss)"
    cpu=$(awk -v a="$cpu" -v b="$rcpu" 'BEGIN { printf "%.1f", a + b }')
    if ! kill -0 "$redis_pgid" 2>/dev/null; then
      echo "  redis-server exited during the step; its log:" >&2
      tail -n 20 "$redis_log" >&2
      redis_col="exited"
    fi
  fi
  if ! kill -0 "$server_pgid" 2>/dev/null; then
    echo "  the server exited during the step; its log:" >&2
    tail -n 20 "$server_log" >&2
    rss="exited"; cpu="-"
  fi
  stop_server
  # What the server said (Switchboard's counters, warnings and errors), and Redis.
  local server_note
  server_note=$(server_log_note "$subject")
  if [ -n "$redis_pgid" ]; then
    stop_redis
    server_note="$server_note; $(redis_log_note)"
  fi
  if [ "$rc" -ge 124 ] && [ "$rc" -ne 255 ]; then
    echo "  SIPp was stopped by timeout (exit $rc)" >&2
  fi

  # SIPp's final statistics (the last line of its CSV), its response times (one line per call)
  # and its own CPU use.
  local stats
  stats=$(python3 - "$dir" "$n" "$t0" "$t1" "$seconds" <<'PY'
import csv, glob, statistics, sys
d, n, t0, t1 = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
wall = t1 - t0
def last_row(pattern):
    files = [f for f in glob.glob(pattern) if not f.endswith("_rtt.csv")]
    if not files:
        return {}
    with open(files[0], newline="") as f:
        rows = list(csv.reader(f, delimiter=";"))
    if len(rows) < 2:
        return {}
    return dict(zip(rows[0], rows[-1]))
s = last_row(f"{d}/*_*.csv")
def num(key):
    try:
        return int(s.get(key, "0") or 0)
    except ValueError:
        return 0
ok = num("SuccessfulCall(C)")
sipp_failed = num("FailedCall(C)")
retrans = num("Retransmissions(C)")
causes = []
for key, word in [("FailedUnexpectedMessage(C)", "unexpected"),
                  ("FailedMaxUDPRetrans(C)", "max-retrans"),
                  ("FailedTimeoutOnRecv(C)", "recv-timeout"),
                  ("FailedCallRejected(C)", "rejected"),
                  ("FailedCmdNotSent(C)", "not-sent"),
                  ("FailedOutboundCongestion(C)", "congestion"),
                  ("FailedTimeoutOnSend(C)", "send-timeout")]:
    if num(key):
        causes.append(f"{word} {num(key)}")
unfinished = n - ok - sipp_failed
if not s:
    causes.append("no SIPp statistics")
elif unfinished > 0:
    causes.append(f"not completed {unfinished}")
rts = []
for f in glob.glob(f"{d}/*_rtt.csv"):
    with open(f) as fh:
        for line in fh:
            parts = line.strip().split(";")
            if len(parts) >= 2:
                try:
                    rts.append(float(parts[1]))
                except ValueError:
                    pass
rts.sort()
def pct(p):
    return rts[min(len(rts) - 1, int(p / 100 * len(rts)))] if rts else float("nan")
rt = (f"{statistics.fmean(rts):.1f} / {pct(50):.0f} / {pct(99):.0f} / {rts[-1]:.0f}"
      if rts else "-")
try:
    u, sy, m = open(f"{d}/sipp.time").read().split()[-3:]
    sipp_cpu = f"{float(u) + float(sy):.1f}"
except Exception:
    sipp_cpu = "-"
failed = n - ok
achieved = ok / wall if wall > 0 else 0
rate = n / int(sys.argv[5])
if ok and achieved < 0.9 * rate:
    causes.append("saturated: achieved < 90 % of offered")
print("\t".join([str(ok), str(failed), f"{achieved:.0f}", f"{wall:.1f}", rt, str(retrans),
                 sipp_cpu, ", ".join(causes) or "-"]))
PY
)
  local ok failed achieved wall rt retrans sipp_cpu causes
  IFS=$'\t' read -r ok failed achieved wall rt retrans sipp_cpu causes <<< "$stats"
  local per_reg="-"
  if [ "$ok" -gt 0 ] && [ "$cpu" != "-" ]; then
    per_reg=$(awk -v c="$cpu" -v n="$ok" 'BEGIN { printf "%.0f", c * 1e6 / n }')
  fi
  rows+=("| $label | $rate | $n | $ok | $failed | $achieved | $wall | $rt | $retrans | $cpu ($per_reg) | $redis_col | $sipp_cpu | $rss | $causes | $server_note |")
  echo "    sent $n, ok $ok, failed $failed, achieved $achieved/s in $wall s, RT ms avg/p50/p99/max $rt, retransmissions $retrans, server CPU $cpu s${rcpu:+ (Redis $rcpu s)}, SIPp CPU $sipp_cpu s, peak RSS $rss MiB; $causes (SIPp exit $rc)" >&2
  step_ok=0
  if [ "$((failed * 1000))" -le "$n" ] && [ "$ok" -gt 0 ]; then step_ok=1; fi
  if [ "$rc" -eq 255 ] || [ "$rc" -eq 254 ]; then
    echo "  SIPp failed to run (exit $rc):" >&2
    tail -n 5 "$dir/sipp.out" >&2
    step_ok=0
  fi
}

# ---------------------------------------------------------------------------------------------

started=$(date -u '+%Y-%m-%d %H:%M:%S UTC')
loads=()
for subject in $subjects; do
  echo "== $subject (load average: $(cut -d' ' -f1-3 /proc/loadavg))" >&2
  loads+=("$subject: $(cut -d' ' -f1-3 /proc/loadavg)")
  for rate in $rates; do
    run_step "$subject" "$rate"
    if [ "$step_ok" != 1 ]; then
      echo "  more than 0.1 % failed at $rate/s: next subject" >&2
      break
    fi
  done
done

report() {
  echo "# REGISTER load: Switchboard beside Kamailio"
  echo
  echo "- Date: $started"
  report_machine
  echo "- Load average before each subject: ${loads[*]}"
  report_versions
  echo "- Switchboard: $sb_desc"
  case " $subjects " in *" sb-"*) report_work_fs ;; esac
  case " $subjects " in *" sb-redis-"*) report_redis ;; esac
  case " $subjects " in *" kamailio "*) report_kamailio ;; esac
  echo "- Steps: offered rate x $seconds s of REGISTERs over UDP on 127.0.0.1 from one SIPp"
  echo "  (bench/sipp/register.xml, register_auth.xml), $users users taken in turn (u0..u$((users - 1))),"
  echo "  a fresh server (and empty state directory; with Redis, a fresh Redis server too) for every"
  echo "  step; a subject stops at the first rate where more than 0.1 % fail. SIPp and the server"
  echo "  (with Redis) share the cores."
  echo
  echo "Commands (one per step, in order):"
  echo
  local c
  for c in "${commands[@]}"; do echo "    $c"; done
  echo
  echo "Switchboard config of a step (port and paths vary):"
  echo
  local example
  example=$(ls "$work"/step-*/switchboard.toml 2>/dev/null | head -n 1 || true)
  if [ -n "$example" ]; then sed 's/^/    /' "$example"; else echo "    (no Switchboard step)"; fi
  # A Redis step's [store] (the rest is as above).
  report_redis_store "$example" "With the state in Redis, its [store] section:"
  echo
  echo "| subject | offered/s | sent | ok | failed | achieved/s | wall s | SIPp RT ms avg / p50 / p99 / max | retrans | server CPU s (µs/reg) | Redis CPU s / peak RSS MiB | SIPp CPU s | server peak RSS MiB | failures | server log |"
  echo "|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---|---|---|"
  local r
  for r in "${rows[@]}"; do echo "$r"; done
  echo
  echo "achieved/s = successful registrations / wall time of the SIPp run (start to exit)."
  echo "failed = sent - ok (SIPp's failed calls plus any it did not complete)."
  echo "RT = SIPp response time 1: first REGISTER sent to the 200 (with auth: both round trips);"
  echo "SIPp measures in whole milliseconds with a coarse clock (values come in steps of ~4 ms)."
  echo "retrans = SIPp's retransmissions (a REGISTER unanswered for 500 ms is sent again)."
  echo "server CPU = user + system time of the server's processes from start to the end of the"
  echo "step (start-up included); with the state in Redis, the daemon's and redis-server's together"
  echo "(Redis's part in the Redis column, with its peak RSS); µs/reg divides it by the successful"
  echo "registrations."
  echo "server peak RSS = VmHWM (the daemon's alone: Redis's is in the Redis column); for Kamailio"
  echo "the largest process and the sum over its processes (shared memory counts in every process"
  echo "that touched it, so the sum is an upper bound)."
}

if [ -n "$out" ]; then report | tee "$out"; else report; fi
