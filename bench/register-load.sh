#!/usr/bin/env bash
# REGISTER load: REGISTERs per second through Switchboard (digest auth and no auth, durable
# registrations) beside Kamailio 5.6 (no auth, memory-only location table), measured with SIPp
# over UDP on loopback, all in one run on one machine.
#
# A benchmark, not a test: it prints the machine, the date, the exact commands it ran and a
# Markdown table (one row per subject x offered rate) on stdout; progress goes to stderr.
#
#   bench/register-load.sh [--quick] [--rates "2000 5000 10000"] [--seconds 5] [--users 10000]
#                          [--subjects "sb-auth sb-noauth kamailio"] [--switchboard BIN]
#                          [--keep] [--out FILE]
#
#   --quick        smoke run: rates "1000 5000", 2 s per step, 1000 users
#   --rates        offered rates in REGISTERs/s, rising (default 2000 5000 10000 20000 30000
#                  40000 60000 80000)
#   --seconds      length of a step: each step sends rate x seconds registrations (default 5)
#   --users        users u0..u(N-1) with password pw-<n> in the policy and the CSV (default 10000)
#   --subjects     which subjects, in this order (default: all three)
#   --switchboard  use this binary instead of building one
#   --keep         keep the work directory (logs, SIPp traces, configs) and print its path
#   --out FILE     also write the report to FILE
#
# Each step starts the server afresh (Kamailio collapses past its limit and stays broken for a
# while; Switchboard gets an empty state directory) on a free loopback port, sends the step's
# registrations with one SIPp instance, records what happened and stops the server. A subject
# stops at the first rate where more than 0.1 % of the registrations did not succeed; a step
# whose achieved rate stays under 90 % of the offered one is marked "saturated".
#
# Short steps hide what builds up over time (e.g. state a server keeps per request for tens of
# seconds); a sustained run shows it: --rates 10000 --seconds 40.
#
# Needs: sipp (Debian: sip-tester), kamailio, python3, cargo (unless --switchboard).
# The Switchboard binary is built with `cargo build --release -p switchboard` into the
# workspace's target directory (CARGO_TARGET_DIR if set).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)

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
    --keep) keep=1 ;;
    --out) out="$2"; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown option: $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
for v in "$seconds" "$users" $rates; do
  [[ "$v" =~ ^[1-9][0-9]*$ ]] || { echo "not a positive integer: $v" >&2; exit 2; }
done

need() { command -v "$1" >/dev/null || { echo "$1 is missing: $2" >&2; exit 2; }; }
need sipp "apt-get install sip-tester"
need python3 "apt-get install python3"
need timeout "coreutils"
need setsid "util-linux"
case " $subjects " in *" kamailio "*) need kamailio "apt-get install kamailio" ;; esac

# ---------------------------------------------------------------------------------------------
# Processes: every server runs in a process group of its own (setsid), SIPp under `timeout`
# (which also makes a group of its own); both are killed by their group id, nothing by name.
work=$(mktemp -d "${TMPDIR:-/tmp}/sb-register-load.XXXXXX")
server_pgid=""
sipp_pgid=""

# True while a process of group $1 is running (zombies do not count).
group_alive() {
  local p
  for p in $(pgrep -g "$1" 2>/dev/null || true); do
    [ "$(sed 's/.*) //' "/proc/$p/stat" 2>/dev/null | cut -d' ' -f1)" = Z ] || return 0
  done
  return 1
}

