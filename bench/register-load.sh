#!/usr/bin/env bash
# REGISTERs per second through Switchboard, beside Kamailio 5.6, in one run on one machine.
# A benchmark, not a test: it prints a Markdown table and the exact commands it ran.
#
#   bench/register-load.sh [--quick] [--rates "2000 5000 10000"] [--seconds 5] [--users 10000]
#
# For each subject and rising offered rate it sends rate x seconds REGISTERs with SIPp
# (each with its own Call-ID, users taken in turn from a CSV), restarting the server between
# steps, and stops a subject at the first rate where more than 0.1 % fail.
# Needs: sipp (sip-tester), kamailio; builds switchboard in release mode.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

rates="2000 5000 10000 20000 30000 40000"
seconds=5
users=10000
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) rates="1000 5000"; seconds=2; users=1000 ;;
    --rates) rates="$2"; shift ;;
    --seconds) seconds="$2"; shift ;;
    --users) users="$2"; shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
  shift
done

for p in sipp kamailio; do
  command -v "$p" >/dev/null || { echo "$p is missing: apt-get install sip-tester kamailio" >&2; exit 2; }
done

work=$(mktemp -d /tmp/sb-bench.XXXXXX)
server_pid=""
cleanup() {
  [ -n "$server_pid" ] && kill -9 "$server_pid" 2>/dev/null || true
  pkill -f "sipp 127.0.0.1:$port" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

echo "building switchboard (release)..." >&2
cargo build --release -q -p switchboard
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
sb="$target_dir/release/switchboard"

# Users u0..u(N-1), password pw, MD5 (SIPp answers MD5 only).
{
  for ((i = 0; i < users; i++)); do
    printf '[users.u%d]\nextension = "%d"\n[users.u%d.sip]\npassword = "pw"\nalgorithms = ["md5"]\n' "$i" $((100000 + i)) "$i"
  done
} > "$work/policy.toml"
{ echo SEQUENTIAL; for ((i = 0; i < users; i++)); do echo "u$i"; done; } > "$work/users.csv"

port=$(python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
sipp_port=$((port + 1))
commands=()

start_switchboard() { # $1 = auth true|false
  rm -rf "$work/state"
  cat > "$work/switchboard.toml" <<EOF
[sip]
listen = ["udp:127.0.0.1:$port"]
realm = "switchboard.local"
[api]
listen = ""
[auth]
required = $1
max_failures = 1000000
[store]
state_dir = "$work/state"
[policy]
path = "$work/policy.toml"
EOF
  RUST_LOG=warn "$sb" run --config "$work/switchboard.toml" > "$work/server.log" 2>&1 &
  server_pid=$!
  commands+=("RUST_LOG=warn $sb run --config switchboard.toml   # [auth] required = $1")
  for _ in $(seq 100); do
    grep -q "switchboard ready" "$work/server.log" 2>/dev/null && return 0
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.1
  done
  # RUST_LOG=warn hides the ready line: probe with OPTIONS instead.
  for _ in $(seq 100); do
    if python3 - "$port" <<'PY'
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(0.2)
s.sendto(b"OPTIONS sip:switchboard.local SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:1;rport;branch=z9hG4bKprobe\r\nMax-Forwards: 70\r\nFrom: <sip:p@x>;tag=1\r\nTo: <sip:x>\r\nCall-ID: probe\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n", ("127.0.0.1", int(sys.argv[1])))
try:
    s.recv(2000); sys.exit(0)
except Exception:
    sys.exit(1)
PY
    then return 0; fi
    sleep 0.1
  done
  echo "switchboard did not start:" >&2; cat "$work/server.log" >&2; exit 1
}

start_kamailio() {
  kamailio -f "$root/bench/kamailio/registrar.cfg" -l "udp:127.0.0.1:$port" -DD -E -m 1024 -x tlsf -w "$work" > "$work/server.log" 2>&1 &
  server_pid=$!
  commands+=("kamailio -f bench/kamailio/registrar.cfg -l udp:127.0.0.1:$port -DD -E -m 1024 -x tlsf -w DIR")
  sleep 1.5
}

stop_server() {
  [ -n "$server_pid" ] && kill -9 "$server_pid" 2>/dev/null || true
  wait "$server_pid" 2>/dev/null || true
  # Kamailio's children follow their parent.
  pkill -9 -f "kamailio -f $root/bench/kamailio/registrar.cfg" 2>/dev/null || true
  server_pid=""
  sleep 0.3
}

peak_rss_kib() {
  local pids
  pids=$(pgrep -f "$1" || true)
  local total=0
  for p in $pids; do
    v=$(awk '/VmHWM/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0)
    total=$((total + ${v:-0}))
  done
  echo "$total"
}

rows=()
run_step() { # $1 subject, $2 scenario, $3 rate, $4 pattern for RSS
  local n=$(( $3 * seconds ))
  local out="$work/sipp-$RANDOM"
  mkdir -p "$out"
  local auth_args=()
  if [ "$2" = register_auth.xml ]; then auth_args=(-au '[field0]' -ap pw -auth_uri switchboard.local); fi
  local cmd=(sipp "127.0.0.1:$port" -sf "$root/bench/sipp/$2" -inf "$work/users.csv" "${auth_args[@]}"
             -i 127.0.0.1 -p "$sipp_port" -m "$n" -r "$3" -rp 1000 -l 20000 -buff_size 4194304
             -timeout $((seconds + 30))s -timeout_error -max_recv_loops 10000 -nostdin -trace_screen -trace_err)
  commands+=("${cmd[*]}")
  local t0 t1
  t0=$(date +%s.%N)
  (cd "$out" && timeout $((seconds + 60)) "${cmd[@]}" > sipp.out 2>&1) || true
  t1=$(date +%s.%N)
  local screen ok failed rt
  screen=$(cat "$out"/*_screen.log 2>/dev/null || true)
  ok=$(echo "$screen" | awk -F'|' '/Successful call/ {gsub(/ /,"",$3); print $3; exit}')
  failed=$(echo "$screen" | awk -F'|' '/Failed call/ {gsub(/ /,"",$3); print $3; exit}')
  rt=$(echo "$screen" | awk -F'|' '/Response Time 1/ {gsub(/^ +| +$/,"",$3); print $3; exit}')
  local elapsed achieved rss
  if [ -z "$screen" ]; then
    # SIPp was stopped by the time limit before it could write its statistics.
    rss=$(peak_rss_kib "$4")
    rows+=("| $1 | $3 | - | - | - | SIPp did not finish within $((seconds + 60)) s | - | $((rss / 1024)) |")
    echo "  $1 @ $3/s: SIPp did not finish" >&2
    return 1
  fi
  ok=${ok:-0}; failed=${failed:-$n}
  elapsed=$(python3 -c "print(f'{$t1-$t0:.2f}')")
  achieved=$(python3 -c "print(int($ok/max($t1-$t0,0.001)))")
  rss=$(peak_rss_kib "$4")
  rows+=("| $1 | $3 | $achieved | $ok | $failed | ${rt:-?} | $elapsed | $((rss / 1024)) |")
  echo "  $1 @ $3/s: ok=$ok failed=$failed achieved=$achieved/s rt=${rt:-?}" >&2
  # Pass when at most 0.1 % failed.
  python3 -c "import sys; sys.exit(0 if $failed * 1000 <= $n and $ok > 0 else 1)"
}

bench_subject() { # $1 name, $2 starter, $3 starter arg, $4 scenario, $5 rss pattern
  echo "== $1" >&2
  for r in $rates; do
    $2 $3
    if ! run_step "$1" "$4" "$r" "$5"; then stop_server; break; fi
    stop_server
  done
}

bench_subject "switchboard (auth MD5, durable)" start_switchboard true register_auth.xml "$sb run --config"
bench_subject "switchboard (no auth, durable)" start_switchboard false register.xml "$sb run --config"
bench_subject "kamailio 5.6 (no auth, memory)" start_kamailio "" register.xml "kamailio -f"

echo
echo "## REGISTER load, $(date -u +%Y-%m-%dT%H:%MZ)"
echo
echo "Machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'); SIPp and the server share them."
echo "Each step: offered rate x ${seconds} s of REGISTERs over UDP on loopback, ${users} users in turn; the server restarted between steps."
echo
echo "Commands:"
printf '    %s\n' "${commands[@]}" | awk '!seen[$0]++'
echo
echo "| subject | offered/s | achieved/s | ok | failed | SIPp response time | wall s | peak RSS MiB |"
echo "|---|---|---|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
