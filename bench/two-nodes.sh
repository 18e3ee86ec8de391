#!/usr/bin/env bash
# TWO NODES: REGISTERs per second through two Switchboard nodes sharing their state in one
# Redis server, beside one node alone on the same kind of Redis (digest auth, durable
# registrations), measured with SIPp over UDP on loopback, all in one run on one machine.
#
# A benchmark, not a test: it prints the machine, the date, the exact commands it ran and a
# Markdown table (one row per subject x offered rate) on stdout; progress goes to stderr.
#
#   bench/two-nodes.sh [--quick] [--rates "2000 5000 10000"] [--seconds 5] [--users 10000]
#                      [--subjects "one-node two-nodes"] [--pin] [--quiet-wait 120]
#                      [--switchboard BIN] [--keep] [--out FILE]
#
#   --quick        smoke run: rates "1000 5000", 2 s per step, 1000 users
#   --rates        offered rates in REGISTERs/s, rising (default 2000 5000 10000 15000 20000)
#   --seconds      length of a step: each step sends rate x seconds registrations (default 5)
#   --users        users u0..u(N-1) with password pw-<n> in the policy (default 10000; even)
#   --subjects     which subjects, in this order (default: one-node two-nodes):
#                    one-node   one Switchboard (node "a"), state in Redis, one SIPp at the
#                               full rate, all the users
#                    two-nodes  two Switchboards (nodes "a" and "b", each its own SIP and API
#                               port) on the same Redis server, two SIPps at half the rate
#                               each, one per node, the users split in two halves (u0.. to
#                               node a, the rest to node b)
#   --pin          node a on CPU 0, node b on CPU 1 (taskset); Redis and the SIPps are not
#                  pinned (default: nothing pinned, the kernel shares the cores among all)
#   --quiet-wait   before each step, wait up to this many seconds for the machine to be quiet
#                  (under 15 % busy for a second: a build or test run elsewhere skews the
#                  numbers); 0: do not wait (default 120)
#   --switchboard  use this binary instead of building one
#   --keep         keep the work directory (logs, SIPp traces, configs) and print its path
#   --out FILE     also write the report to FILE
#
# Every step starts afresh: a redis-server of its own on a free loopback port with an empty
# data directory in the work directory, appending every write to its AOF and fsyncing it
# before it answers (appendonly yes, appendfsync always: a REGISTER's 200 means the binding is
# on disk), then the subject's daemon(s), each with an empty state directory, [store]
# redis_url pointing at that Redis and its own node name, and [api] listening on a free
# loopback port with an admin token. The SIPp(s) send the step's registrations
# (bench/sipp/register_auth.xml: REGISTER, 401, REGISTER with the digest answer, 200); the
# total offered rate is the same for both subjects. Then, a second after the last SIPp has
# exited, each daemon's CPU time and peak RSS are read, and each node is asked through its
# API (GET /v1/registrations with the admin token) which users it lists: with two nodes,
# both must list every user registered in the step, those taken by the other node included
# (the change feed carries them; the check asks again for up to 10 s). Then the daemons and
# Redis are stopped.
#
# A subject stops at the first rate where more than 0.1 % of the registrations did not
# succeed or where the achieved rate stays under 90 % of the offered one ("saturated").
#
# On a 2-core machine the SIPps, Redis and the daemons share two cores: the rates where a
# subject saturates show what the whole set-up carries on this machine, not what a node
# would carry on a machine of its own. --pin keeps each node to a core of its own (the
# SIPps and Redis go where the kernel puts them).
#
# Needs: sipp (Debian: sip-tester), redis-server and redis-cli (Debian: redis-server,
# redis-tools), python3, taskset (util-linux, with --pin), cargo (unless --switchboard).
# The Switchboard binary is built with `cargo build --release -p switchboard` into the
# workspace's target directory (CARGO_TARGET_DIR if set).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
# shellcheck source=bench/lib.sh
. "$here/lib.sh"

