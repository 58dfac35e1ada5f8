#!/usr/bin/env python3
"""Ingest-to-sink latency: follows a JSON lines sink's file and, for each
alert written there, takes the time from its `time` (stamped by
`ingest_load` with STAMP set, as its request left) to the moment the line
is read here. Usage: bench/ingest_to_sink.py FILE COUNT; prints p50, p99
and the maximum once COUNT alerts have arrived (or after 120 s), over all
of them and over all but the first tenth (the server's first moments:
its caches are cold and the sink's file is new).
"""
import datetime
import json
import os
import sys
import time

path, count = sys.argv[1], int(sys.argv[2])
while not os.path.exists(path):
    time.sleep(0.001)
delays = []  # in the order they arrived
deadline = time.time() + 120
with open(path) as sink:
    pending = ""
    while len(delays) < count and time.time() < deadline:
        chunk = sink.read()
        if not chunk:
            time.sleep(0.0005)
            continue
        seen = time.time()
        pending += chunk
        *lines, pending = pending.split("\n")
        for line in lines:
            stamp = json.loads(line)["time"]
            sent = datetime.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
                tzinfo=datetime.timezone.utc).timestamp()
            delays.append(seen - sent)


def summary(values):
    values = sorted(values)
    at = lambda q: values[min(int(len(values) * q), len(values) - 1)]
    return (f"p50 {at(0.5) * 1000:.1f} ms, p99 {at(0.99) * 1000:.1f} ms, "
            f"max {values[-1] * 1000:.1f} ms")


print(f"ingest-to-sink over {len(delays)} alerts: {summary(delays)}; "
      f"after the first tenth: {summary(delays[len(delays) // 10:])}")
