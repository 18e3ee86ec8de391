# Shared pieces of the benchmarks (bench/register-load.sh, bench/call-load.sh,
# bench/instructions.sh, bench/overload.sh, bench/two-nodes.sh): processes and their groups,
# free ports, a quiet machine, starting and measuring the servers, the Switchboard binary,
# the registrations' inputs (users, policy, config), the calls' inputs (policy, config, the
# callee's registration and answering SIPp). SIPp's statistics files are read by
# bench/sipp_stats.py. Sourced, never run; the scripts that source it set `set -euo pipefail`
# and these globals:
#
#   here   this directory          root   the workspace
#   work   the run's work directory
#   commands   (calls only) an array the exact commands run are appended to
#
# Processes: every server runs in a process group of its own (setsid), SIPp under `timeout`
# (which also makes a group of its own); both are killed by their group id, nothing by name.
# So is the Redis server a Switchboard subject keeps its state in (start_redis): a group of
# its own, $redis_pgid, which the scripts' cleanup kills too.

need() { command -v "$1" >/dev/null || { echo "$1 is missing: $2" >&2; exit 2; }; }

# The end of a benchmark's cleanup: the work directory ($work) is kept when asked (--keep,
# $keep = 1) or when the run failed, removed otherwise; exits with the run's status $1.
leave_work() {
  if [ "$keep" = 1 ] || [ "$1" != 0 ]; then
    echo "work directory kept: $work" >&2
  else
    rm -rf "$work"
  fi
  exit "$1"
}

# Runs the function $1 however the script ends (Ctrl-C and TERM end it with their usual
# statuses, which $1 sees as $?).
on_exit() {
  trap "$1" EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
}

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
  # No such group yet: its leader has not made it (setsid / timeout not run yet); the leader
  # is the process $g itself.
  # (|| true: the process may be gone too, which under set -e would end the caller's cleanup
  # before it stopped the other groups.)
  kill -TERM -- "-$g" 2>/dev/null || { kill -TERM "$g" 2>/dev/null || true; return 0; }
  for ((i = 0; i < 50; i++)); do
    group_alive "$g" || return 0
    sleep 0.1
  done
  echo "process group $g still running 5 s after SIGTERM: SIGKILL" >&2
  kill -KILL -- "-$g" 2>/dev/null || true
}

