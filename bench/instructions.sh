#!/usr/bin/env bash
# INSTRUCTIONS per call: the CPU work Switchboard does for one call, counted by callgrind
# (valgrind --tool=callgrind) as instructions executed, not timed. The count does not depend
# on what else runs on the machine, so two builds can be compared to a fraction of a percent
# on a busy machine where timings cannot; it does depend on the CPU model (libraries choose
# their SIMD code by the CPU's features), which the report names. One part does depend on
# timing: the store writer's commits (about half of a call's count at 50 calls/s), whose
# number is how the writes happen to group; compare the core thread's own count
# (`tokio::runtime::runtime::Runtime::block_on` in the inclusive table) when the totals of
# two runs of one build differ by a percent or two.
#
# A benchmark, not a test: it prints the machine, the date, the exact commands it ran and
# Markdown tables (instructions per call for each build, then the functions that cost the
# most per call) on stdout; progress goes to stderr. Nothing is asserted.
#
#   bench/instructions.sh [--calls 2000] [--warmup 200] [--rate 50] [--hold 0] [--settle 40]
#                         [--top 15] [--base REV [--base-target DIR]] [--switchboard BIN]
#                         [--keep] [--out FILE]
#
#   --calls        calls counted: the difference between the two runs below (default 2000)
#   --warmup       calls of the shorter run (default 200)
#   --rate         calls/s SIPp offers (default 50: under callgrind the server runs some 50
#                  times slower, and no message may be retransmitted, or the count would
#                  include the retransmissions)
#   --hold         milliseconds between the ACK and the BYE of every call (default 0)
#   --settle       seconds between the last call and the stop (default 40)
#   --top          rows of each function table (default 15)
#   --base REV     also measure the git revision REV (a commit, a branch, a tag): it is
#                  checked out in a temporary worktree under /tmp (removed at the end) and
#                  built there, and both builds are measured, REV first, in one table
#   --base-target  keep REV's build in DIR/<commit> for the next run (default: a target
#                  directory in the temporary worktree, removed with it); never the work
#                  tree's own target directory
#   --switchboard  measure this binary instead of building the work tree's
#   --keep         keep the work directory (callgrind outputs, logs, SIPp traces) and print
#                  its path
#   --out FILE     also write the report to FILE
#
# How a build is measured: the server runs under callgrind on a free loopback UDP port with
# an empty state directory; the callee's contact is registered (bench/sipp/register.xml), an
# answering SIPp (bench/sipp/call_uas.xml: 180 and 200 at once) takes that contact's port and
# one calling SIPp (bench/sipp/call_uac.xml: INVITE, 100, 180, 200, ACK, hold, BYE, 200, by
# the Record-Route set) places the calls; then the server is stopped with SIGTERM and
# callgrind writes its counts. This is done twice, with --warmup calls and with --warmup +
# --calls calls: the difference, divided by --calls, is the cost of a call, without the
# start, the registration and the stop, which both runs share. Everything the server does
# while the calls run counts, its housekeeping timers included (the longer run lasts
# --calls / --rate seconds more); transactions still waiting for their timers (32 s) when
# it stops are dropped, in both runs alike.
#
# The function tables come from callgrind_annotate's per-function counts of both runs, also
# taken as a difference per call: "inclusive" counts a function with everything it calls,
# "self" only its own instructions (inlined code counts where it was inlined).
#
# Needs: valgrind (callgrind, callgrind_annotate), sipp (Debian: sip-tester), python3,
# cargo (unless --switchboard), git (for --base). Switchboard is built with
# `cargo build --release -p switchboard` (the release profile keeps line tables for the
# function names) into the workspace's target directory (CARGO_TARGET_DIR if set).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
# shellcheck source=bench/lib.sh
. "$here/lib.sh"

calls=2000
warmup=200
rate=50
hold=0
settle=40
top=15
base=""
base_target=""
sb_bin=""
keep=0
out=""
while [ $# -gt 0 ]; do
  case "$1" in
    --calls) calls="$2"; shift ;;
    --warmup) warmup="$2"; shift ;;
    --rate) rate="$2"; shift ;;
    --hold) hold="$2"; shift ;;
    --settle) settle="$2"; shift ;;
    --top) top="$2"; shift ;;
    --base) base="$2"; shift ;;
    --base-target) base_target="$2"; shift ;;
    --switchboard) sb_bin="$2"; shift ;;
    --keep) keep=1 ;;
    --out) out="$2"; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown option: $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