rates="2000 5000 10000 15000 20000"
seconds=5
users=10000
subjects="one-node two-nodes"
quiet_wait=120
pin=0
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
    --pin) pin=1 ;;
    --quiet-wait) quiet_wait="$2"; shift ;;
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
[[ "$quiet_wait" =~ ^[0-9]+$ ]] || { echo "not a non-negative integer: $quiet_wait" >&2; exit 2; }
[ $((users % 2)) = 0 ] || { echo "--users must be even (two halves): $users" >&2; exit 2; }
for s in $subjects; do
  case "$s" in one-node|two-nodes) ;; *) echo "unknown subject: $s (one-node, two-nodes)" >&2; exit 2 ;; esac
done

need sipp "apt-get install sip-tester"
need python3 "apt-get install python3"
need timeout "coreutils"
need setsid "util-linux"
need ss "apt-get install iproute2"
need redis-server "apt-get install redis-server"
need redis-cli "apt-get install redis-tools"
if [ "$pin" = 1 ]; then
  need taskset "util-linux"
  [ "$(nproc)" -ge 2 ] || { echo "--pin needs two CPUs (node a on 0, node b on 1); this machine has $(nproc)" >&2; exit 2; }
fi

# ---------------------------------------------------------------------------------------------
# Processes (bench/lib.sh): each daemon's group, the Redis server's and each SIPp's, killed at
# each step's end and on exit. start_switchboard and start_redis take their pinning from
# pin_server, set before each call: the node's CPU with --pin, nothing for Redis; the SIPps
# are never pinned (pin_sipp stays empty).
work=$(mktemp -d "${TMPDIR:-/tmp}/sb-two-nodes.XXXXXX")
server_pgid=""
redis_pgid=""
node_pgids=()
sipp_pgids=()

cleanup() {
  local rc=$? g
  trap - EXIT INT TERM
  for g in "${sipp_pgids[@]}"; do kill_group "$g"; done
  for g in "${node_pgids[@]}"; do kill_group "$g"; done
  [ -n "$server_pgid" ] && kill_group "$server_pgid"
  [ -n "$redis_pgid" ] && kill_group "$redis_pgid"
  wait 2>/dev/null || true
  leave_work "$rc"
}
on_exit cleanup

# ---------------------------------------------------------------------------------------------
# Inputs (bench/lib.sh): the policy (N users) and SIPp's injection files: all the users (one
# node), and each half (two nodes: u0..u(N/2-1) to node a, the rest to node b).

half=$((users / 2))
write_policy "$users" "$work/policy.toml"
write_users_csv "$users" "$work/users-all.csv"
write_users_csv "$half" "$work/users-a.csv"
write_users_csv "$half" "$work/users-b.csv" "$half"

# The API's admin token (at least 16 characters): the same for every node of the run.
admin_token=$(python3 -c 'import secrets; print("bench-" + secrets.token_hex(12))')

switchboard_binary

# The CPU each node runs on (--pin), for taskset; empty: not pinned.
declare -A node_cpu=()
if [ "$pin" = 1 ]; then node_cpu=([a]=0 [b]=1); fi

# ---------------------------------------------------------------------------------------------
# One step: a fresh Redis, the subject's node(s), one SIPp per node, the API check.

sipp_call_limit

commands=()
rows=()
step_no=0
used_ports=" "

# A free UDP or TCP port ($1 = udp|tcp) no other process of the step was given.
step_port() {
  local p
  while :; do
    if [ "$1" = udp ]; then p=$(free_udp_port); else p=$(free_tcp_port); fi
    [[ "$used_ports" == *" $p "* ]] || break
  done
  used_ports+="$p "
  echo "$p"
}

# Adds $1 to run_step's causes (the failures column): beside SIPp's, or instead of its "-".
add_cause() { if [ "$causes" = "-" ]; then causes=$1; else causes="$causes; $1"; fi; }

