#!/usr/bin/python3
"""report.py RESULTS [MACHINE]: the table of a `make bench` run.

RESULTS has one line per lhttp-bench run: key=value pairs (the scenario, the server,
its CPU use, and lhttp-bench's RESULT fields). Each cell is the median over the rounds;
a scenario with an incomplete run (a delivery missing, a connection failed) says so.
"""
import statistics
import sys


def parse(path):
    runs = []
    with open(path) as f:
        for line in f:
            d = {}
            for tok in line.split():
                if "=" in tok:
                    k, v = tok.split("=", 1)
                    d[k] = v
            if d:
                runs.append(d)
    return runs


def num(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def pick(runs, scenario, server, workers=None, pinned=None):
    return [r for r in runs if r.get("scenario") == scenario and r.get("server") == server
            and (workers is None or r.get("workers") == str(workers))
            and (pinned is None or r.get("pinned") == pinned)]


def median(rs, key):
    vals = [num(r.get(key)) for r in rs]
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


def complete(rs):
    return bool(rs) and all(r.get("complete") == "1" for r in rs)


def mem_kib(s):
    """'pss_kib=N,rss_kib=M' -> (N, M)"""
    d = dict(p.split("=") for p in (s or "").split(",") if "=" in p)
    return num(d.get("pss_kib")), num(d.get("rss_kib"))


def fmt(v, unit=""):
    if v is None:
        return "n/a"
    if abs(v) >= 1e6:
        return f"{v / 1e6:.2f} M{unit}"
    if abs(v) >= 1e4:
        return f"{v / 1e3:.0f} k{unit}"
    if abs(v) >= 100:
        return f"{v:.0f}{unit}"
    return f"{v:.2f}{unit}"


def main():
    runs = parse(sys.argv[1])
    out = []
    if len(sys.argv) > 2:
        with open(sys.argv[2]) as f:
            out.append("Machine: " + "; ".join(l.strip() for l in f if l.strip()))
            out.append("")
    # floor: bench-floor, one send per delivery and nothing else (tests/bench/floor.c).
    # floor/nchan says whether a target is within reach at all: when the floor itself
    # misses it, no server that sends each message on its own can meet it here.
    out.append("| scenario | metric | lhttpd | nchan | floor | lhttpd/nchan | floor/nchan "
               "| target | met |")
    out.append("|---|---|---|---|---|---|---|---|---|")

    def row(name, metric, lrs, nrs, key, better, target, unit="", frs=None, scale=1, strict=False):
        # scale: the cells in another unit than the key's (ratios are unchanged);
        # strict: the target is < (or >) target, not <= (>=).
        if not lrs and not nrs:
            return  # not run (BENCH_ONLY)
        lv, nv = median(lrs, key), median(nrs, key)
        fv = median(frs, key) if frs else None
        lv, nv, fv = (None if v is None else v * scale for v in (lv, nv, fv))
        ok = complete(lrs) and complete(nrs) and (not frs or complete(frs))
        ratio = lv / nv if lv is not None and nv else None
        fratio = fv / nv if fv is not None and nv else None

        def meets(r):
            if strict:
                return r > target if better == "higher" else r < target
            return r >= target if better == "higher" else r <= target
        met = "n/a"
        if ratio is not None and target is not None:
            met = "yes" if meets(ratio) else "NO"
            if met == "NO" and fratio is not None and not meets(fratio):
                met = "NO (nor the floor)"
        if not ok:
            met = "INCOMPLETE RUN"
        op = (">" if better == "higher" else "<") + ("" if strict else "=")
        tgt = "" if target is None else f"{op} {target}x"
        out.append(f"| {name} | {metric} | {fmt(lv, unit)} | {fmt(nv, unit)} | "
                   f"{'' if fv is None else fmt(fv, unit)} | "
                   f"{'n/a' if ratio is None else f'{ratio:.2f}'} | "
                   f"{'' if fratio is None else f'{fratio:.2f}'} | {tgt} | {met} |")

    w1 = dict(workers=1, pinned=None)
    row("1. fan-out, 1000 subs, WS publish", "deliveries/s",
        pick(runs, "fanout-ws", "lhttpd", 1, "yes") or pick(runs, "fanout-ws", "lhttpd", 1),
        pick(runs, "fanout-ws", "nchan", 1, "yes") or pick(runs, "fanout-ws", "nchan", 1),
        "deliveries_per_s", "higher", 3, frs=pick(runs, "fanout-ws", "floor", **w1))
    # 1. The same fan-out with identity (lhttpd only): every connection with a token, in a
    # namespace where only authenticated connections subscribe and only subscribers
    # publish, against lhttpd's unauthenticated fan-out of the same rounds. The ratio is
    # the median of the rounds' own ratios (the two runs of a round are back to back),
    # or of the medians when the rounds are not tagged.
    auth = pick(runs, "fanout-auth", "lhttpd", 1, "yes") or pick(runs, "fanout-auth", "lhttpd", 1)
    if auth:
        base = [r for r in (pick(runs, "fanout-ws", "lhttpd", 1, "yes") or
                            pick(runs, "fanout-ws", "lhttpd", 1)) if "round" in r]
        if not base:
            base = pick(runs, "fanout-ws", "lhttpd", 1, "yes") or pick(runs, "fanout-ws", "lhttpd", 1)
        av, bv = median(auth, "deliveries_per_s"), median(base, "deliveries_per_s")
        by_round = {r["round"]: num(r.get("deliveries_per_s")) for r in base if "round" in r}
        pairs = [num(r.get("deliveries_per_s")) / by_round[r["round"]] for r in auth
                 if by_round.get(r.get("round")) and num(r.get("deliveries_per_s")) is not None]
        ratio = statistics.median(pairs) if pairs else (av / bv if av is not None and bv else None)
        met = "n/a" if ratio is None else ("yes" if ratio >= 0.95 else "NO")
        if not (complete(auth) and complete(base)):
            met = "INCOMPLETE RUN"
        out.append(f"| 1. same, lhttpd: authenticated, subscribers-only publish / unauthenticated "
                   f"| deliveries/s | {fmt(av)} / {fmt(bv)} | | | "
                   f"{'n/a' if ratio is None else f'{ratio:.2f}'} | | >= 0.95x | {met} |")
        # The steadier measure on a shared machine: deliveries per second of server CPU.
        def per_cpu1(rs):
            v = [num(r.get("deliveries_per_s")) / num(r.get("server_cpu")) for r in rs
                 if num(r.get("server_cpu")) and num(r.get("deliveries_per_s")) is not None]
            return statistics.median(v) if v else None
        ea, eb = per_cpu1(auth), per_cpu1(base)
        if ea and eb:
            out.append(f"| 1. same, lhttpd: deliveries per server CPU-second, authenticated / "
                       f"unauthenticated | deliveries/CPU-s | {fmt(ea)} / {fmt(eb)} | | | "
                       f"{ea / eb:.2f} | | | |")
    row("1. fan-out, 1000 subs, HTTP publish (8 conns)", "deliveries/s",
        pick(runs, "fanout-http", "lhttpd", **w1), pick(runs, "fanout-http", "nchan", **w1),
        "deliveries_per_s", "higher", 3, frs=pick(runs, "fanout-http", "floor", **w1))
    row("2. 10k subs on 10k channels, HTTP publish (8 conns)", "messages/s",
        pick(runs, "channels-http", "lhttpd", **w1), pick(runs, "channels-http", "nchan", **w1),
        "msgs_per_s", "higher", 2, frs=pick(runs, "channels-http", "floor", **w1))
    row("2. same, lhttpd WS publish vs nchan HTTP", "messages/s",
        pick(runs, "channels-ws", "lhttpd", **w1), pick(runs, "channels-http", "nchan", **w1),
        "msgs_per_s", "higher", 2)
    # 3. Latency: p50 and p99 of each fixed-rate scenario that ran, with its rate.
    for sc, title in (("latency", "3. latency, {} msg/s to 1000 subs"),
                      ("latency-light", "3. light load, {} msg/s to 1000 subs"),
                      ("latency-channels", "3. {} msg/s to random channels of 10k (HTTP)")):
        l, n, f = (pick(runs, sc, srv, **w1) for srv in ("lhttpd", "nchan", "floor"))
        if sc != "latency" and not l:
            continue
        name = title.format(l[0].get("rate") if l else "?")
        row(name, "p50", l, n, "p50_us", "lower", None, " us", f)
        row(name, "p99", l, n, "p99_us", "lower", 0.5, " us", f)
    row("5. connection setup, 10k (subscribed)", "connections/s",
        pick(runs, "setup", "lhttpd", **w1), pick(runs, "setup", "nchan", **w1),
        "setup_rate", "higher", None)

    # 4. Memory per idle connection.
    mem = {}
    for srv in ("lhttpd", "nchan"):
        rs = pick(runs, "idle", srv)
        if not rs:
            continue
        r = rs[-1]
        b, a = mem_kib(r.get("mem_before")), mem_kib(r.get("mem_after"))
        nb, na = mem_kib(r.get("nats_before")), mem_kib(r.get("nats_after"))
        n = num(r.get("subs")) or 1
        if b[0] is not None and a[0] is not None:
            mem[srv] = dict(pss=(a[0] - b[0]) * 1024 / n, rss=(a[1] - b[1]) * 1024 / n,
                            nats=((na[0] or 0) - (nb[0] or 0)) * 1024 / n,
                            ok=r.get("complete") == "1")
    if "lhttpd" in mem and "nchan" in mem:
        l, n_ = mem["lhttpd"], mem["nchan"]
        ratio = l["pss"] / n_["pss"] if n_["pss"] else None
        ok = l["ok"] and n_["ok"]
        met = "yes" if ok and ratio is not None and ratio <= 0.5 and l["pss"] <= 4096 else "NO"
        if not ok:
            met = "INCOMPLETE RUN"
        out.append(f"| 4. idle, 10k connections (1 channel each) | user-space bytes/conn (PSS) | "
                   f"{l['pss']:.0f} B | {n_['pss']:.0f} B | "
                   f" | {'n/a' if ratio is None else f'{ratio:.2f}'} | | <= 4096 B and <= 0.5x | {met} |")
        out.append(f"| 4. same: nats-server's growth meanwhile (lhttpd's subscriptions) | "
                   f"user-space bytes/conn (PSS) | {l['nats']:.0f} B | | | | | | |")

    # Scaling: 2 workers against 1, same (unpinned) conditions, and against the pinned
    # headline.
    for srv in ("lhttpd", "nchan"):
        one = median(pick(runs, "fanout-ws", srv, 1, "no"), "deliveries_per_s")
        two = median(pick(runs, "fanout-ws", srv, 2), "deliveries_per_s")
        head = median(pick(runs, "fanout-ws", srv, 1, "yes"), "deliveries_per_s")
        ok = complete(pick(runs, "fanout-ws", srv, 2)) and complete(pick(runs, "fanout-ws", srv, 1))
        if two is None:
            continue
        r1 = two / one if one else None
        rh = two / head if head else None
        met = "n/a"
        if srv == "lhttpd" and r1 is not None:
            met = "yes" if r1 >= 1.5 else "NO"
        if not ok:
            met = "INCOMPLETE RUN"
        out.append(f"| 6. scaling, fan-out WS, {srv}: 2 workers / 1 worker (unpinned) | deliveries/s | "
                   f"{fmt(two)} / {fmt(one)} | | | {'n/a' if r1 is None else f'{r1:.2f}'} | | "
                   f"{'>= 1.5x' if srv == 'lhttpd' else ''} | {met} |")
        if rh is not None:
            out.append(f"| 6. same, {srv}: 2 workers / pinned 1-worker headline | deliveries/s | "
                       f"{fmt(two)} / {fmt(head)} | | | {rh:.2f} | | | |")
        # Deliveries per second of server CPU (its own processes, NATS included for
        # lhttpd): whether a second worker costs more per delivery.
        def per_cpu(rs):
            v = []
            for r in rs:
                c = (num(r.get("server_cpu")) or 0) + (num(r.get("nats_cpu")) or 0)
                d = num(r.get("deliveries_per_s"))
                if c > 0 and d:
                    v.append(d / c)
            return statistics.median(v) if v else None
        e1, e2 = per_cpu(pick(runs, "fanout-ws", srv, 1, "no")), per_cpu(pick(runs, "fanout-ws", srv, 2))
        if e1 and e2:
            out.append(f"| 6. same, {srv}: deliveries per server CPU-second, 2 workers / 1 | "
                       f"deliveries/CPU-s | {fmt(e2)} / {fmt(e1)} | | | {e2 / e1:.2f} | | | |")

    # 7. History (issue 18): the fan-out on a channel with history (lhttpd: JetStream,
    # offsets on every delivery; nchan: nchan_message_buffer_length, plain subscribers,
    # and, informative, subscribers that get the message ids over ws+meta.nchan),
    # lhttpd's history fan-out against its fan-out without history of the same rounds
    # (the median of the rounds' own ratios, as for the authenticated row), and the
    # recovery of 1000 clients reconnecting at once.
    hl = pick(runs, "fanout-hist", "lhttpd", **w1)
    row("7. history fan-out, 1000 subs, WS publish (lhttpd history, nchan buffer)",
        "deliveries/s", hl, pick(runs, "fanout-hist", "nchan", **w1), "deliveries_per_s",
        "higher", 3)
    if pick(runs, "fanout-hist-ids", "nchan", **w1):
        row("7. same, nchan's subscribers with message ids (ws+meta.nchan)", "deliveries/s",
            hl, pick(runs, "fanout-hist-ids", "nchan", **w1), "deliveries_per_s", "higher",
            None)
    if hl:
        base = pick(runs, "fanout-nohist", "lhttpd", **w1)
        hv, bv = median(hl, "deliveries_per_s"), median(base, "deliveries_per_s")
        by_round = {r["hround"]: num(r.get("deliveries_per_s")) for r in base if "hround" in r}
        pairs = [num(r.get("deliveries_per_s")) / by_round[r["hround"]] for r in hl
                 if by_round.get(r.get("hround")) and num(r.get("deliveries_per_s")) is not None]
        ratio = statistics.median(pairs) if pairs else (hv / bv if hv is not None and bv else None)
        met = "n/a" if ratio is None else ("yes" if ratio >= 0.5 else "NO")
        if not (complete(hl) and complete(base)):
            met = "INCOMPLETE RUN"
        out.append(f"| 7. same, lhttpd: with history / without (same rounds) | deliveries/s | "
                   f"{fmt(hv)} / {fmt(bv)} | | | {'n/a' if ratio is None else f'{ratio:.2f}'} "
                   f"| | >= 0.5x | {met} |")
    rl, rn = pick(runs, "recover", "lhttpd", **w1), pick(runs, "recover", "nchan", **w1)
    if rl or rn:
        name = "7. recovery: 1000 clients reconnect at once, 100 missed messages each"
        row(name, "time until all recovered", rl, rn, "recover_s", "lower", 1, " ms",
            scale=1e3, strict=True)
        row(name, "p50 per client", rl, rn, "p50_us", "lower", None, " ms", scale=1e-3)
        row(name, "p99 per client", rl, rn, "p99_us", "lower", None, " ms", scale=1e-3)

    # 9. TLS (issue 19): fan-out over wss:// against nchan's over nginx ssl, and against
    # lhttpd's plain fan-out of the same rounds (round by round, as for fanout-auth);
    # handshakes; memory per idle TLS connection.
    tl, tn = pick(runs, "fanout-wss", "lhttpd", **w1), pick(runs, "fanout-wss", "nchan", **w1)
    if tl or tn:
        row("9. TLS fan-out, 1000 subs, wss publish", "deliveries/s", tl, tn,
            "deliveries_per_s", "higher", 3)
        base = pick(runs, "fanout-plain", "lhttpd", **w1)
        by_round = {r["tround"]: num(r.get("deliveries_per_s")) for r in base if "tround" in r}
        pairs = [num(r.get("deliveries_per_s")) / by_round[r["tround"]] for r in tl
                 if by_round.get(r.get("tround")) and num(r.get("deliveries_per_s")) is not None]
        ratio = statistics.median(pairs) if pairs else None
        met = "n/a" if ratio is None else ("yes" if ratio >= 0.5 else "NO")
        if not (complete(tl) and complete(base)):
            met = "INCOMPLETE RUN"
        out.append(f"| 9. same, lhttpd: TLS / plain (same rounds) | deliveries/s | "
                   f"{fmt(median(tl, 'deliveries_per_s'))} / {fmt(median(base, 'deliveries_per_s'))} "
                   f"| | | {'n/a' if ratio is None else f'{ratio:.2f}'} | | >= 0.5x | {met} |")
        row("9. TLS connection setup, 5000, full handshakes", "connections/s",
            pick(runs, "setup-tls", "lhttpd", **w1), pick(runs, "setup-tls", "nchan", **w1),
            "setup_rate", "higher", None)
        row("9. TLS connection setup, 5000, resumed (tickets)", "connections/s",
            pick(runs, "setup-tls-resume", "lhttpd", **w1),
            pick(runs, "setup-tls-resume", "nchan", **w1), "setup_rate", "higher", None)
    tmem = {}
    for srv in ("lhttpd", "nchan"):
        rs = pick(runs, "idle-tls", srv)
        if not rs:
            continue
        r = rs[-1]
        b, a = mem_kib(r.get("mem_before")), mem_kib(r.get("mem_after"))
        n = num(r.get("subs")) or 1
        if b[0] is not None and a[0] is not None:
            tmem[srv] = dict(pss=(a[0] - b[0]) * 1024 / n, rss=(a[1] - b[1]) * 1024 / n,
                             ok=r.get("complete") == "1")
    if "lhttpd" in tmem and "nchan" in tmem:
        l, n_ = tmem["lhttpd"], tmem["nchan"]
        ratio = l["pss"] / n_["pss"] if n_["pss"] else None
        ok = l["ok"] and n_["ok"]
        met = "yes" if ok and ratio is not None and ratio <= 0.5 else "NO"
        if not ok:
            met = "INCOMPLETE RUN"
        out.append(f"| 9. idle TLS, 10k connections (1 channel each) | user-space bytes/conn (PSS) | "
                   f"{l['pss']:.0f} B | {n_['pss']:.0f} B | "
                   f" | {'n/a' if ratio is None else f'{ratio:.2f}'} | | <= 0.5x | {met} |")
        rr = "n/a" if not n_["rss"] else f"{l['rss'] / n_['rss']:.2f}"
        out.append(f"| 9. same, RSS (shared pages counted in every process) | user-space bytes/conn (RSS) | "
                   f"{l['rss']:.0f} B | {n_['rss']:.0f} B | | {rr} | | | |")

    out.append("")
    out.append("Server CPU use during the runs (share of one core, median; lhttpd's NATS apart):")
    for sc in ("fanout-ws", "fanout-auth", "fanout-http", "channels-http", "channels-ws", "latency",
               "latency-channels", "setup", "fanout-hist", "fanout-hist-ids", "fanout-nohist",
               "recover", "fanout-wss", "fanout-plain", "setup-tls", "setup-tls-resume"):
        parts = []
        for srv in ("lhttpd", "nchan", "floor"):
            rs = pick(runs, sc, srv, 1, "yes") or pick(runs, sc, srv, **w1)
            if rs:
                s = f"{srv} {median(rs, 'server_cpu'):.2f}"
                if srv == "lhttpd":
                    s += f" (+ nats {median(rs, 'nats_cpu'):.2f})"
                s += f", generator {median(rs, 'gen_cpu'):.2f}"
                parts.append(s)
        if parts:
            out.append(f"- {sc}: " + "; ".join(parts))
    bad = [r for r in runs if r.get("complete") != "1"]
    out.append("")
    out.append(f"Runs: {len(runs)}, incomplete: {len(bad)}"
               + ("" if not bad else " (" + ", ".join(f"{r.get('scenario')}/{r.get('server')}" for r in bad) + ")"))
    print("\n".join(out))


if __name__ == "__main__":
    main()