for v in "$calls" "$warmup" "$rate" "$top"; do
  [[ "$v" =~ ^[1-9][0-9]*$ ]] || { echo "not a positive integer: $v" >&2; exit 2; }
done
for v in "$hold" "$settle"; do
  [[ "$v" =~ ^[0-9]+$ ]] || { echo "not a non-negative integer: $v" >&2; exit 2; }
done

need valgrind "apt-get install valgrind"
need callgrind_annotate "apt-get install valgrind"
need sipp "apt-get install sip-tester"
need python3 "apt-get install python3"
need timeout "coreutils"
need setsid "util-linux"
need ss "apt-get install iproute2"
[ -z "$base" ] || need git "apt-get install git"

# ---------------------------------------------------------------------------------------------
# Processes (bench/lib.sh): the server's group and one group per SIPp, all killed on exit;
# the base revision's worktree, removed on exit.
work=$(mktemp -d "${TMPDIR:-/tmp}/sb-instructions.XXXXXX")
sipp_pgid=""
uas_pgid=""
base_tree=""

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  [ -n "$sipp_pgid" ] && kill_group "$sipp_pgid"
  [ -n "$uas_pgid" ] && kill_group "$uas_pgid"
  [ -n "$server_pgid" ] && kill_group "$server_pgid"
  wait 2>/dev/null || true
  if [ -n "$base_tree" ]; then
    git -C "$root" worktree remove --force "$base_tree" 2>/dev/null || rm -rf "$base_tree"
    git -C "$root" worktree prune 2>/dev/null || true
  fi
  leave_work "$rc"
}
on_exit cleanup



# ---------------------------------------------------------------------------------------------
# The builds: label and binary of each, the base revision first.

labels=()
bins=()
descs=()

if [ -n "$base" ]; then
  need cargo "https://rustup.rs"
  base_rev=$(git -C "$root" rev-parse --verify "$base^{commit}") ||
    { echo "no such revision: $base" >&2; exit 2; }
  base_tree=$(mktemp -d "${TMPDIR:-/tmp}/sb-instructions-base.XXXXXX")
  rmdir "$base_tree"
  git -C "$root" worktree add --detach "$base_tree" "$base_rev" >&2
  # A target directory of its own: cargo names a workspace's crates by their place in the
  # workspace, so the same crates of two revisions would share (and overwrite) artifacts.
  # With --base-target, one directory per revision inside it, for the same reason.
  target_dir=$base_tree/target
  [ -z "$base_target" ] || target_dir="$base_target/${base_rev:0:12}"
  echo "building the base revision $base (${base_rev:0:10}) in $base_tree into $target_dir ..." >&2
  (cd "$base_tree" && CARGO_TARGET_DIR="$target_dir" timeout 3600 cargo build --release -p switchboard >&2)
  cp "$target_dir/release/switchboard" "$work/switchboard-base"
  labels+=("base $base (${base_rev:0:10})")
  bins+=("$work/switchboard-base")
  descs+=("$base ($(git -C "$root" log -1 --format='%h %s' "$base_rev" | cut -c1-100))")
fi

switchboard_binary
if [ -z "$base" ]; then
  labels+=("$(cd "$root" && git rev-parse --short HEAD 2>/dev/null || echo build)")
else
  labels+=("head $(cd "$root" && git rev-parse --short HEAD 2>/dev/null || echo build)")
fi
cp "$sb_bin" "$work/switchboard-head"
bins+=("$work/switchboard-head")
descs+=("$sb_desc")

# ---------------------------------------------------------------------------------------------
# Inputs: the policy and the registering SIPp's injection file (the server's config: bench/lib.sh).

cat > "$work/policy.toml" <<'EOF'
# bench/instructions.sh: the caller and the callee of every call.
[users.caller]
extension = "1000"
display_name = "Caller"

[users.callee]
extension = "2000"
display_name = "Callee"
ring_time = 30
no_answer = "hangup"
EOF
printf 'SEQUENTIAL\ncallee\n' > "$work/callee.csv"