kill_group() { # $1 = process group id; TERM, up to 5 s, then KILL
  local g=$1 i
  kill -TERM -- "-$g" 2>/dev/null || return 0
  for ((i = 0; i < 50; i++)); do
    group_alive "$g" || return 0
    sleep 0.1
  done
  echo "process group $g still running 5 s after SIGTERM: SIGKILL" >&2
  kill -KILL -- "-$g" 2>/dev/null || true
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  [ -n "$sipp_pgid" ] && kill_group "$sipp_pgid"
  [ -n "$server_pgid" ] && kill_group "$server_pgid"
  wait 2>/dev/null || true
  if [ "$keep" = 1 ] || [ "$rc" != 0 ]; then
    echo "work directory kept: $work" >&2
  else
    rm -rf "$work"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_udp_port() {
  python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Waits until something answers an OPTIONS on 127.0.0.1:$1 (any response), at most $2 s.
wait_sip() {
  python3 - "$1" "$2" <<'PY'
import socket, sys, time
port, limit = int(sys.argv[1]), float(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 0))
s.settimeout(0.2)
me = s.getsockname()[1]
deadline = time.monotonic() + limit
n = 0
while time.monotonic() < deadline:
    n += 1
    msg = (f"OPTIONS sip:127.0.0.1:{port} SIP/2.0\r\n"
           f"Via: SIP/2.0/UDP 127.0.0.1:{me};rport;branch=z9hG4bK-bench-probe-{n}\r\n"
           "Max-Forwards: 70\r\n"
           "From: <sip:probe@switchboard.local>;tag=probe\r\n"
           f"To: <sip:127.0.0.1:{port}>\r\n"
           f"Call-ID: bench-probe-{n}\r\n"
           f"CSeq: {n} OPTIONS\r\n"
           "Content-Length: 0\r\n\r\n")
    try:
        s.sendto(msg.encode(), ("127.0.0.1", port))
        if s.recv(65535).startswith(b"SIP/2.0 "):
            sys.exit(0)
    except (socket.timeout, ConnectionRefusedError):
        time.sleep(0.05)
sys.exit(1)
PY
}

# ---------------------------------------------------------------------------------------------
# Inputs: the policy (N users) and SIPp's injection file.

# The one place that knows the policy format.
write_policy() { # $1 = number of users, $2 = file
  awk -v n="$1" 'BEGIN {
    for (i = 0; i < n; i++) {
      printf "[users.u%d]\nextension = \"%d\"\ndisplay_name = \"User %d\"\n", i, 1000 + i, i
      printf "[users.u%d.sip]\npassword = \"pw-%d\"\nalgorithms = [\"md5\"]\n\n", i, i
    }
  }' > "$2"
}

write_users_csv() { # $1 = number of users, $2 = file; field0 user, field1 password
  awk -v n="$1" 'BEGIN { print "SEQUENTIAL"; for (i = 0; i < n; i++) printf "u%d;pw-%d\n", i, i }' > "$2"
}

write_policy "$users" "$work/policy.toml"
write_users_csv "$users" "$work/users.csv"

if [ -z "$sb_bin" ] && [[ " $subjects " == *" sb-"* ]]; then
  need cargo "https://rustup.rs"
  echo "building switchboard (cargo build --release -p switchboard) ..." >&2
  (cd "$root" && timeout 3600 cargo build --release -p switchboard >&2)
  target_dir=$(cd "$root" && cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
  sb_bin="$target_dir/release/switchboard"
fi
sb_desc="not run"
if [[ " $subjects " == *" sb-"* ]]; then
  [ -x "$sb_bin" ] || { echo "no switchboard binary at $sb_bin" >&2; exit 2; }
  # The source the binary was built from, as it was when the run began.
  sb_desc="$sb_bin (git $(cd "$root" && git rev-parse --short HEAD 2>/dev/null || echo '?')$(cd "$root" &&
    git diff --quiet HEAD -- crates Cargo.toml Cargo.lock 2>/dev/null || echo ', with uncommitted changes in crates/'))"
fi

# ---------------------------------------------------------------------------------------------
# Servers. Each start_* sets server_pgid, server_cmd and server_log.

server_cmd=""
server_log=""

start_switchboard() { # $1 = step dir, $2 = port, $3 = auth required (true|false)
  local dir=$1 port=$2
  cat > "$dir/switchboard.toml" <<EOF
[sip]
listen = ["udp:127.0.0.1:$port"]
realm = "switchboard.local"
domains = ["switchboard.local"]

[auth]
required = $3
# Failed attempts must not throttle the load source.
max_failures = 1000000

[store]
state_dir = "$dir/state"

[policy]
path = "$work/policy.toml"

[api]
listen = ""
EOF
  server_log="$dir/server.log"
  # warn for everything on the request path; the server module's lifecycle lines (ready,
  # stopped with its request counters) stay visible.
  server_cmd="RUST_LOG=warn,switchboard::server=info $sb_bin run --config $dir/switchboard.toml"
  RUST_LOG=warn,switchboard::server=info setsid "$sb_bin" run --config "$dir/switchboard.toml" \
    > "$server_log" 2>&1 < /dev/null &
  server_pgid=$!
  check_group
  local i
  for ((i = 0; i < 100; i++)); do
    grep -q "switchboard ready" "$server_log" && break
    kill -0 "$server_pgid" 2>/dev/null || break
    sleep 0.1
  done
  wait_sip "$port" 10 || { echo "switchboard did not answer on port $port:" >&2; cat "$server_log" >&2; exit 1; }
}