# Sets step_ok=1 when at most 0.1 % of the registrations failed and at least 90 % of the
# offered rate was achieved.
run_step() { # $1 = subject, $2 = rate
  local subject=$1 rate=$2
  step_no=$((step_no + 1))
  step_ok=0
  local dir="$work/step-$step_no-$subject-$rate"
  mkdir -p "$dir"
  wait_quiet

  # The nodes, each with its share of the rate and its users.
  local nodes=(a) label="one node"
  [ "$subject" = two-nodes ] && { nodes=(a b); label="two nodes"; }
  declare -A port=() api=() node_rate=() node_n=() node_csv=() node_users=()
  local x n=0 expected=0
  used_ports=" "
  if [ "$subject" = one-node ]; then
    node_rate[a]=$rate; node_csv[a]="$work/users-all.csv"; node_users[a]=$users
  else
    node_rate[a]=$(((rate + 1) / 2)); node_rate[b]=$((rate / 2))
    node_csv[a]="$work/users-a.csv"; node_csv[b]="$work/users-b.csv"
    node_users[a]=$half; node_users[b]=$half
  fi
  for x in "${nodes[@]}"; do
    node_n[$x]=$((node_rate[$x] * seconds))
    n=$((n + node_n[$x]))
    # The users a node's SIPp registers: each once at least, or the first node_n of them.
    expected=$((expected + (node_n[$x] < node_users[$x] ? node_n[$x] : node_users[$x])))
  done

  commands+=("step $step_no, $subject, $rate/s:")
  pin_server=()
  start_redis "$dir/redis"
  commands+=("  $redis_cmd")

  local -A pgid=() log=()
  for x in "${nodes[@]}"; do
    port[$x]=$(step_port udp)
    api[$x]=$(step_port tcp)
    mkdir -p "$dir/node-$x"
    write_register_config "$dir/node-$x" "${port[$x]}" true redis "store.node=\"$x\"" \
      "api.listen=\"127.0.0.1:${api[$x]}\"" "api.admin_token=\"$admin_token\""
    pin_server=()
    [ -n "${node_cpu[$x]:-}" ] && pin_server=(taskset -c "${node_cpu[$x]}")
    start_switchboard "$dir/node-$x" "${port[$x]}"
    pgid[$x]=$server_pgid
    log[$x]=$server_log
    node_pgids+=("$server_pgid")
    server_pgid=""
    commands+=("  $server_cmd")
  done
  pin_server=()

  local x_ports=""
  for x in "${nodes[@]}"; do x_ports+="${x_ports:+, }node $x SIP 127.0.0.1:${port[$x]} API :${api[$x]} (${node_rate[$x]}/s)"; done
  echo "  $label @ $rate/s: $n registrations; $x_ports; Redis :$redis_port" >&2

  # The SIPps: one per node, started one after the other at once. SIPp gives up on a
  # registration 5 s after its last transmission without the expected response, and on the
  # whole run after 3 x seconds + 10 s; `timeout` is the last resort.
  local global=$((seconds * 3 + 10)) sport
  local -A cpu0=() sdir=() sipp_pid=()
  local rcpu0 t0 t1 rc rc_text=""
  for x in "${nodes[@]}"; do cpu0[$x]=$(group_cpu "${pgid[$x]}"); done
  rcpu0=$(redis_cpu)
  sipp_pgids=()
  t0=$(date +%s.%N)
  for x in "${nodes[@]}"; do
    sport=$(step_port udp)
    sdir[$x]="$dir/sipp-$x"
    mkdir -p "${sdir[$x]}"
    local cmd=(sipp "127.0.0.1:${port[$x]}" -sf "$here/sipp/register_auth.xml" -inf "${node_csv[$x]}"
      -i 127.0.0.1 -p "$sport" -m "${node_n[$x]}" -r "${node_rate[$x]}" -rp 1000 -l "$sipp_limit"
      -buff_size 4194304 -recv_timeout 5000 -timeout "${global}s" -timeout_error
      -max_recv_loops 10000 -max_sched_loops 10000 -auth_uri switchboard.local
      -default_behaviors all,-bye -nostdin -trace_screen -trace_err -max_log_size 20000000
      -trace_stat -fd 3600 -trace_rtt -rtt_freq 1000)
    commands+=("  ${cmd[*]}")
    # GNU time, when there, reports SIPp's own CPU use.
    sipp_timer_for "${sdir[$x]}/sipp.time"
    (
      cd "${sdir[$x]}"
      exec timeout -k 5 $((global + 20)) "${sipp_timer[@]}" "${cmd[@]}" > "${sdir[$x]}/sipp.out" 2>&1 < /dev/null
    ) &
    sipp_pid[$x]=$!
    sipp_pgids+=("$!")
  done
  local sipp_failed_to_run=""
  for x in "${nodes[@]}"; do
    rc=0
    wait "${sipp_pid[$x]}" || rc=$?
    rc_text+="${rc_text:+, }$x $rc"
    if [ "$rc" -eq 255 ] || [ "$rc" -eq 254 ]; then
      echo "  SIPp of node $x failed to run (exit $rc):" >&2
      tail -n 5 "${sdir[$x]}/sipp.out" >&2
      sipp_failed_to_run=1
    elif [ "$rc" -ge 124 ]; then
      echo "  SIPp of node $x was stopped by timeout (exit $rc)" >&2
    fi
  done
  sipp_pgids=()
  t1=$(date +%s.%N)

  # A second for the last changes to reach the other node through Redis, then the cost: CPU
  # during the run (and that second), peak RSS.
  sleep 1
  local -A cpu=() rss=()
  local rcpu rrss all_cpu exited=""
  for x in "${nodes[@]}"; do
    cpu[$x]=$(awk -v a="${cpu0[$x]}" -v b="$(group_cpu "${pgid[$x]}")" 'BEGIN { printf "%.1f", b - a }')
    rss[$x]=$(server_peak_rss "${pgid[$x]}")
    if ! kill -0 "${pgid[$x]}" 2>/dev/null; then
      echo "  node $x exited during the step; its log:" >&2
      tail -n 20 "${log[$x]}" >&2
      cpu[$x]="-"; rss[$x]="exited"; exited+="node $x exited; "
    fi
  done
  rcpu=$(awk -v a="$rcpu0" -v b="$(redis_cpu)" 'BEGIN { printf "%.1f", b - a }')
  rrss=$(redis_peak_rss)
  if ! kill -0 "$redis_pgid" 2>/dev/null; then
    echo "  redis-server exited during the step; its log:" >&2
    tail -n 20 "$redis_log" >&2
    rcpu="-"; rrss="exited"; exited+="redis exited; "
  fi

  # What each node lists: the users with a registration, by the node that took it.
  local check_args=()
  for x in "${nodes[@]}"; do check_args+=("$x=${api[$x]}"); done
  local listing
  listing=$(python3 - "$admin_token" "$expected" 10 "${check_args[@]}" <<'PY'
import collections, json, sys, time, urllib.request
token, expected, limit = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
nodes = [a.split("=", 1) for a in sys.argv[4:]]
start = time.monotonic()
while True:
    result = {}
    for name, port in nodes:
        req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/registrations",
                                     headers={"Authorization": f"Bearer {token}"})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                regs = json.load(r)["registrations"]
        except Exception as e:
            result[name] = (-1, f"API error: {e}"[:120])
            continue
        users = {r["user"] for r in regs}
        # By the node that took them; a daemon alone (or one that does not say) gives none.
        by = collections.Counter(r.get("node") or "none" for r in regs)
        text = str(len(users))
        if set(by) != {"none"} and regs:
            text += " = " + " + ".join(f"{k} {v}" for k, v in sorted(by.items()))
        elif regs:
            text += " (no node field)"
        if len(regs) != len(users):
            text += f" ({len(regs)} bindings)"
        result[name] = (len(users), text)
    waited = time.monotonic() - start
    if all(n >= expected for n, _ in result.values()) or waited >= limit:
        break
    time.sleep(0.2)
for name, _ in nodes:
    print(f"{name}\t{result[name][0]}\t{result[name][1]}")
print(f"waited\t{waited:.1f}\t")
PY
)
  local -A listed=() listed_text=()
  local waited="" name count text
  while IFS=$'\t' read -r name count text; do
    if [ "$name" = waited ]; then waited=$count; else listed[$name]=$count; listed_text[$name]=$text; fi
  done <<< "$listing"

  # Stop the nodes, then Redis; what each said.
  local server_note="" g
  for x in "${nodes[@]}"; do
    kill_group "${pgid[$x]}"
    wait "${pgid[$x]}" 2>/dev/null || true
    server_log=${log[$x]}
    server_note+="$x: $(server_log_note switchboard); "
  done
  node_pgids=()
  stop_redis
  server_note+=$(redis_log_note)

  # SIPp's final statistics (the last line of each CSV), response times, CPU use.
  local sipp_dirs=()
  for x in "${nodes[@]}"; do sipp_dirs+=("$x=${sdir[$x]}=${node_n[$x]}"); done
  local stats
  stats=$(bench_dir=$here python3 - "$t0" "$t1" "$rate" "$quiet_note" "${sipp_dirs[@]}" <<'PY'
import os, sys
sys.dont_write_bytecode = True  # no __pycache__ in bench/
sys.path.insert(0, os.environ["bench_dir"])
from sipp_stats import last_row, num, causes_of, response_times, pcts, epoch
t0, t1, rate, quiet_note = float(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
wall = t1 - t0
n = ok = retrans = 0
rts, causes, cpus, spans, starts = [], [quiet_note] if quiet_note else [], [], [], []
achieved = 0.0
multi = len(sys.argv[5:]) > 1
for arg in sys.argv[5:]:
    name, d, sent = arg.split("=", 2)
    sent = int(sent)
    s = last_row(d)
    k, failed = num(s, "SuccessfulCall(C)"), num(s, "FailedCall(C)")
    # The SIPp's own span: its start to its final statistics (StartTime, the last
    # CurrentTime; without the process's start and exit); the wall time around the SIPps
    # when it cannot be read.
    start, end = epoch(s, "StartTime"), epoch(s, "CurrentTime")
    span = end - start if start is not None and end is not None and end > start else wall
    starts.append(start)
    spans.append(f"{span:.2f}")
    achieved += k / span if span > 0 else 0
    n, ok, retrans = n + sent, ok + k, retrans + num(s, "Retransmissions(C)")
    part = causes_of(s, d)
    if not s:
        part.append("no SIPp statistics")
    elif sent - k - failed > 0:
        part.append(f"not completed {sent - k - failed}")
    if part:
        causes.append((f"to {name}: " if multi else "") + ", ".join(part))
    rts += [ms for _, ms in response_times(d).get("1", [])]
    try:
        u, sy, m = open(f"{d}/sipp.time").read().split()[-3:]
        cpus.append(f"{float(u) + float(sy):.1f}")
    except Exception:
        cpus.append("-")
# Started one after the other, the SIPps begin a little apart (each takes a moment to start).
if len(starts) > 1 and None not in starts and max(starts) - min(starts) > 0.5:
    causes.append(f"the SIPps started {max(starts) - min(starts):.1f} s apart")
saturated = ok > 0 and achieved < 0.9 * rate
if saturated:
    causes.append("saturated: achieved < 90 % of offered")
print("\t".join([str(ok), str(n - ok), f"{achieved:.0f}", " + ".join(spans), pcts(rts), str(retrans),
                 " + ".join(cpus), "1" if saturated else "0", "; ".join(causes) or "-"]))
PY
)
  local ok failed achieved span rt retrans sipp_cpu saturated causes
  IFS=$'\t' read -r ok failed achieved span rt retrans sipp_cpu saturated causes <<< "$stats"
  [ -n "$exited" ] && add_cause "${exited%; }"

  # The listing: every node must list every user registered in the step.
  local list_cols=() short=""
  for x in a b; do
    if [ -z "${listed[$x]:-}" ]; then list_cols+=("-"); continue; fi
    list_cols+=("${listed_text[$x]}")
    [ "${listed[$x]}" -ge "$expected" ] || short+="${short:+, }node $x lists ${listed[$x]} of $expected users"
  done
  [ -n "$short" ] && add_cause "$short (after ${waited} s)"

  local per_reg="-" c
  all_cpu=$rcpu
  for x in "${nodes[@]}"; do
    all_cpu=$(awk -v a="$all_cpu" -v b="${cpu[$x]}" 'BEGIN { if (a == "-" || b == "-") print "-"; else printf "%.1f", a + b }')
  done
  if [ "$ok" -gt 0 ] && [ "$all_cpu" != "-" ]; then
    per_reg=$(awk -v c="$all_cpu" -v n="$ok" 'BEGIN { printf "%.0f", c * 1e6 / n }')
  fi
  local cpu_b="-" rss_b="-"
  [ "$subject" = two-nodes ] && { cpu_b=${cpu[b]}; rss_b=${rss[b]}; }
  rows+=("| $label | $rate | $n | $ok | $failed | $achieved | $span | $rt | $retrans | ${cpu[a]} | $cpu_b | $rcpu | $per_reg | ${rss[a]} | $rss_b | $rrss | $expected | ${list_cols[0]} | ${list_cols[1]} | $sipp_cpu | $causes | $server_note |")
  echo "    sent $n, ok $ok, failed $failed, achieved $achieved/s in $span s, RT ms p50/p99/max $rt, retransmissions $retrans," \
    "CPU s a ${cpu[a]} b $cpu_b Redis $rcpu ($per_reg µs/reg), peak RSS MiB a ${rss[a]} b $rss_b Redis $rrss," \
    "listed (of $expected): a ${list_cols[0]}, b ${list_cols[1]} (after $waited s), SIPp CPU $sipp_cpu s; $causes (SIPp exit $rc_text)" >&2
  if [ "$((failed * 1000))" -le "$n" ] && [ "$ok" -gt 0 ] && [ "$saturated" = 0 ] && [ -z "$sipp_failed_to_run" ]; then
    step_ok=1
  fi
}

