#!/usr/bin/env bash
# Issue 11's delivery figures (BENCHMARKS.md): commit-to-delivery latency
# under load into a JSON lines sink, and the server's memory while a
# webhook sink is down and its deliveries pile up in the outbox.
set -euo pipefail
bin=${PALISADE:-target/release/palisade}
load=${LOAD:-target/release/examples/ingest_load}
dir=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$dir"' EXIT

# 1. Latency: 100,000 alerts at full speed, delivered to a file.
printf 'sinks:\n- {name: file, type: jsonl, path: %s/alerts.jsonl}\n' "$dir" > "$dir/file.yaml"
"$bin" serve --listen 127.0.0.1:18600 --store "sqlite:$dir/a.db" --config "$dir/file.yaml" 2>/dev/null &
sleep 1
"$load" http://127.0.0.1:18600 100000 4 1000
sleep 3
curl -s http://127.0.0.1:18600/metrics | grep -E 'palisade_sink_delivery_latency_seconds_(bucket|count|sum)' > "$dir/latency"
python3 - "$dir/latency" <<'PY'
import sys, re
buckets = []
for line in open(sys.argv[1]):
    m = re.match(r'.*_bucket\{sink="file",le="([^"]+)"\} (\S+)', line)
    if m: buckets.append((float("inf") if m.group(1) == "+Inf" else float(m.group(1)), float(m.group(2))))
total = buckets[-1][1]
for q in (0.5, 0.99):
    le = next(b for b, n in buckets if n >= q * total)
    print(f"commit-to-delivery p{int(q*100)} <= {le} s ({int(total)} delivered)")
PY
wc -l < "$dir/alerts.jsonl" | xargs echo "lines in the sink file:"
kill %1; wait %1 2>/dev/null || true

# 1b. Ingest to sink: each alert stamped as its request leaves, and read
# from the sink's file as it lands there (bench/ingest_to_sink.py).
for shape in "5000 1 10" "100000 4 1000"; do
  set -- $shape
  printf 'sinks:\n- {name: file, type: jsonl, path: %s/i2s-%s.jsonl}\n' "$dir" "$1" > "$dir/i2s.yaml"
  "$bin" serve --listen 127.0.0.1:18603 --store "sqlite:$dir/i2s-$1.db" --config "$dir/i2s.yaml" 2>/dev/null &
  server=$!
  sleep 1
  python3 bench/ingest_to_sink.py "$dir/i2s-$1.jsonl" "$1" &
  follower=$!
  STAMP=1 "$load" http://127.0.0.1:18603 "$1" "$2" "$3"
  wait $follower
  kill $server; wait $server 2>/dev/null || true
done

# 2. Memory: a webhook sink that is down (nothing listens) while 200,000
# alerts come in; the server's resident memory before and after.
printf 'sinks:\n- {name: down, type: webhook, url: "http://127.0.0.1:9/"}\n' > "$dir/down.yaml"
"$bin" serve --listen 127.0.0.1:18601 --store "sqlite:$dir/b.db" --config "$dir/down.yaml" 2>/dev/null &
pid=$!
sleep 1
echo "RSS at start: $(grep VmRSS /proc/$pid/status)"
for round in 1 2; do
  "$load" http://127.0.0.1:18601 100000 4 1000
  echo "RSS after $((round * 100000)) alerts with the sink down: $(grep VmRSS /proc/$pid/status)"
done
curl -s http://127.0.0.1:18601/metrics | grep -E '^palisade_sink_queue_depth'

# 3. A long outage: the webhook sink stays down for OUTAGE_MINUTES (10)
# while 100,000 alerts arrive every minute; the server's resident memory
# and the deliveries waiting, once a minute.
minutes=${OUTAGE_MINUTES:-10}
"$bin" serve --listen 127.0.0.1:18602 --store "sqlite:$dir/c.db" --config "$dir/down.yaml" 2>/dev/null &
pid=$!
sleep 1
echo "outage: RSS at start: $(grep VmRSS /proc/$pid/status)"
start=$(date +%s)
for minute in $(seq 1 "$minutes"); do
  "$load" http://127.0.0.1:18602 100000 4 1000 > /dev/null
  sleep $((start + minute * 60 - $(date +%s)))
  depth=$(curl -s http://127.0.0.1:18602/metrics | awk '/^palisade_sink_queue_depth/ {print $2}')
  echo "outage: minute $minute: $(grep VmRSS /proc/$pid/status), deliveries waiting: $depth"
done