start_kamailio() { # $1 = step dir, $2 = port
  local dir=$1 port=$2
  server_log="$dir/server.log"
  server_cmd="kamailio -f $here/kamailio/registrar.cfg -l udp:127.0.0.1:$port -DD -E -m 1024 -x tlsf -w $dir"
  setsid kamailio -f "$here/kamailio/registrar.cfg" -l "udp:127.0.0.1:$port" \
    -DD -E -m 1024 -x tlsf -w "$dir" > "$server_log" 2>&1 < /dev/null &
  server_pgid=$!
  check_group
  wait_sip "$port" 15 || { echo "kamailio did not answer on port $port:" >&2; cat "$server_log" >&2; exit 1; }
}

server_pids() { pgrep -g "$server_pgid" || true; }

# The server must lead a process group of its own, or it could not be stopped as a group.
# (setsid execs in place here: a background job of a script without job control is no group
# leader.)
check_group() {
  local g
  g=$(ps -o pgid= -p "$server_pgid" 2>/dev/null | tr -d ' ' || true)
  if [ "$g" != "$server_pgid" ]; then
    echo "the server (pid $server_pgid) is not in a process group of its own; log:" >&2
    cat "$server_log" >&2
    exit 1
  fi
}

# Peak RSS in MiB: the process's VmHWM; for several processes (Kamailio) "max (sum of N)".
# Shared memory touched by several processes counts in each, so the sum is an upper bound.
server_peak_rss() {
  local p v max=0 sum=0 n=0
  for p in $(server_pids); do
    v=$(awk '/^VmHWM:/ {print $2}' "/proc/$p/status" 2>/dev/null || true)
    [ -n "$v" ] || continue
    n=$((n + 1)); sum=$((sum + v)); [ "$v" -gt "$max" ] && max=$v
  done
  if [ "$n" -le 1 ]; then
    awk -v k="$max" 'BEGIN { printf "%.0f", k / 1024 }'
  else
    awk -v m="$max" -v s="$sum" -v n="$n" 'BEGIN { printf "%.0f (sum of %d: %.0f)", m / 1024, n, s / 1024 }'
  fi
}

# CPU seconds (user + system) used by the server's processes since they started.
server_cpu() {
  local p t=0 hz
  hz=$(getconf CLK_TCK)
  for p in $(server_pids); do
    # Fields 14 and 15 of /proc/PID/stat, counted after the ")" that ends the command name.
    t=$((t + $(sed 's/.*) //' "/proc/$p/stat" 2>/dev/null | awk '{print $12 + $13}' || echo 0)))
  done
  awk -v t="$t" -v hz="$hz" 'BEGIN { printf "%.1f", t / hz }'
}

stop_server() {
  [ -n "$server_pgid" ] || return 0
  kill_group "$server_pgid"
  wait "$server_pgid" 2>/dev/null || true
  server_pgid=""
}

# ---------------------------------------------------------------------------------------------
# One step: one SIPp run against a fresh server.

