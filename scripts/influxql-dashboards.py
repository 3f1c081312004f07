#!/usr/bin/env python3
"""The InfluxQL twins of the Flux dashboards, for InfluxDB 1.x and 3.x (and anything else Grafana
queries with InfluxQL).

Reads deploy/central/grafana/dashboards/*.json (Flux, the source of truth) and writes
deploy/central/grafana/dashboards-influxql/*.json: the same panels, each Flux query turned into
the InfluxQL query that reads the same measurement, fields, tags and aggregation, against the
data source `rgw-influxql`. The dashboards use a small set of Flux shapes, and each is mapped:

  filter on _measurement, _field, site and other tags  -> FROM / SELECT / WHERE
  aggregateWindow(every: v.windowPeriod, fn: F)         -> F(field) GROUP BY time($__interval)
  aggregateWindow(every: 1h|1d, fn: F)                  -> GROUP BY time(1h|1d)
  hourSelection(start: 2, stop: 4)                      -> WHERE 02:00-04:00 is not expressible in
                                                           InfluxQL: dropped, and the panel says so
  group(columns: [..]) (the kpi panels)                 -> raw points GROUP BY those tags
  pivot + group() + sort (the alarm table)              -> SELECT the fields and tags, ORDER BY time DESC
  duplicate + movingAverage(n: N)                       -> a second query: moving_average(.., N)

    scripts/influxql-dashboards.py          write the InfluxQL dashboards
    scripts/influxql-dashboards.py --check  fail when they are not what this script writes
"""
import copy
import glob
import json
import os
import re
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
FLUX = os.path.join(ROOT, "deploy/central/grafana/dashboards")
INFLUXQL = os.path.join(ROOT, "deploy/central/grafana/dashboards-influxql")
DATASOURCE = {"type": "influxdb", "uid": "rgw-influxql"}
AGGREGATES = {"mean": "mean", "max": "max", "min": "min", "last": "last", "sum": "sum"}


def quoted(query, key):
    return re.findall(r'r\.' + re.escape(key) + r' == "([^"]*)"', query)


def tag_filters(query):
    """Equality filters on tags other than _measurement, _field and site."""
    return [
        (k, v)
        for k, v in re.findall(r'r\.([a-zA-Z_][a-zA-Z0-9_]*) == "([^"]*)"', query)
        if k not in ("_measurement", "_field")
    ]


def translate(query):
    """The InfluxQL queries (one or two) and a note for the panel, for one Flux query."""
    measurement = quoted(query, "_measurement")
    fields = quoted(query, "_field")
    if len(measurement) != 1 or not fields:
        raise SystemExit("cannot translate (no single measurement or no field):\n" + query)
    measurement = measurement[0]
    where = ["$timeFilter", "\"site\" =~ /^$site$/"]
    where += ['"%s" = \'%s\'' % (k, v) for k, v in tag_filters(query)]
    where_text = " AND ".join(where)
    note = None
    if "hourSelection" in query:
        note = ("InfluxQL cannot select hours of the day: this panel takes every hour, not only "
                "02:00–04:00 local (the Flux dashboard does).")
    window = re.search(r'aggregateWindow\(every: ([^,]+), fn: (\w+)', query)
    if "pivot(" in query:
        columns = ", ".join('"%s"' % f for f in fields)
        return ([
            'SELECT %s, "device", "rule", "severity" FROM "%s" WHERE %s ORDER BY time DESC LIMIT 1000'
            % (columns, measurement, where_text)
        ], note)
    if window:
        every, fn = window.group(1).strip(), AGGREGATES[window.group(2)]
        interval = "$__interval" if every == "v.windowPeriod" else every
        selects = ", ".join('%s("%s") AS "%s"' % (fn, f, f) for f in fields)
        first = 'SELECT %s FROM "%s" WHERE %s GROUP BY time(%s), "device" fill(none)' % (
            selects, measurement, where_text, interval)
        queries = [first]
        average = re.search(r'movingAverage\(n: (\d+)\)', query)
        if average:
            f = fields[0]
            queries.append(
                'SELECT moving_average(%s("%s"), %s) AS "%s_baseline" FROM "%s" WHERE %s '
                'GROUP BY time(%s), "device" fill(none)'
                % (fn, f, average.group(1), f, measurement, where_text, interval))
        return (queries, note)
    grouped = re.search(r'group\(columns: \[([^\]]*)\]\)', query)
    if grouped:
        tags = ", ".join(t.strip() for t in grouped.group(1).split(","))
        selects = ", ".join('"%s"' % f for f in fields)
        return (['SELECT %s FROM "%s" WHERE %s GROUP BY %s' % (selects, measurement, where_text, tags)],
                note)
    raise SystemExit("cannot translate (no shape known):\n" + query)


def convert(dashboard):
    out = copy.deepcopy(dashboard)
    out["uid"] = dashboard["uid"] + "-iql"
    out["title"] = dashboard["title"] + " (InfluxQL)"
    for variable in out.get("templating", {}).get("list", []):
        if variable.get("name") == "site":
            variable["datasource"] = DATASOURCE
            variable["query"] = 'SHOW TAG VALUES WITH KEY = "site"'
    out["templating"]["list"] = [
        v for v in out.get("templating", {}).get("list", []) if v.get("name") != "bucket"
    ]
    for panel in out["panels"]:
        panel["datasource"] = DATASOURCE
        targets = []
        notes = []
        for target in panel.get("targets", []):
            queries, note = translate(target["query"])
            if note:
                notes.append(note)
            for n, query in enumerate(queries):
                targets.append({
                    "refId": target["refId"] + ("" if n == 0 else str(n)),
                    "datasource": DATASOURCE,
                    "rawQuery": True,
                    "resultFormat": "table" if panel.get("type") == "table" else "time_series",
                    "query": query,
                })
        panel["targets"] = targets
        if notes:
            panel["description"] = (panel.get("description", "") + " " + " ".join(sorted(set(notes)))).strip()
    return out


def main():
    check = "--check" in sys.argv[1:]
    stale = []
    os.makedirs(INFLUXQL, exist_ok=True)
    for path in sorted(glob.glob(os.path.join(FLUX, "*.json"))):
        with open(path, encoding="utf-8") as f:
            dashboard = json.load(f)
        text = json.dumps(convert(dashboard), ensure_ascii=False, indent=2) + "\n"
        target = os.path.join(INFLUXQL, os.path.basename(path))
        if check:
            try:
                with open(target, encoding="utf-8") as f:
                    if f.read() != text:
                        stale.append(target)
            except FileNotFoundError:
                stale.append(target)
        else:
            with open(target, "w", encoding="utf-8") as f:
                f.write(text)
    if stale:
        raise SystemExit("out of date (run scripts/influxql-dashboards.py): " + ", ".join(stale))


if __name__ == "__main__":
    main()
