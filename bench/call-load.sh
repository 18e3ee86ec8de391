#!/usr/bin/env bash
# CALL load: calls per second through Switchboard (stateful proxy to a registered callee, no
# auth, durable registrations in its embedded store or in Redis) beside Kamailio 5.6
# (bench/kamailio/registrar.cfg: the same registrar, lookup("location") + t_relay with
# record_route, memory-only location table), measured with SIPp over UDP on loopback, all in
# one run on one machine.
#
# A benchmark, not a test: it prints the machine, the date, the exact commands it ran and
# Markdown tables (a summary, then one row per scenario x subject x offered rate) on stdout;
# progress goes to stderr.
#
#   bench/call-load.sh [--quick] [--rates "1000 2000 4000"] [--fork-rates "1000 2000"]
#                      [--seconds 10] [--hold 1000] [--answer-after 100] [--quiet-wait 120]
#                      [--reruns 2] [--subjects "switchboard kamailio"]
#                      [--scenarios "direct fork"] [--switchboard BIN] [--kamailio-shm MIB]
#                      [--media-sessions N] [--set SECTION.KEY=VALUE]... [--keep] [--out FILE]
#
#   --quick        smoke run: direct at "500 1000", fork at "500", 3 s per step
#   --rates        offered rates of the direct scenario in calls/s, rising (default 1000 2000
#                  3000 4000 5000 6000 7000 8000 9000 10000 11000 12000 13000 14000 16000: high
#                  enough that a fast 2-core machine still reaches both subjects' limits)
#   --fork-rates   offered rates of the fork scenario in calls/s, rising (default 500 1000
#                  1500 2000 3000 4000 5000 6000 7000 8000 9000 10000)
#   --seconds      length of a step: each step places rate x seconds calls (default 10)
#   --hold         milliseconds between the ACK and the BYE of every call (default 1000)
#   --answer-after milliseconds the answering contact rings before its 200 in the fork
#                  scenario (default 100; in the direct scenario it answers at once)
#   --quiet-wait   before each step, wait up to this many seconds for the machine to be quiet
#                  (under 15 % busy for a second: a build or test run elsewhere skews the
#                  numbers); 0: do not wait (default 120)
#   --reruns       a step that fails while other processes kept the machine busy (over 1/8 of
#                  its CPU time) is run again, up to this many times (default 2)
#   --subjects     which, in this order (default: switchboard kamailio):
#                    switchboard  Switchboard, state in its embedded store
#                    sb-redis     Switchboard, state in Redis (a redis-server per step)
#                    sb-two-nodes two Switchboards sharing one Redis: the callee registers
#                                 with node a, the calls come to node b, which rings the
#                                 callee through what it learnt from a (the change feed)
#                    kamailio     Kamailio, memory-only location table
#                  e.g. --subjects "switchboard sb-redis kamailio" for both stores beside
#                  Kamailio in one run
#   --scenarios    direct, fork: which, in this order (default: both)
#   --switchboard  use this binary instead of building one
#   --kamailio-shm Kamailio's shared memory pool in MiB (default 4096: with 1024 it ran out
#                  of it at 8,000 calls/s, before it ran out of CPU)
#   --media-sessions  Switchboard only (--subjects switchboard, sb-redis): during every step, N
#                  callers listen to a message of the daemon's own in early media (a G.711
#                  stream each, from its media engine), so that the steps show signalling
#                  beside media; compare with a run without it (default 0: no media)
#   --set          one more setting of Switchboard's config, SECTION.KEY=VALUE with VALUE as
#                  TOML writes it (repeatable; media.realtime_priority=0, say)
#   --keep         keep the work directory (logs, SIPp traces, configs) and print its path
#   --out FILE     also write the report to FILE
#
# Scenarios (SIPp scenarios in bench/sipp/):
#   direct  the callee has one registered contact, a SIPp that answers (call_uas.xml); the
#           caller (call_uac.xml) sends INVITE, gets (100), (180), 200, sends ACK, holds,
#           sends BYE, gets 200. ACK and BYE follow the Record-Route set.
#   fork    the callee has two registered contacts: one answers (call_uas.xml, after ringing
#           --answer-after ms), the other rings (call_uas_ring.xml: 180, then the proxy's
#           CANCEL -> 200 + 487 -> ACK).
#
# Each step starts the server afresh on a free loopback port (Kamailio collapses past its
# limit and stays broken for a while; Switchboard gets an empty state directory), registers
# the callee's contact(s) with bench/sipp/register.xml sent from each answering SIPp's own
# port (so Contact: <sip:callee@127.0.0.1:PORT> is that SIPp), starts the answering SIPp(s),
# places the step's calls with one calling SIPp, stops the answering SIPp(s), records what
# happened and stops the server. The caller is "caller", the callee "callee" (Request-URI
# sip:callee@switchboard.local); Switchboard's policy has both, the callee with ring_time 30
# and no_answer "hangup".
#
# The Redis subject (sb-redis) starts a redis-server of its own for every step too, before the
# daemon, on a free loopback port with an empty data directory in the work directory,
# appending every write to its AOF and fsyncing it before it answers (appendonly yes,
# appendfsync always: a registration's 200 means it is on disk, as with the embedded store);
# the daemon's [store] gets redis_url and node. The server CPU columns (and the summary's)
# count both processes, the daemon's and Redis's (so µs/call compares the subjects' whole
# cost, and Redis's work is not taken for other processes'); the Redis column shows Redis's
# part and its peak RSS. Redis is stopped after the daemon at the step's end, and on exit.
# The two-node subject (sb-two-nodes) starts node a too, beside the measured daemon (node b,
# which the calls come to), both on that Redis; its CPU counts with the server's and shows in
# the Redis column ("Redis + node a"), as a part of the subject's cost; it is stopped with
# node b. The cores are shared as the kernel schedules them (nothing is pinned unless the
# benchmark's own pinning says so, which puts node a with the server).
#
# A step fails when more than 0.1 % of its calls did not succeed at the caller, or when more
# than 0.1 % went wrong at the callee side (a contact's SIPp failed a call, or calls were still
# open there at the end, e.g. a fork branch never cancelled); a subject stops a scenario at
# its first failed step. A step whose achieved rate stays under 90 % of the offered one is
# marked "saturated" and fails too: the subject did not carry that rate (with all processes
# on two cores, the server's CPU use decides how fast the calling SIPp can still offer).
#
# Needs: sipp (Debian: sip-tester), kamailio, python3, cargo (unless --switchboard);
# redis-server and redis-cli (Debian: redis-server, redis-tools) for sb-redis.
# The Switchboard binary is built with `cargo build --release -p switchboard` into the
# workspace's target directory (CARGO_TARGET_DIR if set).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
# shellcheck source=bench/lib.sh
. "$here/lib.sh"