# Waits until UDP port $1 on 127.0.0.1 is bound, at most 10 s, while process $2 lives (its
# pid, not its group: `timeout` makes the group only once it runs).
wait_bound() {
  local i
  for ((i = 0; i < 100; i++)); do
    [ -n "$(ss -Hlun "sport = :$1" 2>/dev/null)" ] && return 0
    kill -0 "$2" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

# Runs "$@" (a SIPp command) in directory $1 under timeout $2 (seconds) as a group of its own,
# output to $1/sipp.out; sets sipp_rc.
run_sipp() {
  local dir=$1 limit=$2
  shift 2
  sipp_rc=0
  (
    cd "$dir"
    exec timeout -k 5 "$limit" "${pin_sipp[@]}" "$@" > "$dir/sipp.out" 2>&1 < /dev/null
  ) &
  sipp_pgid=$!
  wait "$sipp_pgid" || sipp_rc=$?
  sipp_pgid=""
}

free_udp_port() { # $1 = address (default 127.0.0.1)
  python3 -c 'import socket, sys; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind((sys.argv[1], 0)); print(s.getsockname()[1])' "${1:-127.0.0.1}"
}

free_tcp_port() { # on 127.0.0.1
  python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_STREAM); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# ---------------------------------------------------------------------------------------------
# The machine: how busy it is, waiting for it to be quiet, datagrams dropped at sockets.

# CPU seconds the whole machine spent in processes so far (all cores; /proc/stat: user, nice,
# system and steal; not the interrupt time, which is mostly the loopback traffic itself).
machine_busy() {
  awk -v hz="$(getconf CLK_TCK)" '/^cpu / { printf "%.2f", ($2 + $3 + $4 + $9) / hz; exit }' /proc/stat
}

# Waits (at most $quiet_wait s; 0: not at all) until the machine was under 15 % busy for a
# second; nothing of the script runs then. Sets quiet_note (empty, or why it went on anyway)
# and adds the seconds waited to quiet_waited.
quiet_wait=${quiet_wait:-120}
quiet_waited=0
wait_quiet() {
  local waited=0 b0 b1 pct ncpu
  ncpu=$(nproc)
  quiet_note=""
  [ "$quiet_wait" -gt 0 ] || return 0
  while :; do
    b0=$(machine_busy); sleep 1; b1=$(machine_busy)
    pct=$(awk -v a="$b0" -v b="$b1" -v n="$ncpu" 'BEGIN { printf "%.0f", 100 * (b - a) / n }')
    [ "$pct" -lt 15 ] && break
    if [ "$waited" -ge "$quiet_wait" ]; then
      echo "  the machine is still $pct % busy after $waited s: going on" >&2
      quiet_note="machine $pct % busy before the step"
      return 0
    fi
    [ "$waited" = 0 ] && echo "  the machine is $pct % busy (other processes): waiting for it to be quiet ..." >&2
    waited=$((waited + 1))
  done
  if [ "$waited" -gt 0 ]; then
    echo "  quiet after $waited s" >&2
    quiet_waited=$((quiet_waited + waited))
  fi
}

# Datagrams the kernel dropped at our sockets (receive buffer full): samples /proc/net/udp
# every 0.2 s into $1 while it runs (a socket's counter is gone once it is closed), for the
# ports $2... ; udp_drops_of FILE PORT gives a port's highest count (summed over the sockets
# bound to that port, should a server bind several). Run it in the background.
udp_sampler() {
  local file=$1
  shift
  local hex=() p
  for p in "$@"; do hex+=("$(printf '%04X' "$p")"); done
  while :; do
    awk -v ports=" ${hex[*]} " 'NR == 1 { print "sample" } NR > 1 { split($2, a, ":"); if (index(ports, " " a[2] " ")) print a[2], $NF }' /proc/net/udp >> "$file" 2>/dev/null
    sleep 0.2
  done
}
udp_drops_of() {
  awk -v p="$(printf '%04X' "$2")" '
    $1 == "sample" { if (s > m) m = s; s = 0 }
    $1 == p { s += $2 }
    END { if (s > m) m = s; print m + 0 }' "$1" 2>/dev/null || echo 0
}
# The datagrams dropped so far at the open sockets bound to port $1.
udp_drops_now() {
  awk -v p="$(printf '%04X' "$1")" 'NR > 1 { split($2, a, ":"); if (a[2] == p) s += $NF } END { print s + 0 }' /proc/net/udp 2>/dev/null || echo 0
}

# Waits until something answers an OPTIONS on 127.0.0.1:$1 (any response), at most $2 s.
wait_sip() {
  bench_dir=$here python3 - "$1" "$2" <<'PY'
import os, socket, sys, time
sys.dont_write_bytecode = True  # no __pycache__ in bench/
sys.path.insert(0, os.environ["bench_dir"])
from probe import options
port, limit = int(sys.argv[1]), float(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 0))
s.settimeout(0.2)
me = s.getsockname()[1]
deadline = time.monotonic() + limit
n = 0
while time.monotonic() < deadline:
    n += 1
    try:
        s.sendto(options(port, me, n), ("127.0.0.1", port))
        if s.recv(65535).startswith(b"SIP/2.0 "):
            sys.exit(0)
    except (socket.timeout, ConnectionRefusedError):
        time.sleep(0.05)
sys.exit(1)
PY
}

# ---------------------------------------------------------------------------------------------
# The Switchboard binary: builds it unless $sb_bin is set; sets sb_bin and sb_desc.

