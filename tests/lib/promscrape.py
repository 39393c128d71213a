#!/usr/bin/python3
"""promscrape: reads lhttpd's /metrics (Prometheus text format 0.0.4) and a Prometheus
server's HTTP API for the metrics tests.

Usage:
  promscrape.py value URL SERIES       print the value of one series, written exactly as
                                       in the exposition (`name` or `name{a="b",...}`);
                                       exit 1 when the scrape fails or the series is absent
  promscrape.py sum URL NAME           print the sum of every series of metric NAME
  promscrape.py watch URL --stop-file F --out DIR
                                       scrape back to back until F exists (then once more);
                                       every counter series (those of counter families,
                                       and the `_bucket`, `_count` and `_sum` series of
                                       histograms and summaries) must never decrease nor
                                       vanish between consecutive scrapes, and no series
                                       may appear twice in one scrape. Writes DIR/report
                                       (`scrapes N failed F decreases D duplicates U`, then
                                       one line per problem) and DIR/last (the last scrape)
  promscrape.py query PROM EXPR        ask Prometheus at PROM (http://host:port) for an
                                       instant vector: one `VALUE {labels}` line per
                                       sample, `empty` when none; exit 1 on an API error
  promscrape.py targets PROM           `HEALTH JOB SCRAPE_URL` per active target
  promscrape.py rules PROM             `HEALTH GROUP NAME` per rule
"""

import json
import os
import sys
import time
import urllib.parse
import urllib.request

sys.dont_write_bytecode = True

def fetch(url, timeout=5.0):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read().decode()


def parse(text):
    """{series: value}; a series is the exposition text before its value."""
    series = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        key, _, value = line.rpartition(" ")
        series[key] = float(value)
    return series


def duplicates(text):
    """Series that occur more than once in one exposition."""
    seen, dup = set(), []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        key = line.rpartition(" ")[0]
        if key in seen:
            dup.append(key)
        seen.add(key)
    return dup


def types(text):
    """{family: type} from the # TYPE lines."""
    t = {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            parts = line.split()
            if len(parts) == 4:
                t[parts[2]] = parts[3]
    return t


def metric_name(series):
    return series.split("{", 1)[0]


def is_counter(series, typ):
    """Whether a series must never decrease: it belongs to a counter family, or it is the
    _bucket/_count/_sum of a histogram (_count/_sum of a summary); an untyped *_total
    counts as a counter."""
    name = metric_name(series)
    if typ.get(name) == "counter":
        return True
    for suf in ("_bucket", "_count", "_sum"):
        if name.endswith(suf):
            base = typ.get(name[:-len(suf)])
            if base == "histogram" or (base == "summary" and suf != "_bucket"):
                return True
    return name not in typ and name.endswith("_total")


def fmt(v):
    return str(int(v)) if v == int(v) else repr(v)


def cmd_value(url, key):
    try:
        s = parse(fetch(url))
    except OSError as e:
        print("scrape failed: %s" % e, file=sys.stderr)
        return 1
    if key not in s:
        print("absent", file=sys.stderr)
        return 1
    print(fmt(s[key]))
    return 0


def cmd_sum(url, name):
    try:
        s = parse(fetch(url))
    except OSError as e:
        print("scrape failed: %s" % e, file=sys.stderr)
        return 1
    print(fmt(sum(v for k, v in s.items() if metric_name(k) == name)))
    return 0


def cmd_watch(url, stop_file, outdir):
    prev = None
    scrapes = failed = 0
    decreases = []
    duplicated = []
    last = ""
    final = False
    while True:
        final = os.path.exists(stop_file)
        try:
            text = fetch(url, timeout=2.0)
        except OSError:
            # A worker killed while it answered, or a listener between workers.
            failed += 1
            time.sleep(0.01)
            if final and failed > 200:
                break
            continue
        scrapes += 1
        last = text
        cur = parse(text)
        typ = types(text)
        for k in duplicates(text):
            duplicated.append("scrape %d: %s appears twice" % (scrapes, k))
        if prev is not None:
            for k, v in prev.items():
                if not is_counter(k, typ):
                    continue
                if k not in cur:
                    decreases.append("scrape %d: %s vanished (was %s)" % (scrapes, k, fmt(v)))
                elif cur[k] < v:
                    decreases.append("scrape %d: %s %s -> %s" % (scrapes, k, fmt(v),
                                                                  fmt(cur[k])))
        prev = cur
        if final:
            break
        time.sleep(0.01)
    with open(os.path.join(outdir, "last"), "w") as f:
        f.write(last)
    with open(os.path.join(outdir, "report"), "w") as f:
        f.write("scrapes %d failed %d decreases %d duplicates %d\n" % (
            scrapes, failed, len(decreases), len(duplicated)))
        for d in decreases[:100] + duplicated[:100]:
            f.write(d + "\n")
    return 0


def api(prom, path, params=None):
    url = prom.rstrip("/") + path
    if params:
        url += "?" + urllib.parse.urlencode(params)
    doc = json.loads(fetch(url))
    if doc.get("status") != "success":
        raise OSError("API error: %s" % doc)
    return doc["data"]


def cmd_query(prom, expr):
    try:
        data = api(prom, "/api/v1/query", {"query": expr})
    except (OSError, ValueError) as e:
        print("query failed: %s" % e, file=sys.stderr)
        return 1
    if data["resultType"] != "vector":
        print("not a vector: %s" % data["resultType"], file=sys.stderr)
        return 1
    if not data["result"]:
        print("empty")
    for r in data["result"]:
        labels = ",".join('%s="%s"' % kv for kv in sorted(r["metric"].items()))
        print("%s {%s}" % (fmt(float(r["value"][1])), labels))
    return 0


def cmd_targets(prom):
    try:
        data = api(prom, "/api/v1/targets", {"state": "active"})
    except (OSError, ValueError) as e:
        print("targets failed: %s" % e, file=sys.stderr)
        return 1
    for t in data["activeTargets"]:
        print("%s %s %s" % (t["health"], t["labels"].get("job", "-"), t["scrapeUrl"]))
    return 0


def cmd_rules(prom):
    try:
        data = api(prom, "/api/v1/rules")
    except (OSError, ValueError) as e:
        print("rules failed: %s" % e, file=sys.stderr)
        return 1
    for g in data["groups"]:
        for r in g["rules"]:
            print("%s %s %s" % (r.get("health", "-"), g["name"], r["name"]))
    return 0


def main(argv):
    if len(argv) == 3 and argv[0] == "value":
        return cmd_value(argv[1], argv[2])
    if len(argv) == 3 and argv[0] == "sum":
        return cmd_sum(argv[1], argv[2])
    if len(argv) == 6 and argv[0] == "watch" and argv[2] == "--stop-file" and argv[4] == "--out":
        return cmd_watch(argv[1], argv[3], argv[5])
    if len(argv) == 3 and argv[0] == "query":
        return cmd_query(argv[1], argv[2])
    if len(argv) == 2 and argv[0] == "targets":
        return cmd_targets(argv[1])
    if len(argv) == 2 and argv[0] == "rules":
        return cmd_rules(argv[1])
    sys.stderr.write(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