rates="1000 2000 3000 4000 5000 6000 7000 8000 9000 10000 11000 12000 13000 14000 16000"
fork_rates="500 1000 1500 2000 3000 4000 5000 6000 7000 8000 9000 10000"
seconds=10
hold=1000
answer_after=100
quiet_wait=120
reruns=2
subjects="switchboard kamailio"
scenarios="direct fork"
sb_bin=""
keep=0
out=""
media_sessions=0
sb_settings=()
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) rates="500 1000"; fork_rates="500"; seconds=3 ;;
    --rates) rates="$2"; shift ;;
    --fork-rates) fork_rates="$2"; shift ;;
    --seconds) seconds="$2"; shift ;;
    --hold) hold="$2"; shift ;;
    --answer-after) answer_after="$2"; shift ;;
    --quiet-wait) quiet_wait="$2"; shift ;;
    --reruns) reruns="$2"; shift ;;
    --subjects) subjects="$2"; shift ;;
    --scenarios) scenarios="$2"; shift ;;
    --switchboard) sb_bin="$2"; shift ;;
    --kamailio-shm) kamailio_shm="$2"; shift ;;
    --media-sessions) media_sessions="$2"; shift ;;
    --set) sb_settings+=("$2"); shift ;;
    --keep) keep=1 ;;
    --out) out="$2"; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown option: $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
for v in "$seconds" $rates $fork_rates "$kamailio_shm"; do
  [[ "$v" =~ ^[1-9][0-9]*$ ]] || { echo "not a positive integer: $v" >&2; exit 2; }
done
for v in "$hold" "$answer_after" "$quiet_wait" "$reruns" "$media_sessions"; do
  [[ "$v" =~ ^[0-9]+$ ]] || { echo "not a non-negative integer: $v" >&2; exit 2; }
done
for s in $subjects; do
  case "$s" in switchboard|sb-redis|sb-two-nodes|kamailio) ;; *) echo "unknown subject: $s (switchboard, sb-redis, sb-two-nodes, kamailio)" >&2; exit 2 ;; esac
done
for s in $scenarios; do
  case "$s" in direct|fork) ;; *) echo "unknown scenario: $s (direct, fork)" >&2; exit 2 ;; esac
done
if [ "$media_sessions" -gt 0 ] && [[ " $subjects " == *" kamailio "* ]]; then
  echo "--media-sessions: media is Switchboard's own; use it with --subjects switchboard (or sb-redis)" >&2
  exit 2
fi

need sipp "apt-get install sip-tester"
need python3 "apt-get install python3"
need timeout "coreutils"
need setsid "util-linux"
need ss "apt-get install iproute2"
case " $subjects " in *" kamailio "*) need kamailio "apt-get install kamailio" ;; esac
case " $subjects " in *" sb-redis "*|*" sb-two-nodes "*)
  need redis-server "apt-get install redis-server"
  need redis-cli "apt-get install redis-tools" ;;
esac

# ---------------------------------------------------------------------------------------------
# Processes (bench/lib.sh): the server's group, the Redis server's (sb-redis), and one group
# per SIPp (the caller, the registering one, each answering one), all killed on exit.
work=$(mktemp -d "${TMPDIR:-/tmp}/sb-call-load.XXXXXX")
redis_pgid=""
# sb-two-nodes: node a's process group (node b is the server).
peer_pgid=""
sipp_pgid=""
uas_pgids=()
sampler_pid=""
media_pgid=""

cleanup() {
  local rc=$? g
  trap - EXIT INT TERM
  [ -n "$sipp_pgid" ] && kill_group "$sipp_pgid"
  for g in "${uas_pgids[@]}"; do kill_group "$g"; done
  [ -n "$media_pgid" ] && kill_group "$media_pgid"
  [ -n "$sampler_pid" ] && kill "$sampler_pid" 2>/dev/null
  [ -n "$probe_pid" ] && kill "$probe_pid" 2>/dev/null
  [ -n "$server_pgid" ] && kill_group "$server_pgid"
  [ -n "$peer_pgid" ] && kill_group "$peer_pgid"
  [ -n "$redis_pgid" ] && kill_group "$redis_pgid"
  wait 2>/dev/null || true
  leave_work "$rc"
}
probe_pid=""
on_exit cleanup

# ---------------------------------------------------------------------------------------------
# Inputs (bench/lib.sh): the policy and the registering SIPp's injection file.

write_call_inputs