nofile=$(ulimit -n)
[ "$nofile" = unlimited ] && nofile=65536
sipp_limit=$((nofile - 256))
[ "$sipp_limit" -gt 50000 ] && sipp_limit=50000
[ "$sipp_limit" -gt 100 ] || { echo "ulimit -n ($nofile) is too low" >&2; exit 2; }

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
             start_switchboard "$dir" "$port" true ;;
    sb-noauth) label="switchboard (no auth, durable)"
               start_switchboard "$dir" "$port" false ;;
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
  local timer=()
  if /usr/bin/time -f '%U' -o /dev/null true 2>/dev/null; then
    timer=(/usr/bin/time -f '%U %S %M' -o "$dir/sipp.time")
  fi

  echo "  $label @ $rate/s: $n registrations, server on 127.0.0.1:$port" >&2
  local t0 t1 rc=0
  t0=$(date +%s.%N)
  (
    cd "$dir"
    exec timeout -k 5 $((global + 20)) "${timer[@]}" "${cmd[@]}" > "$dir/sipp.out" 2>&1 < /dev/null
  ) &
  sipp_pgid=$!
  wait "$sipp_pgid" || rc=$?
  sipp_pgid=""
  t1=$(date +%s.%N)

  local rss cpu
  rss=$(server_peak_rss)
  cpu=$(server_cpu)
  if ! kill -0 "$server_pgid" 2>/dev/null; then
    echo "  the server exited during the step; its log:" >&2
    tail -n 20 "$server_log" >&2
    rss="exited"; cpu="-"
  fi
  stop_server
  # What the server said: Switchboard's own counters from its last line, and how many
  # warnings/errors it logged (the first few go to stderr).
  local server_note problems
  if [ "$subject" != kamailio ]; then
    problems=$(grep -cE ' (WARN|ERROR) ' "$server_log" || true)
    grep -E ' (WARN|ERROR) ' "$server_log" | head -n 5 | cut -c1-300 | sed 's/^/    server: /' >&2 || true
    server_note=$(sed -n 's/^.*switchboard stopped *//p' "$server_log" | tail -n 1)
    server_note="${server_note:-no stop line}; $problems warn/error lines"
  else
    problems=$(grep -cE 'ERROR|CRITICAL|WARNING' "$server_log" || true)
    grep -E 'ERROR|CRITICAL|WARNING' "$server_log" | head -n 5 | cut -c1-300 | sed 's/^/    server: /' >&2 || true
    server_note="$problems warning/error lines"
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
  rows+=("| $label | $rate | $n | $ok | $failed | $achieved | $wall | $rt | $retrans | $cpu ($per_reg) | $sipp_cpu | $rss | $causes | $server_note |")
  echo "    sent $n, ok $ok, failed $failed, achieved $achieved/s in $wall s, RT ms avg/p50/p99/max $rt, retransmissions $retrans, server CPU $cpu s, SIPp CPU $sipp_cpu s, peak RSS $rss MiB; $causes (SIPp exit $rc)" >&2
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
cpu_model=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
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
  echo "- Machine: $(nproc) cores, $cpu_model, $(awk '/^MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo); $(uname -sr)"
  echo "- Load average before each subject: ${loads[*]}"
  echo "- SIPp: $(sipp -v 2>&1 | grep -o 'SIPp v[0-9.]*' | head -n 1)$(command -v kamailio >/dev/null && echo ", $(kamailio -v 2>/dev/null | head -n 1 | sed 's/^version: //')")"
  echo "- Switchboard: $sb_desc"
  echo "- Steps: offered rate x $seconds s of REGISTERs over UDP on 127.0.0.1 from one SIPp"
  echo "  (bench/sipp/register.xml, register_auth.xml), $users users taken in turn (u0..u$((users - 1))),"
  echo "  a fresh server (and empty state directory) for every step; a subject stops at the first"
  echo "  rate where more than 0.1 % fail. SIPp and the server share the cores."
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
  echo
  echo "| subject | offered/s | sent | ok | failed | achieved/s | wall s | SIPp RT ms avg / p50 / p99 / max | retrans | server CPU s (µs/reg) | SIPp CPU s | server peak RSS MiB | failures | server log |"
  echo "|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---|---|---|"
  local r
  for r in "${rows[@]}"; do echo "$r"; done
  echo
  echo "achieved/s = successful registrations / wall time of the SIPp run (start to exit)."
  echo "failed = sent - ok (SIPp's failed calls plus any it did not complete)."
  echo "RT = SIPp response time 1: first REGISTER sent to the 200 (with auth: both round trips);"
  echo "SIPp measures in whole milliseconds with a coarse clock (values come in steps of ~4 ms)."
  echo "retrans = SIPp's retransmissions (a REGISTER unanswered for 500 ms is sent again)."
  echo "server CPU = user + system time of the server's processes from start to the end of the"
  echo "step (start-up included); µs/reg divides it by the successful registrations."
  echo "server peak RSS = VmHWM; for Kamailio the largest process and the sum over its processes"
  echo "(shared memory counts in every process that touched it, so the sum is an upper bound)."
}

if [ -n "$out" ]; then report | tee "$out"; else report; fi