switchboard_binary() {
  if [ -z "$sb_bin" ]; then
    need cargo "https://rustup.rs"
    echo "building switchboard (cargo build --release -p switchboard) ..." >&2
    (cd "$root" && timeout 3600 cargo build --release -p switchboard >&2)
    local target_dir
    target_dir=$(cd "$root" && cargo metadata --format-version 1 --no-deps |
      python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
    sb_bin="$target_dir/release/switchboard"
  fi
  [ -x "$sb_bin" ] || { echo "no switchboard binary at $sb_bin" >&2; exit 2; }
  # The source the binary was built from, as it was when the run began.
  sb_desc="$sb_bin (git $(cd "$root" && git rev-parse --short HEAD 2>/dev/null || echo '?')$(cd "$root" &&
    git diff --quiet HEAD -- crates Cargo.toml Cargo.lock 2>/dev/null || echo ', with uncommitted changes in crates/'))"
}

# ---------------------------------------------------------------------------------------------
# Servers. Each start_* sets server_pgid, server_cmd and server_log.

server_pgid=""
server_cmd=""
server_log=""

# CPU pinning (empty: none): a prefix for the server's command (e.g. taskset -c 0) and one
# for the SIPps' and the probes' (taskset -c 1), so that the load generators cannot take
# the server's core (set by a benchmark's --pin).
pin_server=()
pin_sipp=()

# A share of one core for the server (set by a benchmark's --server-cpu PCT): on a 2-core
# machine the load generators run out of CPU before the server does, so a flood measures
# SIPp; with the server held to PCT % of a core in a CPU cgroup (CFS bandwidth, a 2 ms
# period so that a throttle lasts at most a couple of milliseconds), the server is what
# runs out. Needs root and a CPU controller: cgroup v2 (cpu.max) or v1 (cpu.cfs_quota_us).
# Sets server_cgroup and prepends to pin_server the command that enters it; the cgroup is
# removed by server_cpu_release.
server_cgroup=""
server_cpu_share() { # $1 = percent of one core (1-100)
  local pct=$1 period=2000 quota root
  quota=$((period * pct / 100))
  if [ -f /sys/fs/cgroup/cgroup.controllers ] && grep -qw cpu /sys/fs/cgroup/cgroup.controllers; then
    root=/sys/fs/cgroup
    grep -qw cpu "$root/cgroup.subtree_control" || echo +cpu > "$root/cgroup.subtree_control" ||
      { echo "--server-cpu: cannot enable the cpu controller in $root" >&2; exit 2; }
    server_cgroup="$root/sb-bench-$$"
    mkdir "$server_cgroup" && echo "$quota $period" > "$server_cgroup/cpu.max"
  elif [ -f /sys/fs/cgroup/cpu/cpu.cfs_quota_us ]; then
    server_cgroup="/sys/fs/cgroup/cpu/sb-bench-$$"
    mkdir "$server_cgroup" && echo "$period" > "$server_cgroup/cpu.cfs_period_us" &&
      echo "$quota" > "$server_cgroup/cpu.cfs_quota_us"
  else
    echo "--server-cpu: no CPU cgroup controller here (cgroup v2 cpu.max or v1 cpu)" >&2; exit 2
  fi || { echo "--server-cpu: cannot make $server_cgroup (root is needed)" >&2; exit 2; }
  # shellcheck disable=SC2016
  pin_server=(sh -c 'echo $$ > "$1/cgroup.procs" && shift && exec "$@"' sh "$server_cgroup" "${pin_server[@]}")
}
server_cpu_release() {
  [ -n "$server_cgroup" ] && [ -d "$server_cgroup" ] && rmdir "$server_cgroup" 2>/dev/null
  return 0
}