# Media beside the calls: a user whose calls go (after a second without devices) to a
# message of the daemon's own, a tone longer than any step, from a prompts directory of the
# run's own; the config points [media] at it.
media_settings=("${sb_settings[@]}")
media_notes=()
if [ "$media_sessions" -gt 0 ]; then
  message_secs=$((seconds * 3 + (hold + 999) / 1000 + 60))
  mkdir -p "$work/prompts/en/messages"
  python3 - "$work/prompts/en/messages/long.wav" "$message_secs" <<'PY'
import math, struct, sys, wave
path, secs = sys.argv[1], int(sys.argv[2])
period = b"".join(struct.pack("<h", int(8000 * math.sin(2 * math.pi * i / 20))) for i in range(20))
with wave.open(path, "wb") as w:
    w.setnchannels(1)
    w.setsampwidth(2)
    w.setframerate(8000)
    w.writeframes(period * (400 * secs))  # 400 periods of 20 samples a second: 400 Hz
PY
  cat >> "$work/policy.toml" <<'EOF'

# The listeners' destination: a message of the daemon's own (bench/call-load.sh
# --media-sessions).
[users.announce]
extension = "3000"
ring_time = 1
no_answer = "announcement:long"

[destinations.long]
kind = "announcement"
message = "long"
EOF
  media_settings+=("media.prompts=\"$work/prompts\"" "media.max_sessions=$((media_sessions + 100))")
fi

# Starts the listeners of a step (bench/sipp/media_early.xml) against the server on port $2,
# from SIPp in $1, and waits until they have had time to be answered (500 new a second);
# sets media_pgid.
start_media_load() { # $1 = dir, $2 = server port
  local dir=$1 port=$2 sport mport
  mkdir -p "$dir"
  sport=$(free_udp_port)
  mport=$(free_udp_port)
  local cmd=(sipp "127.0.0.1:$port" -sf "$here/sipp/media_early.xml" -s announce
    -i 127.0.0.1 -p "$sport" -mp "$mport" -m "$media_sessions" -r 500 -l "$media_sessions"
    -buff_size 4194304 -timeout "$((message_secs + 30))s" -nostdin -trace_err -trace_stat -trace_counts -fd 1)
  commands+=("  ${cmd[*]}")
  (
    cd "$dir"
    exec timeout -k 5 $((message_secs + 60)) "${cmd[@]}" > "$dir/sipp.out" 2>&1 < /dev/null
  ) &
  media_pgid=$!
  sleep $((media_sessions / 500 + 3))
}

# Stops the listeners of a step in $1 and notes how many were still listening.
stop_media_load() { # $1 = dir
  local dir=$1 listening
  kill_group "$media_pgid"
  wait "$media_pgid" 2>/dev/null || true
  media_pgid=""
  listening=$(bench_dir=$here python3 - "$dir" <<'PY'
import os, sys
sys.dont_write_bytecode = True
sys.path.insert(0, os.environ["bench_dir"])
import glob
from sipp_stats import last_row, num
s = last_row(sys.argv[1])
early = "?"
for path in glob.glob(os.path.join(sys.argv[1], "*_counts.csv")):
    rows = [l.rstrip("\n").split(";") for l in open(path) if l.strip()]
    if len(rows) >= 2:
        early = sum(int(v or 0) for k, v in zip(rows[0], rows[-1]) if k.endswith("_183_Recv"))
print(f"{early} answered 183 (the message playing), {num(s, 'CurrentCall')} listening at the end, {num(s, 'FailedCall(C)')} failed" if s else "no SIPp statistics")
PY
)
  media_notes+=("step $step_no: $media_sessions listeners started, $listening")
}

sb_desc="not run"
if [[ " $subjects " == *" switchboard "* || " $subjects " == *" sb-redis "* || " $subjects " == *" sb-two-nodes "* ]]; then
  switchboard_binary
fi

# ---------------------------------------------------------------------------------------------
# Servers (bench/lib.sh: write_call_config, start_switchboard, start_kamailio, stop_server, ...).

# The [store] settings of a Switchboard keeping its state in the Redis server of start_redis
# (bench/lib.sh: redis_store_keys), as write_call_config takes them.
redis_settings() {
  redis_store_keys | sed 's/^\([A-Za-z0-9_]*\) = /store.\1=/'
}

if [[ " $subjects " == *" switchboard "* || " $subjects " == *" sb-redis "* || " $subjects " == *" sb-two-nodes "* ]]; then
  mkdir -p "$work/check"
  check_settings=("${media_settings[@]}")
  # With sb-redis, the Redis keys are checked too (`check` does not connect to the server).
  if [[ " $subjects " == *" sb-redis "* || " $subjects " == *" sb-two-nodes "* ]]; then
    redis_port=6379
    mapfile -t -O "${#check_settings[@]}" check_settings < <(redis_settings)
    redis_port=""
  fi
  write_call_config "$work/check" 5060 "${check_settings[@]}"
  if ! "$sb_bin" check --config "$work/check/switchboard.toml" > "$work/check/check.out" 2>&1; then
    echo "switchboard check refuses the benchmark's config or policy:" >&2
    cat "$work/check/check.out" >&2
    exit 1
  fi
fi

# ---------------------------------------------------------------------------------------------
# One step: register the contact(s), start the answering SIPp(s), one calling SIPp.

sipp_call_limit

commands=()
rows=()
step_no=0