# The server under callgrind: start_switchboard (bench/lib.sh) runs $sb_bin, here a script
# that runs the build under valgrind, its counts to $CALLGRIND_OUT.
write_wrapper() { # $1 = wrapper, $2 = the build's binary
  cat > "$1" <<EOF
#!/bin/sh
exec valgrind --tool=callgrind --callgrind-out-file="\$CALLGRIND_OUT" "$2" "\$@"
EOF
  chmod +x "$1"
}

# ---------------------------------------------------------------------------------------------
# One run: a fresh server under callgrind, the registration, $3 calls, the stop.

sipp_call_limit
commands=()
run_no=0

# Sets run_ir (the program's total instructions), run_ok, run_failed, run_retrans and
# run_annotate (callgrind_annotate's inclusive and self tables, two files).
measure_run() { # $1 = build index, $2 = calls
  local b=$1 n=$2
  run_no=$((run_no + 1))
  local dir="$work/run-$run_no-build$b-$n"
  mkdir -p "$dir"
  local port uas_port uac_port
  port=$(free_udp_port)
  uas_port=$(free_udp_port)
  while [ "$uas_port" = "$port" ]; do uas_port=$(free_udp_port); done
  uac_port=$(free_udp_port)
  while [ "$uac_port" = "$port" ] || [ "$uac_port" = "$uas_port" ]; do uac_port=$(free_udp_port); done

  write_call_config "$dir" "$port"
  write_wrapper "$dir/switchboard-callgrind" "${bins[$b]}"
  export CALLGRIND_OUT="$dir/callgrind.out"
  sb_bin="$dir/switchboard-callgrind"
  echo "  ${labels[$b]}: $n calls, server under callgrind on 127.0.0.1:$port" >&2
  start_switchboard "$dir" "$port"
  commands+=("run $run_no (${labels[$b]}, $n calls):")
  commands+=("  valgrind --tool=callgrind --callgrind-out-file=$dir/callgrind.out ${bins[$b]} run --config $dir/switchboard.toml")

  # The callee's contact, registered from the answering SIPp's port before it takes it.
  local rdir="$dir/register"
  mkdir -p "$rdir"
  local reg=(sipp "127.0.0.1:$port" -sf "$here/sipp/register.xml" -inf "$work/callee.csv"
    -i 127.0.0.1 -p "$uas_port" -m 1 -recv_timeout 20000 -timeout 60s -timeout_error
    -nostdin -trace_err)
  commands+=("  ${reg[*]}")
  run_sipp "$rdir" 90 "${reg[@]}"
  if [ "$sipp_rc" != 0 ]; then
    echo "  the registration failed (SIPp exit $sipp_rc):" >&2
    tail -n 5 "$rdir/sipp.out" >&2
    exit 1
  fi

  # Generous timeouts: the server is slow under callgrind; a retransmission shows in the
  # report rather than failing the run.
  local global=$((n / rate * 3 + 120 + n * hold / 1000))
  local udir="$dir/uas"
  mkdir -p "$udir"
  local uas=(sipp -sf "$here/sipp/call_uas.xml" -i 127.0.0.1 -p "$uas_port" -m $((n + 1000))
    -key ring_ms 0 -timeout "$((global + 20))s" -nostdin -trace_err -trace_stat -fd 3600)
  commands+=("  ${uas[*]}")
  (
    cd "$udir"
    exec timeout -k 5 $((global + 40)) "${uas[@]}" > "$udir/sipp.out" 2>&1 < /dev/null
  ) &
  uas_pgid=$!
  if ! wait_bound "$uas_port" "$uas_pgid"; then
    echo "  the answering SIPp on port $uas_port did not start:" >&2
    tail -n 5 "$udir/sipp.out" >&2
    exit 1
  fi

  local cdir="$dir/uac"
  mkdir -p "$cdir"
  local cmd=(sipp "127.0.0.1:$port" -sf "$here/sipp/call_uac.xml" -s callee
    -i 127.0.0.1 -p "$uac_port" -m "$n" -r "$rate" -l "$sipp_limit" -d "$hold"
    -recv_timeout 20000 -timeout "${global}s" -timeout_error
    -nostdin -trace_err -trace_stat -fd 3600)
  commands+=("  ${cmd[*]}")
  run_sipp "$cdir" $((global + 20)) "${cmd[@]}"
  local rc=$sipp_rc
  # The last BYE's 200 has left the server; a moment for SIPp's last datagram to arrive.
  sleep 0.5
  kill_group "$uas_pgid"
  wait "$uas_pgid" 2>/dev/null || true
  uas_pgid=""

  # The calls' transactions end; then SIGTERM, and time for callgrind to write its counts
  # (kill_group would send SIGKILL after 5 s).
  sleep "$settle"
  if ! kill -0 "$server_pgid" 2>/dev/null; then
    echo "  the server exited during the run; its log:" >&2
    tail -n 20 "$server_log" >&2
    exit 1
  fi
  kill -TERM -- "-$server_pgid" 2>/dev/null || true
  local i
  for ((i = 0; i < 600; i++)); do
    group_alive "$server_pgid" || break
    sleep 0.1
  done
  # (kill_group would end this script if the group were gone already.)
  if group_alive "$server_pgid"; then
    stop_server
  else
    wait "$server_pgid" 2>/dev/null || true
    server_pgid=""
  fi
  [ -s "$dir/callgrind.out" ] || { echo "  no callgrind output; server log:" >&2; tail -n 20 "$server_log" >&2; exit 1; }

  read -r run_ok run_failed run_retrans < <(python3 - "$cdir" <<'PY'
import csv, glob, sys
files = glob.glob(f"{sys.argv[1]}/*_.csv")
row = {}
if files:
    with open(files[0], newline="") as f:
        rows = list(csv.reader(f, delimiter=";"))
    if len(rows) >= 2:
        row = dict(zip(rows[0], rows[-1]))
get = lambda k: int(row.get(k, "0") or 0)
print(get("SuccessfulCall(C)"), get("FailedCall(C)"), get("Retransmissions(C)"))
PY
)
  run_ir=$(sed -n 's/^summary: *//p; s/^totals: *//p' "$dir/callgrind.out" | head -n 1 | awk '{print $1}')
  callgrind_annotate --inclusive=yes --auto=no --threshold=100 "$dir/callgrind.out" > "$dir/inclusive.txt" 2>/dev/null || true
  callgrind_annotate --inclusive=no --auto=no --threshold=100 "$dir/callgrind.out" > "$dir/self.txt" 2>/dev/null || true
  run_annotate="$dir/inclusive.txt $dir/self.txt"
  echo "    ok $run_ok, failed $run_failed, retransmissions $run_retrans (SIPp exit $rc), $run_ir instructions" >&2
  if [ "$run_ok" != "$n" ]; then
    echo "  warning: $run_ok of $n calls succeeded: this run's count is not comparable" >&2
  fi
}

