"""Reading SIPp's files in a run directory, for the benchmarks' reports (bench/call-load.sh,
bench/overload.sh import it; run with this directory on sys.path).

A SIPp run in directory d (started there, with -trace_stat, -trace_error_codes, -trace_rtt,
-trace_counts) leaves d/*_.csv (its statistics, one row per -fd interval and a last one at the
end), d/*_error_codes.csv, d/*_rtt.csv and d/*_counts.csv (messages per scenario step).
"""

import collections
import csv
import glob


def stat_rows(d):
    """Every row of SIPp's statistics file (dicts by column name), oldest first."""
    files = glob.glob(f"{d}/*_.csv")
    if not files:
        return []
    with open(files[0], newline="") as f:
        rows = list(csv.reader(f, delimiter=";"))
    if len(rows) < 2:
        return []
    return [dict(zip(rows[0], r)) for r in rows[1:]]


def last_row(d):
    """SIPp's final statistics ({} when there are none)."""
    rows = stat_rows(d)
    return rows[-1] if rows else {}


def num(s, key):
    try:
        return int(s.get(key, "0") or 0)
    except ValueError:
        return 0


def message_counts(d):
    """SIPp's final count of each scenario step's messages (-trace_counts): a dict by column,
    e.g. "4_200_Recv" (step 4, a 200 received), "0_INVITE_Retrans"; {} when there are none."""
    files = glob.glob(f"{d}/*_counts.csv")
    if not files:
        return {}
    with open(files[0], newline="") as f:
        rows = [r for r in csv.reader(f, delimiter=";") if r]
    if len(rows) < 2:
        return {}
    out = {}
    for k, v in zip(rows[0], rows[-1]):
        try:
            out[k] = int(v)
        except ValueError:
            pass
    return out


def epoch(s, key="CurrentTime"):
    """A time column of the statistics file ("date<TAB>time<TAB>epoch") in seconds since the
    epoch; None when it cannot be read."""
    try:
        return float(s.get(key, "").split()[-1])
    except (IndexError, ValueError):
        return None


def error_codes(d):
    """The unexpected responses SIPp got: a Counter by status code."""
    codes = collections.Counter()
    for f in glob.glob(f"{d}/*_error_codes.csv"):
        with open(f) as fh:
            for line in fh:
                parts = line.rstrip("\n").split(";")
                if len(parts) >= 3:
                    codes.update(c for c in parts[2].split(",") if c)
    return codes


def codes_text(codes):
    return ", ".join(f"{c} x{k}" for c, k in sorted(codes.items()))


CAUSES = [("FailedUnexpectedMessage(C)", "unexpected"),
          ("FailedMaxUDPRetrans(C)", "max-retrans"),
          ("FailedTimeoutOnRecv(C)", "recv-timeout"),
          ("FailedCallRejected(C)", "rejected"),
          ("FailedCmdNotSent(C)", "not-sent"),
          ("FailedRegexpHdrNotFound(C)", "header-missing"),
          ("FailedOutboundCongestion(C)", "congestion"),
          ("FailedTimeoutOnSend(C)", "send-timeout")]


def causes_of(s, d):
    """Why calls failed: SIPp's failure counters and the unexpected responses, as words."""
    out = []
    for key, word in CAUSES:
        if num(s, key):
            out.append(f"{word} {num(s, key)}")
    codes = codes_text(error_codes(d))
    if codes:
        out.append(f"responses {codes}")
    return out


def response_times(d):
    """SIPp's response times (-trace_rtt): {rtd number: [(at ms since SIPp started, ms)]}.
    SIPp writes them every -rtt_freq measurements: the last few of a run are missing."""
    rts = collections.defaultdict(list)
    for f in glob.glob(f"{d}/*_rtt.csv"):
        with open(f) as fh:
            for line in fh:
                parts = line.strip().split(";")
                if len(parts) >= 3:
                    try:
                        rts[parts[2]].append((float(parts[0]), float(parts[1])))
                    except ValueError:
                        pass
    return rts


def pcts(v):
    """p50 / p99 / max of the values v, as text."""
    v = sorted(v)
    if not v:
        return "-"
    pct = lambda p: v[min(len(v) - 1, int(p / 100 * len(v)))]
    return f"{pct(50):.0f} / {pct(99):.0f} / {v[-1]:.0f}"


def probe_log(path):
    """bench/probe.py's log: ({n: sent epoch}, {n: (first answer's epoch, status)})."""
    sent, answer = {}, {}
    with open(path) as f:
        for line in f:
            p = line.split()
            try:
                if p[0] == "S" and len(p) == 3:
                    sent[int(p[1])] = float(p[2])
                elif p[0] == "R" and len(p) == 4:
                    answer.setdefault(int(p[1]), (float(p[2]), int(p[3])))
            except (ValueError, IndexError):
                pass  # a line being written
    return sent, answer


def probe_summary(path):
    """What bench/probe.py's log says: probes sent, answered, and their answer times in ms
    (p50 / p99 / max, to 0.01 ms)."""
    sent, answer = probe_log(path)
    if not sent:
        return "-"
    lat = sorted((answer[n][0] - t) * 1000 for n, t in sent.items() if n in answer)
    text = f"{len(sent)} sent, {len(lat)} answered"
    if lat:
        pct = lambda p: lat[min(len(lat) - 1, int(p / 100 * len(lat)))]
        text += f", ms {pct(50):.2f} / {pct(99):.2f} / {lat[-1]:.2f}"
    return text