# Sets step_ok=1 when at most 0.1 % of the calls failed on either side and at least 90 % of
# the offered rate was achieved.
run_step() { # $1 = subject, $2 = scenario, $3 = rate
  local subject=$1 scenario=$2 rate=$3
  local n=$((rate * seconds))
  step_no=$((step_no + 1))
  local dir="$work/step-$step_no-$subject-$scenario-$rate"
  mkdir -p "$dir"
  step_ok=0
  wait_quiet

  # Ports: the server, the caller, one per callee contact.
  local roles=(answer) port uac_port p used
  [ "$scenario" = fork ] && roles=(answer ring)
  port=$(free_udp_port)
  used=" $port "
  local uas_ports=()
  for _ in "${roles[@]}" caller; do
    p=$(free_udp_port)
    while [[ "$used" == *" $p "* ]]; do p=$(free_udp_port); done
    used+="$p "
    uas_ports+=("$p")
  done
  uac_port=${uas_ports[-1]}
  unset 'uas_ports[-1]'
  # sb-two-nodes: where the callee registers (node a).
  local reg_port=$port
  if [ "$subject" = sb-two-nodes ]; then
    reg_port=$(free_udp_port)
    while [[ "$used" == *" $reg_port "* ]]; do reg_port=$(free_udp_port); done
    used+="$reg_port "
  fi

  local label
  commands+=("step $step_no, $subject, $scenario, $rate/s:")
  case "$subject" in
    switchboard) label="switchboard (no auth, durable)"
                 write_call_config "$dir" "$port" "${media_settings[@]}"
                 start_switchboard "$dir" "$port" ;;
    sb-redis) label="switchboard (no auth, durable in Redis)"
              start_redis "$dir/redis"
              commands+=("  $redis_cmd")
              local store_settings
              mapfile -t store_settings < <(redis_settings)
              write_call_config "$dir" "$port" "${media_settings[@]}" "${store_settings[@]}"
              start_switchboard "$dir" "$port" ;;
    sb-two-nodes) label="switchboard, two nodes on Redis (calls to b, callee registered with a)"
              start_redis "$dir/redis"
              commands+=("  $redis_cmd")
              local store_settings
              mapfile -t store_settings < <(redis_settings)
              mkdir -p "$dir/node-a"
              write_call_config "$dir/node-a" "$reg_port" "${media_settings[@]}" "${store_settings[@]}" 'store.node="a"'
              start_switchboard "$dir/node-a" "$reg_port"
              peer_pgid=$server_pgid
              server_pgid=""
              commands+=("  $server_cmd")
              write_call_config "$dir" "$port" "${media_settings[@]}" "${store_settings[@]}" 'store.node="b"'
              start_switchboard "$dir" "$port" ;;
    kamailio) label="kamailio (no auth, memory)"
              start_kamailio "$dir" "$port" ;;
  esac
  # The receive buffer the server's socket got (ss: rb, as the kernel reports it: twice
  # what was asked for).
  server_rb[$subject]=$(ss -Huamn "sport = :$port" 2>/dev/null | grep -o 'rb[0-9]*' | sed 's/^rb//' | sort -u | tr '\n' ' ' | sed 's/ $//')
  commands+=("  $server_cmd")

  echo "  $label, $scenario @ $rate/s: $n calls, server on 127.0.0.1:$port" >&2

  # The callee's contacts (bench/lib.sh): one REGISTER from each answering SIPp's port,
  # before that SIPp takes the port.
  local i reg_failed=""
  for i in "${!roles[@]}"; do
    register_contact "$dir/register-${roles[$i]}" "$reg_port" "${uas_ports[$i]}"
    [ -z "$reg_failed" ] || break
  done
  # sb-two-nodes: node b must know the callee's contact(s) before the calls come.
  if [ "$subject" = sb-two-nodes ] && [ -z "$reg_failed" ]; then
    sleep 1
  fi

  # The answering SIPp(s): no call limit of their own; stopped (SIGTERM, which makes SIPp
  # write its final statistics) once the caller is done.
  local global=$((seconds * 3 + 10 + (hold + 999) / 1000))
  local uas_dirs=()
  uas_pgids=()
  if [ -z "$reg_failed" ]; then
    for i in "${!roles[@]}"; do
      local sf=call_uas.xml ring=0
      [ "$scenario" = fork ] && ring=$answer_after
      [ "${roles[$i]}" = ring ] && sf=call_uas_ring.xml
      uas_dirs+=("$dir/uas-${roles[$i]}")
      start_answering "$dir/uas-${roles[$i]}" "${uas_ports[$i]}" "$sf" "$ring" $((n * 10 + 1000)) $((global + 20))
    done
  fi

  [ "$media_sessions" -gt 0 ] && start_media_load "$dir/media" "$port"

  # The calling SIPp. SIPp gives up on a call 5 s after its last transmission without the
  # expected response, and on the whole run after 3 x seconds + 10 s (+ the hold time);
  # `timeout` is the last resort.
  local cdir="$dir/uac"
  mkdir -p "$cdir"
  local cmd=(sipp "127.0.0.1:$port" -sf "$here/sipp/call_uac.xml" -s callee
    -i 127.0.0.1 -p "$uac_port" -m "$n" -r "$rate" -rp 1000 -l "$sipp_limit" -d "$hold"
    -buff_size 4194304 -recv_timeout 5000 -timeout "${global}s" -timeout_error
    -max_recv_loops 10000 -max_sched_loops 10000
    -nostdin -trace_screen -trace_err -trace_error_codes -max_log_size 20000000 -trace_stat -fd 3600 -trace_rtt -rtt_freq 100)
  commands+=("  ${cmd[*]}")

  local t0=0 t1=0 rc=0 cpu0 cpu1 rcpu0=0 rcpu1=0 busy0 busy1 uas_cpu0=0 uas_cpu1=0 g
  : > "$dir/udp-drops"
  udp_sampler "$dir/udp-drops" "$port" "$uac_port" "${uas_ports[@]}" &
  sampler_pid=$!
  cpu0=$(server_cpu)
  [ -n "$redis_pgid" ] && rcpu0=$(redis_cpu)
  local pcpu0=0
  [ -n "$peer_pgid" ] && pcpu0=$(group_cpu "$peer_pgid")
  for g in "${uas_pgids[@]}"; do uas_cpu0=$(awk -v a="$uas_cpu0" -v b="$(group_cpu "$g")" 'BEGIN { print a + b }'); done
  busy0=$(machine_busy)
  if [ -z "$reg_failed" ]; then
    # The probe: the server's own answer time, to the microsecond, beside the calls.
    (exec timeout -k 2 $((global + 30)) "${pin_sipp[@]}" python3 "$here/probe.py" "$port" "$dir/probes" 0.02) &
    probe_pid=$!
    # GNU time, when there, reports SIPp's own CPU use.
    sipp_timer_for "$cdir/sipp.time"
    t0=$(date +%s.%N)
    run_sipp "$cdir" $((global + 20)) "${sipp_timer[@]}" "${cmd[@]}"
    rc=$sipp_rc
    t1=$(date +%s.%N)
    kill "$probe_pid" 2>/dev/null || true
    wait "$probe_pid" 2>/dev/null || true
    probe_pid=""
  fi
  busy1=$(machine_busy)

  # Calls the caller finished are finished at the callee too (the last ACK of a cancelled
  # branch follows its 487 at once): a moment for the last datagrams, then measure and stop.
  sleep 0.3
  local rss cpu rcpu="" redis_col="-"
  rss=$(server_peak_rss)
  cpu1=$(server_cpu)
  cpu=$(awk -v a="$cpu0" -v b="$cpu1" 'BEGIN { printf "%.1f", b - a }')
  if [ -n "$redis_pgid" ]; then
    # The server's CPU is the daemon's and Redis's together; the Redis column is its part.
    rcpu1=$(redis_cpu)
    rcpu=$(awk -v a="$rcpu0" -v b="$rcpu1" 'BEGIN { printf "%.1f", b - a }')
    redis_col="$rcpu / $(redis_peak_rss)"
    if [ -n "$peer_pgid" ]; then
      # Node a's part, counted as Redis's is: a part of the subject's cost.
      local pcpu
      pcpu=$(awk -v a="$pcpu0" -v b="$(group_cpu "$peer_pgid")" 'BEGIN { printf "%.1f", b - a }')
      redis_col="$rcpu + node a $pcpu / $(redis_peak_rss) + $(server_peak_rss "$peer_pgid")"
      rcpu=$(awk -v a="$rcpu" -v b="$pcpu" 'BEGIN { printf "%.1f", a + b }')
    fi
    cpu=$(awk -v a="$cpu0" -v b="$cpu1" -v r="$rcpu" 'BEGIN { printf "%.1f", b - a + r }')
    if ! kill -0 "$redis_pgid" 2>/dev/null; then
      echo "  redis-server exited during the step; its log:" >&2
      tail -n 20 "$redis_log" >&2
      redis_col="exited"
    fi
  fi
  for g in "${uas_pgids[@]}"; do uas_cpu1=$(awk -v a="$uas_cpu1" -v b="$(group_cpu "$g")" 'BEGIN { print a + b }'); done
  for g in "${uas_pgids[@]}"; do kill_group "$g"; wait "$g" 2>/dev/null || true; done
  uas_pgids=()
  [ -n "$media_pgid" ] && stop_media_load "$dir/media"
  kill "$sampler_pid" 2>/dev/null || true
  wait "$sampler_pid" 2>/dev/null || true
  sampler_pid=""
  local drops_server drops_sipp=0
  drops_server=$(udp_drops_of "$dir/udp-drops" "$port")
  for p in "$uac_port" "${uas_ports[@]}"; do
    drops_sipp=$((drops_sipp + $(udp_drops_of "$dir/udp-drops" "$p")))
  done
  if ! kill -0 "$server_pgid" 2>/dev/null; then
    echo "  the server exited during the step; its log:" >&2
    tail -n 20 "$server_log" >&2
    rss="exited"; cpu="-"
  fi
  stop_server
  local server_note
  server_note=$(server_log_note "$subject")
  if [ -n "$peer_pgid" ]; then
    kill_group "$peer_pgid"
    wait "$peer_pgid" 2>/dev/null || true
    peer_pgid=""
  fi
  if [ -n "$redis_pgid" ]; then
    stop_redis
    server_note="$server_note; $(redis_log_note)"
  fi
  if [ "$rc" -ge 124 ] && [ "$rc" -ne 255 ]; then
    echo "  SIPp was stopped by timeout (exit $rc)" >&2
  fi

  # SIPp's final statistics (the last line of each CSV), the caller's response times (one
  # line per measurement) and error codes, the SIPps' CPU use, the other processes' CPU use.
  local stats
  stats=$(bench_dir=$here python3 - "$cdir" "$n" "$t0" "$t1" "$rate" "$hold" "$reg_failed" "$quiet_note" \
    "$(awk -v a="$uas_cpu0" -v b="$uas_cpu1" 'BEGIN { print b - a }')" \
    "$(awk -v a="$busy0" -v b="$busy1" 'BEGIN { print b - a }')" "$cpu" "$scenario" "${uas_dirs[@]}" <<'PY'
import collections, os, sys
sys.dont_write_bytecode = True  # no __pycache__ in bench/
sys.path.insert(0, os.environ["bench_dir"])
from sipp_stats import last_row, num, causes_of, response_times, pcts
cdir, n, t0, t1, rate, hold, reg_failed, quiet_note, uas_cpu, busy, server_cpu, scenario = sys.argv[1:13]
uas_dirs = sys.argv[13:]
n, rate, hold = int(n), int(rate), int(hold)
wall = float(t1) - float(t0)

causes = [quiet_note] if quiet_note else []
s = last_row(cdir)
ok = num(s, "SuccessfulCall(C)")
sipp_failed = num(s, "FailedCall(C)")
retrans = num(s, "Retransmissions(C)")
if reg_failed:
    causes.append(reg_failed)
else:
    causes += causes_of(s, cdir)
    if not s:
        causes.append("no SIPp statistics")
    elif n - ok - sipp_failed > 0:
        causes.append(f"not completed {n - ok - sipp_failed}")

# The callee side: each contact's SIPp.
callee_problems = 0
uas_retrans = []
for d in uas_dirs:
    role = os.path.basename(d).split("-", 1)[1]
    u = last_row(d)
    if not u:
        causes.append(f"{role}: no SIPp statistics")
        callee_problems += n
        continue
    inc, uok, ufail = num(u, "IncomingCall(C)"), num(u, "SuccessfulCall(C)"), num(u, "FailedCall(C)")
    uas_retrans.append(str(num(u, "Retransmissions(C)")))
    open_calls = max(0, inc - uok - ufail)
    # Every call that reached the caller's 200 went through this contact too (the fork's
    # ringing one included); a contact that saw fewer INVITEs missed some.
    missing = max(0, ok - inc)
    callee_problems += ufail + open_calls + missing
    part = []
    if ufail:
        part += [f"failed {ufail}"] + causes_of(u, d)
    if open_calls:
        part.append(f"still open {open_calls}" + (" (not cancelled)" if role == "ring" else ""))
    if missing:
        part.append(f"got {inc} INVITEs for {ok} answered calls")
    if part:
        causes.append(f"{role} contact: " + ", ".join(part))

rtt = response_times(cdir)
rts = {k: [ms for _, ms in v] for k, v in rtt.items()}
setup_at = [at for at, _ in rtt.get("1", [])]

try:
    u_, sy, m = open(f"{cdir}/sipp.time").read().split()[-3:]
    uac_cpu = float(u_) + float(sy)
except Exception:
    uac_cpu = None
uas_cpu = float(uas_cpu)
sipp_cpu = f"{uac_cpu:.1f} + {uas_cpu:.1f}" if uac_cpu is not None else f"- + {uas_cpu:.1f}"
others = "-"
disturbed = 0
if uac_cpu is not None and server_cpu != "-" and wall > 0:
    o = float(busy) - float(server_cpu) - uac_cpu - uas_cpu
    others = f"{max(0.0, o):.1f}"
    # Over 1/8 of the machine's CPU time (2 cores here: a quarter of a core).
    if o > os.cpu_count() * wall / 8:
        causes.append(f"other processes busy: {o:.1f} CPU s in {wall:.1f} s")
        disturbed = 1

failed = n - ok
# The rate at which calls were set up: 200s received per second, from the times SIPp took
# the setup times at (milliseconds since it started); without them, the successful calls over
# the wall time less the hold time.
if len(setup_at) >= 2 and max(setup_at) > min(setup_at):
    achieved = (len(setup_at) - 1) / ((max(setup_at) - min(setup_at)) / 1000)
else:
    span = wall - hold / 1000
    achieved = ok / span if span > 0 else 0
if ok and achieved < 0.9 * rate:
    causes.append("saturated: achieved < 90 % of offered")
print("\t".join([str(ok), str(failed), f"{100 * failed / n:.2f}", f"{achieved:.0f}", f"{wall:.1f}",
                 pcts(rts.get("1", [])), pcts(rts.get("2", [])),
                 f"{retrans} / {' + '.join(uas_retrans) or '-'}", sipp_cpu, others,
                 str(callee_problems), str(disturbed), "; ".join(causes) or "-"]))
PY
)
  local ok failed failed_pct achieved wall setup bye retrans sipp_cpu others callee_problems causes probes="-"
  [ -f "$dir/probes" ] && probes=$(bench_dir=$here python3 -c 'import os, sys
sys.dont_write_bytecode = True
sys.path.insert(0, os.environ["bench_dir"])
from sipp_stats import probe_summary
print(probe_summary(sys.argv[1]))' "$dir/probes")
  IFS=$'\t' read -r ok failed failed_pct achieved wall setup bye retrans sipp_cpu others callee_problems step_disturbed causes <<< "$stats"
  local per_call="-"
  if [ "$ok" -gt 0 ] && [ "$cpu" != "-" ]; then
    per_call=$(awk -v c="$cpu" -v n="$ok" 'BEGIN { printf "%.0f", c * 1e6 / n }')
  fi
  rows+=("| $label | $scenario | $rate | $n | $ok | $failed ($failed_pct %) | $achieved | $wall | $setup | $bye | $probes | $retrans | $drops_server / $drops_sipp | $cpu ($per_call) | $redis_col | $sipp_cpu | $others | $rss | $causes | $server_note |")
  summary_last="$ok	$failed_pct	$achieved	$setup	$cpu	$per_call	$rss"
  echo "    placed $n, ok $ok, failed $failed ($failed_pct %), achieved $achieved/s in $wall s, setup ms p50/p99/max $setup, BYE ms $bye, probes $probes, retransmissions caller/callee $retrans, UDP drops server/SIPp $drops_server / $drops_sipp, server CPU $cpu s ($per_call µs/call)${rcpu:+ (Redis $rcpu s)}, SIPp CPU $sipp_cpu s, others $others s, peak RSS $rss MiB; $causes (SIPp exit $rc)" >&2
  # "saturated" is decided above on the exact achieved rate, not the rounded one printed.
  if [ "$((failed * 1000))" -le "$n" ] && [ "$((callee_problems * 1000))" -le "$n" ] && [ "$ok" -gt 0 ] \
    && [[ "$causes" != *saturated* ]]; then
    step_ok=1
  fi
  if [ "$rc" -eq 255 ] || [ "$rc" -eq 254 ]; then
    echo "  SIPp failed to run (exit $rc):" >&2
    tail -n 5 "$cdir/sipp.out" >&2
    step_ok=0
  fi
}