# Starts Switchboard with the config $1/switchboard.toml (written by the caller), listening on
# 127.0.0.1:$2.
start_switchboard() { # $1 = step dir, $2 = port
  local dir=$1 port=$2
  server_log="$dir/server.log"
  # warn for everything on the request path; the server module's lifecycle lines (ready,
  # stopped with its request counters) stay visible.
  server_cmd="RUST_LOG=warn,switchboard::server=info ${pin_server[*]}${pin_server[*]:+ }$sb_bin run --config $dir/switchboard.toml"
  RUST_LOG=warn,switchboard::server=info setsid "${pin_server[@]}" "$sb_bin" run --config "$dir/switchboard.toml" \
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

# Kamailio's shared memory pool in MiB (-m): its transactions and location table live there.
# With 1024 it ran out at 8,000 calls/s ("build_cell(): could not allocate shared memory from
# shm pool", then 500s), well before its CPU did; 4096 leaves it to its CPU.
kamailio_shm=${kamailio_shm:-4096}

report_kamailio() {
  echo "- Kamailio: children=2 (UDP workers), shared memory -m $kamailio_shm MiB (private memory: its default)"
}

# $3...: more options, e.g. -A WITH_PIKE (a define of registrar.cfg).
start_kamailio() { # $1 = step dir, $2 = port
  local dir=$1 port=$2
  shift 2
  server_log="$dir/server.log"
  server_cmd="${pin_server[*]}${pin_server[*]:+ }kamailio -f $here/kamailio/registrar.cfg -l udp:127.0.0.1:$port -DD -E -m $kamailio_shm -x tlsf -w $dir${*:+ $*}"
  setsid "${pin_server[@]}" kamailio -f "$here/kamailio/registrar.cfg" -l "udp:127.0.0.1:$port" \
    -DD -E -m "$kamailio_shm" -x tlsf -w "$dir" "$@" > "$server_log" 2>&1 < /dev/null &
  server_pgid=$!
  check_group
  wait_sip "$port" 15 || { echo "kamailio did not answer on port $port:" >&2; cat "$server_log" >&2; exit 1; }
}

server_pids() { pgrep -g "$server_pgid" || true; }

# The server must lead a process group of its own, or it could not be stopped as a group.
# (setsid execs in place here: a background job of a script without job control is no group
# leader.) $1, $2, $3: another process, its log and its name (default: the server's).
check_group() {
  local pid=${1:-$server_pgid} log=${2:-$server_log} what=${3:-the server} g i
  for ((i = 0; i < 20; i++)); do
    g=$(ps -o pgid= -p "$pid" 2>/dev/null | tr -d ' ' || true)
    [ "$g" = "$pid" ] && return 0
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "$what (pid $pid) exited at once; its log:" >&2
      cat "$log" >&2
      exit 1
    fi
    sleep 0.05
  done
  if [ "$g" != "$pid" ]; then
    echo "$what (pid $pid) is not in a process group of its own; log:" >&2
    cat "$log" >&2
    exit 1
  fi
}

# Peak RSS in MiB: the process's VmHWM; for several processes (Kamailio) "max (sum of N)".
# Shared memory touched by several processes counts in each, so the sum is an upper bound.
# $1: another process group (default: the server's).
server_peak_rss() {
  local p v max=0 sum=0 n=0
  for p in $(pgrep -g "${1:-$server_pgid}" 2>/dev/null || true); do
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

# CPU seconds (user + system) used by the processes of group $1 since they started; with
# $2 = children, their reaped children's too.
group_cpu() {
  local p t=0 hz fields='$12 + $13'
  hz=$(getconf CLK_TCK)
  [ "${2:-}" = children ] && fields='$12 + $13 + $14 + $15'
  for p in $(pgrep -g "$1" 2>/dev/null || true); do
    # Fields 14 and 15 of /proc/PID/stat (utime, stime; 16 and 17: cutime, cstime), counted
    # after the ")" that ends the command name.
    t=$((t + $(sed 's/.*) //' "/proc/$p/stat" 2>/dev/null | awk "{print $fields}" || echo 0)))
  done
  awk -v t="$t" -v hz="$hz" 'BEGIN { printf "%.1f", t / hz }'
}

# CPU seconds (user + system) used by the server's processes since they started.
server_cpu() { group_cpu "$server_pgid"; }

stop_server() {
  [ -n "$server_pgid" ] || return 0
  kill_group "$server_pgid"
  wait "$server_pgid" 2>/dev/null || true
  server_pgid=""
}

# What the server said: Switchboard's own counters from its last line, and how many
# warnings/errors it logged (the first few go to stderr). $1 = kamailio or anything else.
# Prints the note; call after stop_server.
server_log_note() {
  local problems note
  if [ "$1" != kamailio ]; then
    problems=$(grep -cE ' (WARN|ERROR) ' "$server_log" || true)
    grep -E ' (WARN|ERROR) ' "$server_log" | head -n 5 | cut -c1-300 | sed 's/^/    server: /' >&2 || true
    note=$(sed -n 's/^.*switchboard stopped *//p' "$server_log" | tail -n 1)
    echo "${note:-no stop line}; $problems warn/error lines"
  else
    problems=$(grep -cE 'ERROR|CRITICAL|WARNING' "$server_log" || true)
    grep -E 'ERROR|CRITICAL|WARNING' "$server_log" | head -n 5 | cut -c1-300 | sed 's/^/    server: /' >&2 || true
    echo "$problems warning/error lines"
  fi
}

# ---------------------------------------------------------------------------------------------
# Redis: Switchboard with its state kept in a Redis server ([store] redis_url) instead of its
# embedded store. A step starts its own redis-server (Debian's) on a free loopback port with
# a data directory of its own, appending every write to its AOF and fsyncing it before it
# answers (appendonly yes, appendfsync always: what the daemon requires unless told
# otherwise, so a REGISTER's 200 means the binding is on disk), no RDB snapshots. It runs
# in a process group of its own ($redis_pgid), under the server's pinning (it is the
# server's store); stop it with stop_redis after stop_server.

redis_pgid=""
redis_port=""
redis_cmd=""
redis_log=""

# Starts redis-server with its data in $1 (made here); sets redis_pgid, redis_port,
# redis_cmd, redis_log. Exits the script if it does not answer a PING within 10 s.
start_redis() { # $1 = data dir
  local dir=$1 i
  mkdir -p "$dir"
  redis_port=$(free_tcp_port)
  redis_log="$dir/redis.log"
  local cmd=(redis-server --port "$redis_port" --bind 127.0.0.1 --dir "$dir" --save ""
    --appendonly yes --appendfsync always --daemonize no)
  redis_cmd="${pin_server[*]}${pin_server[*]:+ }redis-server --port $redis_port --bind 127.0.0.1 --dir $dir --save \"\" --appendonly yes --appendfsync always --daemonize no"
  setsid "${pin_server[@]}" "${cmd[@]}" > "$redis_log" 2>&1 < /dev/null &
  redis_pgid=$!
  check_group "$redis_pgid" "$redis_log" redis-server
  for ((i = 0; i < 100; i++)); do
    [ "$(redis-cli -h 127.0.0.1 -p "$redis_port" ping 2>/dev/null)" = PONG ] && return 0
    kill -0 "$redis_pgid" 2>/dev/null || break
    sleep 0.1
  done
  echo "redis-server did not answer on 127.0.0.1:$redis_port; its log:" >&2
  tail -n 20 "$redis_log" >&2
  exit 1
}

# The [store] keys of a Switchboard keeping its state in the Redis server of start_redis, one
# per line (node: the benchmark's name for the daemon; the prefix and heartbeat: defaults;
# redis_shards: $REDIS_SHARDS when set, to measure a site laid out for a Redis Cluster on one
# server).
redis_store_keys() {
  printf 'redis_url = "redis://127.0.0.1:%s/"\nnode = "bench"\n' "$redis_port"
  if [ -n "${REDIS_SHARDS:-}" ]; then printf 'redis_shards = %s\n' "$REDIS_SHARDS"; fi
}

# CPU seconds (user + system) of the Redis server since it started, with its children's
# (an AOF rewrite forks one: counted while it runs and, once reaped, in Redis's cutime and
# cstime); its peak RSS in MiB.
redis_cpu() { group_cpu "$redis_pgid" children; }

# The [store] section of a Redis step's config (the first step-*-sb-redis-* of the work
# directory), indented, after a blank line and "$2", unless that config is $1 (the example
# the report printed whole already).
report_redis_store() { # $1 = the config printed already, $2 = the line before it
  local redis_example
  redis_example=$(ls "$work"/step-*-sb-redis-*/switchboard.toml 2>/dev/null | head -n 1 || true)
  if [ -n "$redis_example" ] && [ "$redis_example" != "$1" ]; then
    echo
    echo "$2"
    echo
    sed -n '/^\[store\]/,/^$/p' "$redis_example" | sed '/^$/d; s/^/    /'
  fi
}
redis_peak_rss() { server_peak_rss "$redis_pgid"; }

stop_redis() {
  [ -n "$redis_pgid" ] || return 0
  kill_group "$redis_pgid"
  wait "$redis_pgid" 2>/dev/null || true
  redis_pgid=""
}

# What the Redis server logged: its AOF rewrites (a forked child rewriting the file while
# the writes go on) and its warnings (level "#") other than its start, its stop and the
# machine's memory overcommit setting (which matters to forks under memory pressure only),
# the first few to stderr. Prints the note; call after stop_redis.
redis_log_note() {
  local rewrites problems
  rewrites=$(grep -c 'Background append only file rewriting started' "$redis_log" 2>/dev/null || true)
  problems=$(redis_warnings | wc -l)
  redis_warnings | head -n 3 | cut -c1-300 | sed 's/^/    redis: /' >&2 || true
  echo "redis: ${rewrites:-0} AOF rewrites, $problems warnings"
}
redis_warnings() {
  grep ' # ' "$redis_log" 2>/dev/null | grep -vE '# (oO0OoO0OoO0Oo Redis is starting|Redis version=|Configuration loaded|Server initialized|WARNING Memory overcommit|User requested shutdown|Redis is now ready to exit)' || true
}

report_redis() {
  echo "- Redis: $(redis-server --version | sed 's/ sha=.*//'), a fresh server (empty data directory) for"
  echo "  every step of a Redis subject: appendonly yes, appendfsync always (a write is fsynced before"
  echo "  it is answered), no RDB snapshots, its other settings Redis's defaults (AOF rewrites included)"
}

# The filesystem the work directory is on: Switchboard's state directory and Redis's data
# (both fsync every acknowledged write, so the disk below decides much).
report_work_fs() {
  echo "- Work directory (Switchboard's state, Redis's data): $(df -PT "$work" 2>/dev/null | awk 'NR == 2 { print $2 " on " $1 }')"
}

# ---------------------------------------------------------------------------------------------
# Switchboard's config, and the registrations' inputs (bench/register-load.sh,
# bench/two-nodes.sh): users u0..u(N-1) with password pw-<n>, digest MD5.

# Sets keys in the Switchboard config $1: $2... each SECTION.KEY=VALUE with VALUE as written
# in TOML (limits.shed_after_ms=200, sip.realm="x"); one for a key the config already has
# replaces it, one for a section it lacks adds the section at the end.
config_set() { # $1 = config file, $2... = settings
  [ $# -gt 1 ] || return 0
  python3 - "$@" <<'PY'
import re, sys
path, settings = sys.argv[1], sys.argv[2:]
order, sections, current = [None], {None: []}, None
for line in open(path).read().splitlines():
    m = re.match(r"^\[([A-Za-z0-9_.-]+)\]\s*$", line)
    if m:
        current = m.group(1)
        order.append(current)
        sections[current] = [line]
    else:
        sections[current].append(line)
for setting in settings:
    m = re.match(r"^([A-Za-z0-9_.-]+)\.([A-Za-z0-9_-]+)=(.+)$", setting)
    if not m:
        sys.exit(f"not SECTION.KEY=VALUE: {setting}")
    section, key, value = m.groups()
    if section not in sections:
        order.append(section)
        sections[section] = ["", f"[{section}]"]
    lines = sections[section]
    line = f"{key} = {value}"
    for i, l in enumerate(lines):
        if re.match(rf"^{re.escape(key)}\s*=", l):
            lines[i] = line
            break
    else:
        # After the section's last non-empty line.
        at = len(lines)
        while at > 1 and not lines[at - 1].strip():
            at -= 1
        lines.insert(at, line)
with open(path, "w") as f:
    for name in order:
        if sections[name]:
            f.write("\n".join(sections[name]) + "\n")
PY
}

# The policy of users u0..u($1-1): the one place that knows the policy format for them.
write_policy() { # $1 = number of users, $2 = file
  awk -v n="$1" 'BEGIN {
    for (i = 0; i < n; i++) {
      printf "[users.u%d]\nextension = \"%d\"\ndisplay_name = \"User %d\"\n", i, 1000 + i, i
      printf "[users.u%d.sip]\npassword = \"pw-%d\"\nalgorithms = [\"md5\"]\n\n", i, i
    }
  }' > "$2"
}

# SIPp's injection file (-inf, SEQUENTIAL): field0 the user, field1 the password; $1 users
# from u$3 on (default u0).
write_users_csv() { # $1 = number of users, $2 = file, $3 = the first user's number
  awk -v n="$1" -v first="${3:-0}" 'BEGIN { print "SEQUENTIAL"; for (i = first; i < first + n; i++) printf "u%d;pw-%d\n", i, i }' > "$2"
}

# Switchboard's config for registrations: $1/switchboard.toml listening on 127.0.0.1:$2,
# digest auth required or not ($3), state in $1/state, the policy $work/policy.toml, no API.
# $4 = redis: the state in the Redis server of start_redis (its [store] keys). $5...: more
# settings, as config_set takes them.
write_register_config() { # $1 = dir, $2 = port, $3 = auth required (true|false), $4 = store, $5... = settings
  local dir=$1 port=$2 store_keys=""
  # A newline, then the keys (none: the config is the embedded store's as it always was).
  [ "${4:-}" = redis ] && store_keys=$'\n'$(redis_store_keys)
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
state_dir = "$dir/state"$store_keys

[policy]
path = "$work/policy.toml"

[api]
listen = ""
EOF
  [ $# -gt 4 ] || return 0
  shift 4
  config_set "$dir/switchboard.toml" "$@"
}

# ---------------------------------------------------------------------------------------------
# Calls (bench/call-load.sh, bench/overload.sh; bench/instructions.sh takes the config): the
# caller "caller" calls the callee "callee" (sip:callee@switchboard.local), whose contact is
# an answering SIPp registered from its own port.

# The policy ($work/policy.toml: the one place that knows the policy format) and the
# registering SIPp's injection file ($work/callee.csv).
write_call_inputs() {
  cat > "$work/policy.toml" <<'EOF'
# The benchmark's caller and callee.
[users.caller]
extension = "1000"
display_name = "Caller"

[users.caller.sip]
password = "caller-secret"
algorithms = ["md5"]

[users.callee]
extension = "2000"
display_name = "Callee"
ring_time = 30
no_answer = "hangup"

[users.callee.sip]
password = "callee-secret"
algorithms = ["md5"]
EOF
  printf 'SEQUENTIAL\ncallee\n' > "$work/callee.csv"
}

# Switchboard's config for calls: $1/switchboard.toml listening on 127.0.0.1:$2, no auth
# (the caller is identified by its From user), state in $1/state, the policy
# $work/policy.toml, no API. $3...: more settings, each SECTION.KEY=VALUE with VALUE as
# written in TOML (limits.shed_after_ms=200, sip.realm="x"); one for a key the config
# already has replaces it.
write_call_config() { # $1 = dir, $2 = port, $3... = settings
  local dir=$1 port=$2
  shift 2
  cat > "$dir/switchboard.toml" <<EOF
[sip]
listen = ["udp:127.0.0.1:$port"]
realm = "switchboard.local"
domains = ["switchboard.local"]

[auth]
# The caller is identified by its From user.
required = false

[store]
state_dir = "$dir/state"

[policy]
path = "$work/policy.toml"

[api]
listen = ""
EOF
  config_set "$dir/switchboard.toml" "$@"
}

# Registers the callee's contact sip:callee@127.0.0.1:$3 with the server on 127.0.0.1:$2
# (bench/sipp/register.xml, sent from port $3, before the answering SIPp takes it); SIPp
# runs in $1. Sets reg_failed (empty when it worked).
register_contact() { # $1 = dir, $2 = server port, $3 = contact port
  local dir=$1 port=$2 cport=$3
  mkdir -p "$dir"
  local reg=(sipp "127.0.0.1:$port" -sf "$here/sipp/register.xml" -inf "$work/callee.csv"
    -i 127.0.0.1 -p "$cport" -m 1 -buff_size 4194304 -recv_timeout 5000
    -timeout 10s -timeout_error -nostdin -trace_err -trace_msg)
  commands+=("  ${reg[*]}")
  reg_failed=""
  run_sipp "$dir" 30 "${reg[@]}"
  if [ "$sipp_rc" != 0 ]; then
    reg_failed="registration of contact 127.0.0.1:$cport failed (SIPp exit $sipp_rc)"
    echo "  $reg_failed; SIPp's messages:" >&2
    grep -E '^(SIP/2.0 |REGISTER )' "$dir"/*_messages.log 2>/dev/null | head -n 5 | sed 's/^/    /' >&2 || true
  fi
}

# Starts an answering SIPp in $1 on 127.0.0.1:$2 with scenario $3 (bench/sipp/...), ringing
# $4 ms, for at most $5 calls and $6 seconds (SIPp's -timeout; `timeout` stops it 20 s
# later); its group goes to uas_pgids. Stop it with kill_group (SIGTERM makes SIPp write its
# final statistics). Exits the script if it does not bind its port.
uas_pgids=()
start_answering() { # $1 = dir, $2 = port, $3 = scenario file, $4 = ring ms, $5 = calls, $6 = seconds
  local dir=$1 port=$2
  mkdir -p "$dir"
  local uas=(sipp -sf "$here/sipp/$3" -i 127.0.0.1 -p "$port" -m "$5" -key ring_ms "$4"
    -buff_size 4194304 -timeout "$6s" -max_recv_loops 10000 -max_sched_loops 10000
    -nostdin -trace_screen -trace_err -trace_error_codes -max_log_size 20000000 -trace_stat -fd 3600)
  commands+=("  ${uas[*]}")
  (
    cd "$dir"
    exec timeout -k 5 $(($6 + 20)) "${pin_sipp[@]}" "${uas[@]}" > "$dir/sipp.out" 2>&1 < /dev/null
  ) &
  uas_pgids+=($!)
  if ! wait_bound "$port" "${uas_pgids[-1]}"; then
    echo "  the answering SIPp on port $port did not start:" >&2
    tail -n 5 "$dir/sipp.out" >&2
    exit 1
  fi
}

# ---------------------------------------------------------------------------------------------
# Report pieces.

# SIPp may keep this many calls open: below `ulimit -n` (raised to the hard limit first), at
# most 50,000. Sets sipp_limit.
sipp_call_limit() {
  local nofile hard
  hard=$(ulimit -Hn)
  [ "$hard" = unlimited ] && hard=65536
  [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt "$hard" ] && { ulimit -n "$hard" 2>/dev/null || true; }
  nofile=$(ulimit -n)
  [ "$nofile" = unlimited ] && nofile=65536
  sipp_limit=$((nofile - 256))
  [ "$sipp_limit" -gt 50000 ] && sipp_limit=50000
  [ "$sipp_limit" -gt 100 ] || { echo "ulimit -n ($nofile) is too low" >&2; exit 2; }
}

# GNU time, when there, reports SIPp's own CPU use: sets sipp_timer (an array) for file $1.
sipp_timer_for() {
  sipp_timer=()
  if /usr/bin/time -f '%U' -o /dev/null true 2>/dev/null; then
    sipp_timer=(/usr/bin/time -f '%U %S %M' -o "$1")
  fi
}

# The machine lines of a report.
report_machine() {
  local cpu_model
  cpu_model=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
  echo "- Machine: $(nproc) cores, $cpu_model, $(awk '/^MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo); $(uname -sr)"
}

# $1 = sipp: SIPp's alone (a benchmark without Kamailio); otherwise Kamailio's too, when installed.
report_versions() {
  echo "- SIPp: $(sipp -v 2>&1 | grep -o 'SIPp v[0-9.]*' | head -n 1)$([ "${1:-}" != sipp ] && command -v kamailio >/dev/null && echo ", $(kamailio -v 2>/dev/null | head -n 1 | sed 's/^version: //')")"
}
