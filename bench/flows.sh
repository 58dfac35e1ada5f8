#!/usr/bin/env bash
# Reproduces the flow figures in BENCHMARKS.md (issue 4): captures and Hubble
# JSON lines verified against a generated cluster, next to tcpdump, tshark and
# jq on the same files in the same run. Needs GNU time, taskset, tcpdump,
# tshark and jq (apt-get install time util-linux tcpdump tshark jq), and
# about 7 GB of free disk in $TMPDIR (the 50M-packet capture is 5 GB).
# Usage: bench/flows.sh [--quick]   (--quick: skip the 5 GB capture)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q
bin=$PWD/target/release/palisade
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
# One core for the single-core figures; every core otherwise.
one="taskset -c 0"
timed() { # label, command...: wall seconds and peak RSS of one run
  local label=$1
  shift
  /usr/bin/time -o time.txt -f "%e s wall, %U s user, %M KiB peak RSS" "$@" > /dev/null 2> err.txt
  echo "$label: $(cat time.txt)"
}

echo "## machine"
echo "$(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(lscpu | sed -n 's/Model name: *//p')"
echo "date: $(date -u +%F)"
echo "tcpdump: $(tcpdump --version 2>&1 | head -1); tshark: $(tshark --version | head -1); jq: $(jq --version)"
echo

$bin gen --pods 1000 > cluster.yaml
$bin gen --pods 1000 --capture-endpoints > endpoints.txt
verify_capture="$bin flows verify --policy cluster.yaml --endpoints endpoints.txt -o jsonl"

echo "## pcap: 10M packets over 100k connections"
$bin gen --capture --packets 10000000 --connections 100000 > cap10m.pcap
ls -l cap10m.pcap | awk '{print "size: " $5 " bytes"}'
timed "load the cluster alone (one core)" $one $bin flows verify --policy cluster.yaml --format hubble /dev/null
timed "palisade flows verify (one core)" $one $verify_capture cap10m.pcap
timed "tcpdump -nr (one core)" $one tcpdump -nr cap10m.pcap
timed "tshark -q -z conv,tcp (one core)" $one tshark -r cap10m.pcap -q -z conv,tcp
echo

echo "## pcap: growth with input size (one core)"
$bin gen --capture --packets 1000000 --connections 10000 > cap1m.pcap
timed "1M packets, 10k connections" $one $verify_capture cap1m.pcap
timed "10M packets, 100k connections" $one $verify_capture cap10m.pcap
rm -f cap1m.pcap cap10m.pcap
if [ "${1:-}" != --quick ]; then
  $bin gen --capture --packets 50000000 --connections 500000 > cap50m.pcap
  ls -l cap50m.pcap | awk '{print "50M-packet capture: " $5 " bytes"}'
  timed "50M packets, 500k connections" $one $verify_capture cap50m.pcap
  rm -f cap50m.pcap
fi
echo

echo "## Hubble JSON lines: 1M flows (hubble observe -o json format)"
$bin gen --pods 1000 --hubble 1000000 > hubble1m.json
ls -l hubble1m.json | awk '{print "size: " $5 " bytes"}'
timed "palisade flows verify (all cores)" $bin flows verify --policy cluster.yaml -o jsonl hubble1m.json
timed "palisade flows verify (one core)" $one $bin flows verify --policy cluster.yaml -o jsonl hubble1m.json
timed "jq -c . (one core; jq has no threads)" jq -c . hubble1m.json
echo

echo "## Hubble: growth with input size (all cores)"
head -100000 hubble1m.json > hubble100k.json
timed "100k flows" $bin flows verify --policy cluster.yaml -o jsonl hubble100k.json
timed "1M flows" $bin flows verify --policy cluster.yaml -o jsonl hubble1m.json
$bin gen --pods 1000 --hubble 5000000 > hubble5m.json
timed "5M flows" $bin flows verify --policy cluster.yaml -o jsonl hubble5m.json