# ---------------------------------------------------------------------------------------------

started=$(date -u '+%Y-%m-%d %H:%M:%S UTC')
t_start=$(date +%s)
# Another SIP server or SIPp on the machine competes for its two cores: say so.
others_at_start=$( (pgrep -a -x kamailio; pgrep -a -x sipp) 2>/dev/null | cut -c1-120 || true)
stray_5060=$(ss -Hlunp 'sport = :5060' 2>/dev/null | head -n 3 || true)
loads=()
summary=()
reran=0
declare -A server_rb=()
for scenario in $scenarios; do
  scenario_rates=$rates
  [ "$scenario" = fork ] && scenario_rates=$fork_rates
  for subject in $subjects; do
    echo "== $subject, $scenario (load average: $(cut -d' ' -f1-3 /proc/loadavg))" >&2
    loads+=("$subject/$scenario: $(cut -d' ' -f1-3 /proc/loadavg)")
    best="-	-	-	-	-	-	-	-"
    first_fail="-"
    for rate in $scenario_rates; do
      run_step "$subject" "$scenario" "$rate"
      for ((attempt = 1; attempt <= reruns; attempt++)); do
        [ "$step_ok" != 1 ] && [ "$step_disturbed" = 1 ] || break
        echo "  failed while other processes kept the machine busy: once more ($attempt of $reruns)" >&2
        rows[-1]="${rows[-1]/| $rate |/| $rate (disturbed, run again) |}"
        reran=$((reran + 1))
        run_step "$subject" "$scenario" "$rate"
      done
      if [ "$step_ok" = 1 ]; then
        best="$rate	$summary_last"
      else
        first_fail="$rate"
        echo "  more than 0.1 % failed, or saturated, at $rate/s: next" >&2
        break
      fi
    done
    summary+=("$subject	$scenario	$best	$first_fail")
  done
