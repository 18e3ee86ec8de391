"""The probe of the benchmarks (bench/overload.sh, bench/call-load.sh): an OPTIONS to the
server (no user part: every subject answers it itself) from 127.0.0.1 every INTERVAL seconds,
until SIGTERM; each sent as "S N EPOCH" and each answer as "R N EPOCH STATUS" in LOG
(sipp_stats.probe_log reads it). How long the server takes to answer is its signalling
latency, at microsecond resolution (SIPp's response times count in milliseconds of its
own event loop).

    python3 bench/probe.py PORT LOG INTERVAL
"""
import select, signal, socket, sys, time


def options(port, me, n):
    """The n-th OPTIONS from 127.0.0.1:me to the server at 127.0.0.1:port (bytes)."""
    return (f"OPTIONS sip:127.0.0.1:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{me};rport;branch=z9hG4bK-probe-{me}-{n}\r\n"
            "Max-Forwards: 70\r\n"
            "From: <sip:probe@switchboard.local>;tag=probe\r\n"
            f"To: <sip:127.0.0.1:{port}>\r\n"
            f"Call-ID: probe-{me}-{n}\r\n"
            f"CSeq: {n} OPTIONS\r\n"
            "Content-Length: 0\r\n\r\n").encode()


def main():
    port, log, interval = int(sys.argv[1]), sys.argv[2], float(sys.argv[3])
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    me = s.getsockname()[1]
    out = open(log, "w", buffering=1)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    n = 0
    next_at = time.time()
    while not stop:
        now = time.time()
        if now >= next_at:
            n += 1
            msg = options(port, me, n)
            try:
                s.sendto(msg, ("127.0.0.1", port))
            except OSError:
                pass
            out.write(f"S {n} {time.time():.6f}\n")
            next_at += interval
            if next_at < now:
                next_at = now + interval
            continue
        try:
            ready, _, _ = select.select([s], [], [], next_at - now)
        except InterruptedError:
            continue
        if not ready:
            continue
        try:
            data = s.recv(65535)
        except OSError:  # ICMP: nothing listens
            continue
        t = time.time()
        lines = data.decode("latin-1").split("\r\n")
        parts = lines[0].split()
        if len(parts) < 2 or parts[0] != "SIP/2.0":
            continue
        cseq = next((l.split(":", 1)[1].split()[0] for l in lines[1:]
                     if l.lower().startswith("cseq:")), None)
        if cseq and cseq.isdigit():
            out.write(f"R {cseq} {t:.6f} {parts[1]}\n")


if __name__ == "__main__":
    main()