# ---------------------------------------------------------------------------------------------

started=$(date -u '+%Y-%m-%d %H:%M:%S UTC')
t_start=$(date +%s)
loads=()
for subject in $subjects; do
  echo "== $subject (load average: $(cut -d' ' -f1-3 /proc/loadavg))" >&2
  loads+=("$subject: $(cut -d' ' -f1-3 /proc/loadavg)")
  for rate in $rates; do
    run_step "$subject" "$rate"
    if [ "$step_ok" != 1 ]; then
      echo "  more than 0.1 % failed, or saturated, at $rate/s: next subject" >&2
      break
    fi
  done
done
duration=$(($(date +%s) - t_start))

report() {
  echo "# REGISTER load: two Switchboard nodes sharing one Redis, beside one node"
  echo
  echo "- Date: $started (the run took $((duration / 60)) min $((duration % 60)) s)"
  report_machine
  if [ "$pin" = 1 ]; then
    echo "- CPUs (--pin): node a taskset -c 0, node b taskset -c 1; Redis and the SIPps not pinned"
  else
    echo "- CPUs: nothing pinned (the daemons, Redis and the SIPps share the cores as the kernel schedules them)"
  fi
  echo "- Load average before each subject: ${loads[*]}"
  if [ "$quiet_wait" -gt 0 ]; then
    echo "- Before each step the run waited for the machine to be under 15 % busy (at most $quiet_wait s): $quiet_waited s in all"
  fi
  report_versions sipp
  echo "- Switchboard: $sb_desc"
  report_work_fs
  report_redis
  echo "- Steps: offered rate x $seconds s of REGISTERs over UDP on 127.0.0.1 with digest auth"
  echo "  (bench/sipp/register_auth.xml), $users users (u0..u$((users - 1))): one node = one SIPp at"
  echo "  the full rate to node a, every user in turn; two nodes = two SIPps at half the rate each,"
  echo "  u0..u$((half - 1)) to node a, u$half..u$((users - 1)) to node b. A fresh Redis and fresh"
  echo "  daemons (empty state directories) for every step; a subject stops at the first rate where"
  echo "  more than 0.1 % fail or under 90 % of the rate is achieved."
  echo
  echo "Commands (per step, in order: Redis, the node(s), the SIPp(s), run at once):"
  echo
  local c
  for c in "${commands[@]}"; do echo "    $c"; done
  echo
  echo "Switchboard config of node a in a step (ports and paths vary):"
  echo
  local example b_example
  example=$(ls "$work"/step-*-two-nodes-*/node-a/switchboard.toml "$work"/step-*/node-a/switchboard.toml 2>/dev/null | head -n 1 || true)
  if [ -n "$example" ]; then
    sed 's/^admin_token = .*/admin_token = "(a random token of the run)"/; s/^/    /' "$example"
  else
    echo "    (no step)"
  fi
  b_example=$(ls "$work"/step-*-two-nodes-*/node-b/switchboard.toml 2>/dev/null | head -n 1 || true)
  if [ -n "$b_example" ]; then
    echo
    echo "Node b's differs in its SIP port, its [store] node and its [api] listen:"
    echo
    sed -n '/^\[store\]/,/^$/p; /^\[api\]/,/^$/p' "$b_example" | sed '/^$/d; s/^admin_token = .*/admin_token = "(as node a)"/; s/^/    /'
  fi
  echo
  echo "| subject | offered/s | sent | ok | failed | achieved/s | SIPp s | RT ms p50 / p99 / max | retrans | node a CPU s | node b CPU s | Redis CPU s | µs/reg (all three) | node a peak RSS MiB | node b peak RSS MiB | Redis peak RSS MiB | users registered | node a lists | node b lists | SIPp CPU s | failures | logs |"
  echo "|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---|---|---|"
  local r
  for r in "${rows[@]}"; do echo "$r"; done
  echo
  echo "achieved/s = successful registrations / SIPp s, summed over the SIPps (two nodes: each"
  echo "SIPp's rate, node a's + node b's; they run at the same time, started a moment apart)."
  echo "SIPp s = each SIPp's own span, from its start to its final statistics (SIPp's StartTime and"
  echo "last CurrentTime: the processes' start and exit are not in it)."
  echo "failed = sent - ok (SIPp's failed registrations plus any it did not complete)."
  echo "RT = SIPp response time 1: first REGISTER sent to the 200 (both round trips of the digest"
  echo "exchange), over both SIPps; whole milliseconds from a coarse clock (steps of ~4 ms)."
  echo "retrans = SIPp's retransmissions (a REGISTER unanswered for 500 ms is sent again)."
  echo "CPU = user + system time of each daemon and of redis-server (with its AOF rewrite child)"
  echo "from the start of the SIPp(s) to a second after the last one exited; µs/reg divides the"
  echo "three together by the successful registrations."
  echo "peak RSS = VmHWM of each process at that moment."
  echo "users registered = the users the step's REGISTERs named (each SIPp takes its users in turn);"
  echo "node a lists, node b lists = the users with a registration in GET /v1/registrations of that"
  echo "node after the step, split by the node that took the registration (its \"node\" field); with"
  echo "two nodes both should list every user. The check begins a second after the last SIPp exited"
  echo "and asks again every 0.2 s for up to 10 s until both do; a shortfall is in the failures"
  echo "column with the time it waited."
  echo "SIPp CPU = each SIPp's user + system time (GNU time): node a's + node b's."
  echo "logs = each daemon's last line (its counters) and warnings, Redis's AOF rewrites and warnings."
}

if [ -n "$out" ]; then report | tee "$out"; else report; fi