done
duration=$(($(date +%s) - t_start))

report() {
  echo "# CALL load: Switchboard beside Kamailio"
  echo
  echo "- Date: $started (the run took $((duration / 60)) min $((duration % 60)) s)"
  report_machine
  echo "- Load average before each subject and scenario: ${loads[*]}"
  echo "- Other SIP processes at the start: ${others_at_start:-none}; UDP :5060: ${stray_5060:-free}"
  if [ "$quiet_wait" -gt 0 ]; then
    echo "- Before each step the run waited for the machine to be under 15 % busy (at most $quiet_wait s):"
    echo "  $quiet_waited s in all; steps that failed while other processes were busy and were run again: $reran"
  fi
  report_versions
  echo "- Switchboard: $sb_desc; settings beyond the benchmark's config: ${sb_settings[*]:-none}"
  case " $subjects " in *" switchboard "*|*" sb-redis "*|*" sb-two-nodes "*) report_work_fs ;; esac
  case " $subjects " in *" sb-redis "*|*" sb-two-nodes "*) report_redis ;; esac
  local subj_rb=() k
  for k in "${!server_rb[@]}"; do subj_rb+=("$k ${server_rb[$k]:-?}"); done
  echo "- Server socket receive buffer (bytes, as ss reports it): ${subj_rb[*]:-none}; net.core.rmem_max $(cat /proc/sys/net/core/rmem_max 2>/dev/null || echo '?')"
  case " $subjects " in *" kamailio "*) report_kamailio ;; esac
  echo "- Steps: offered rate x $seconds s of calls over UDP on 127.0.0.1 from one calling SIPp"
  echo "  (bench/sipp/call_uac.xml: INVITE, 100, 180, 200, ACK, $hold ms hold, BYE, 200, by the"
  echo "  Record-Route set) to \"callee\", registered by bench/sipp/register.xml: direct = one"
  echo "  contact, an answering SIPp (call_uas.xml: 180 and 200 at once); fork = two contacts,"
  echo "  the answering one (180, $answer_after ms ringing, 200) and one that rings and is cancelled"
  echo "  (call_uas_ring.xml: 180, CANCEL, 200, 487, ACK)."
  echo "  A fresh server (and empty state directory; with Redis, a fresh Redis server too) for every"
  echo "  step; a subject stops a scenario at the first rate where more than 0.1 % of the calls fail"
  echo "  or under 90 % of the rate is achieved (saturated). All SIPps and the server (with Redis)"
  echo "  share the cores."
  if [ "$media_sessions" -gt 0 ]; then
    echo "- Media: during every step, $media_sessions callers (bench/sipp/media_early.xml, from"
    echo "  one more SIPp, started 500 a second before the calls) listened in early media to a"
    echo "  ${message_secs} s message of the daemon's own (a G.711 stream each from its media"
    echo "  engine; server CPU includes the media thread's):"
    local note
    for note in "${media_notes[@]}"; do echo "  $note"; done
  fi
  echo
  echo "Summary: the highest offered rate with at most 0.1 % failed calls and at least 90 % of it achieved."
  echo
  echo "| subject | scenario | highest clean rate/s | achieved/s | setup ms p50 / p99 / max | server CPU s (µs/call) | server peak RSS MiB | first failing rate/s |"
  echo "|---|---|---:|---:|---|---:|---|---:|"
  local r subj scen best ok pct ach setup cpu per rss fail
  for r in "${summary[@]}"; do
    IFS=$'\t' read -r subj scen best ok pct ach setup cpu per rss fail <<< "$r"
    if [ "$best" = "-" ]; then
      echo "| $subj | $scen | none | - | - | - | - | $fail |"
    else
      echo "| $subj | $scen | $best | $ach | $setup | $cpu ($per) | $rss | $fail |"
    fi
  done
  echo
  local sc kb sb
  for sc in $scenarios; do
    kb=""; sb=""
    for r in "${summary[@]}"; do
      IFS=$'\t' read -r subj scen best _ <<< "$r"
      [ "$scen" = "$sc" ] || continue
      [ "$subj" = kamailio ] && kb=$best
      [ "$subj" = switchboard ] && sb=$best
    done
    if [ -n "$kb" ] && [ -n "$sb" ]; then
      if [ "$sb" = "-" ]; then
        echo "- $sc: Switchboard had no clean step; Kamailio: ${kb/-/none} calls/s. Target (Switchboard >= Kamailio) not met."
      elif [ "$kb" = "-" ] || [ "$sb" -ge "$kb" ]; then
        echo "- $sc: Switchboard $sb calls/s, Kamailio ${kb/-/none} calls/s: target (Switchboard >= Kamailio) met."
      else
        echo "- $sc: Switchboard $sb calls/s, Kamailio $kb calls/s: target (Switchboard >= Kamailio) not met."
      fi
    fi
  done
  echo
  echo "Commands (per step, in order: server, registrations, answering SIPp(s), calling SIPp):"
  echo
  local c
  for c in "${commands[@]}"; do echo "    $c"; done
  echo
  echo "Switchboard config of a step (port and paths vary) and its policy:"
  echo
  local example
  example=$(ls "$work"/step-*/switchboard.toml 2>/dev/null | head -n 1 || true)
  if [ -n "$example" ]; then
    sed 's/^/    /' "$example"
    echo
    sed 's/^/    /' "$work/policy.toml"
  else
    echo "    (no Switchboard step)"
  fi
  # A Redis step's [store] (the rest is as above).
  report_redis_store "$example" "With the state in Redis (sb-redis), its [store] section:"
  echo
  echo "| subject | scenario | offered/s | calls | ok | failed | achieved/s | wall s | setup ms p50 / p99 / max | BYE ms p50 / p99 / max | probes: answered, ms p50 / p99 / max | retrans caller / callee | UDP drops server / SIPp | server CPU s (µs/call) | Redis CPU s / peak RSS MiB | SIPp CPU s caller + callee | others CPU s | server peak RSS MiB | failures | server log |"
  echo "|---|---|---:|---:|---:|---:|---:|---:|---|---|---|---|---|---:|---:|---|---:|---|---|---|"
  for r in "${rows[@]}"; do echo "$r"; done
  echo
  echo "achieved/s = calls set up per second: the 200s the caller got, over the time from the first"
  echo "to the last (SIPp's response-time log; the last < 100 of a run are not in it)."
  echo "failed = placed - ok at the caller (SIPp's failed calls plus any it did not complete);"
  echo "failures lists why, with the unexpected responses the caller got, and what went wrong at"
  echo "the callee's contacts (a failed call there, a call still open at the end: for the ringing"
  echo "contact, one the proxy never cancelled; fewer INVITEs than answered calls)."
  echo "setup = SIPp response time 1: INVITE (first transmission) to the 200 (in the fork scenario"
  echo "it includes the answering contact's $answer_after ms of ringing); BYE = BYE to its 200."
  echo "SIPp measures in whole milliseconds with a coarse clock (values come in steps of ~4 ms)."
  echo "probes = bench/probe.py during the calling SIPp's run: an OPTIONS to the server every 20 ms"
  echo "from 127.0.0.1, timed to the microsecond from its send to the answer's arrival: the"
  echo "server's signalling latency beside the calls (and the media, with --media-sessions)."
  echo "retrans = SIPp's retransmissions (INVITE, BYE, the callee's 200 and 487: after 500 ms)."
  echo "UDP drops = datagrams the kernel dropped because a socket's receive buffer was full: at the"
  echo "server's socket / at the SIPps' (sampled from /proc/net/udp every 0.2 s)."
  echo "server CPU = user + system time of the server's processes during the calling SIPp's run;"
  echo "with the state in Redis (sb-redis), the daemon's and redis-server's together (Redis's part"
  echo "in the Redis column, with its peak RSS); µs/call divides it by the successful calls."
  echo "SIPp CPU = the calling SIPp's (GNU time) + the answering SIPps' (during the run)."
  echo "others CPU = the machine's user + system + steal time during the run minus the server's and"
  echo "the SIPps': other work on the machine (it disturbs the step when large; a failed step where"
  echo "it exceeded 1/8 of the machine is marked \"disturbed\" and run again)."
  echo "server peak RSS = VmHWM at the end of the step (registrations and calls; with Redis the"
  echo "daemon's alone, Redis's is in the Redis column); for Kamailio the largest process and the"
  echo "sum over its processes (shared memory counts in every process that touched it, so the sum"
  echo "is an upper bound)."
}

if [ -n "$out" ]; then report | tee "$out"; else report; fi