# ---------------------------------------------------------------------------------------------

started=$(date -u '+%Y-%m-%d %H:%M:%S UTC')
t_start=$(date +%s)
results=()
annotations=()
for b in "${!bins[@]}"; do
  echo "== ${labels[$b]}" >&2
  measure_run "$b" "$warmup"
  ir_a=$run_ir; ok_a=$run_ok; fail_a=$run_failed; re_a=$run_retrans; ann_a=$run_annotate
  measure_run "$b" $((warmup + calls))
  ir_b=$run_ir; ok_b=$run_ok; fail_b=$run_failed; re_b=$run_retrans; ann_b=$run_annotate
  results+=("${labels[$b]}	$ir_a	$ir_b	$ok_a	$ok_b	$((fail_a + fail_b))	$((re_a + re_b))")
  annotations+=("${labels[$b]}	$ann_a	$ann_b")
done
duration=$(($(date +%s) - t_start))

report() {
  echo "# Instructions per call (callgrind)"
  echo
  echo "- Date: $started (the runs took $((duration / 60)) min $((duration % 60)) s)"
  report_machine
  echo "- CPU flags of note:$(grep -m1 -o -w -E 'avx2|avx512bw|sse4_2|bmi2' /proc/cpuinfo | sort -u | tr '\n' ' ' | sed 's/^/ /; s/ $//')"
  echo "- $(valgrind --version), $(sipp -v 2>&1 | grep -o 'SIPp v[0-9.]*' | head -n 1)"
  local i
  for i in "${!labels[@]}"; do echo "- ${labels[$i]}: ${descs[$i]}"; done
  echo "- Calls: $warmup in the short run, $((warmup + calls)) in the long one, $rate calls/s, hold $hold ms,"
  echo "  the server stopped $settle s after the last call;"
  echo "  instructions per call = (long run - short run) / $calls"
  echo
  python3 - "$calls" "$top" "${results[@]}" -- "${annotations[@]}" <<'PY'
import re, sys
calls, top = int(sys.argv[1]), int(sys.argv[2])
args = sys.argv[3:]
sep = args.index("--")
results = [r.split("\t") for r in args[:sep]]
annotations = [a.split("\t") for a in args[sep + 1:]]

rows = []
for label, ir_a, ir_b, ok_a, ok_b, failed, retrans in results:
    per = (int(ir_b) - int(ir_a)) / calls
    rows.append((label, per, ir_a, ir_b, ok_a, ok_b, failed, retrans))
print("| build | instructions/call | vs first | short run Ir (calls ok) | long run Ir (calls ok) | failed calls | retransmissions |")
print("|---|---:|---:|---:|---:|---:|---:|")
first = rows[0][1]
for label, per, ir_a, ir_b, ok_a, ok_b, failed, retrans in rows:
    rel = "-" if per is first else f"{100 * (per - first) / first:+.1f} %"
    print(f"| {label} | {per:,.0f} | {rel} | {int(ir_a):,} ({ok_a}) | {int(ir_b):,} ({ok_b}) | {failed} | {retrans} |")
print()
if any(r[6] != "0" or r[7] != "0" for r in rows):
    print("Failed calls or retransmissions: the counts include that extra work (try a lower --rate).")
    print()

line = re.compile(r"^\s*([\d,]+)\s+(?:\([\s\d.]+%\)\s+)?(\S.*?)(?:\s+\[[^\]]*\])?\s*$")

def table(path):
    """callgrind_annotate's function table: {function: {file: count}}."""
    out = {}
    started = False
    with open(path, errors="replace") as f:
        for l in f:
            if "file:function" in l:
                started = True
                continue
            if not started or l.startswith("-") or not l.strip():
                continue
            m = line.match(l)
            if not m:
                continue
            file, _, fn = m.group(2).partition(":")
            fn = re.sub(r"::h[0-9a-f]{16}$", "", fn)
            files = out.setdefault(fn, {})
            files[file] = files.get(file, 0) + int(m.group(1).replace(",", ""))
    return out

def where(files):
    # The file most of it was counted in: the crate's or library's own path from src/ on.
    file = max(files.items(), key=lambda kv: kv[1])[0]
    file = re.sub(r"^.*/registry/src/[^/]+/", "", file)
    file = re.sub(r"^/rustc/[0-9a-f]+/library/", "std ", file)
    file = re.sub(r"^.*/(crates/)", r"\1", file)
    return file

for label, ann_a, ann_b in annotations:
    inc_a, self_a = ann_a.split()
    inc_b, self_b = ann_b.split()
    total = next(r[1] for r in rows if r[0] == label)
    for kind, a, b in (("inclusive", inc_a, inc_b), ("self", self_a, self_b)):
        ta, tb = table(a), table(b)
        diff = []
        for fn, files in tb.items():
            before = sum(ta.get(fn, {}).values())
            per = (sum(files.values()) - before) / calls
            # A function's inclusive count is not additive across the files it was counted
            # in (inlined parts): take the largest one then.
            if kind == "inclusive":
                per = (max(files.values()) - max(ta.get(fn, {"": 0}).values())) / calls
            diff.append((per, fn, files))
        diff.sort(key=lambda d: -d[0])
        if kind == "inclusive":
            # What everything passes through (main, the runtime, the server's loop) says
            # nothing: functions over 90 % of a call are left out.
            diff = [d for d in diff if d[0] <= 0.9 * total]
        print(f"Top {top} functions per call, {kind}, {label}" +
              (" (those over 90 % of a call left out):" if kind == "inclusive" else ":"))
        print()
        print("| instructions/call | % of a call | function | file |")
        print("|---:|---:|---|---|")
        for per, fn, files in diff[:top]:
            name = fn if len(fn) <= 120 else fn[:117] + "..."
            print(f"| {per:,.0f} | {100 * per / total:.1f} | `{name.replace('|', '/')}` | {where(files)} |")
        print()
PY
  echo "Commands (per run):"
  echo
  local c
  for c in "${commands[@]}"; do echo "    $c"; done
}

if [ -n "$out" ]; then report | tee "$out"; else report; fi
