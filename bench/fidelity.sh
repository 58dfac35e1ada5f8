#!/usr/bin/env bash
# Reproduces the figures of the fidelity issue in BENCHMARKS.md: the audit of
# generated clusters (13,050 objects for the target), next to Checkov on the
# same files in the same run, and how both grow; manifest loading alone.
# Needs hyperfine and GNU time (apt-get install hyperfine time) and Checkov
# in a virtualenv: python3 -m venv /opt/checkov && /opt/checkov/bin/pip
# install checkov==3.3.30 (CHECKOV=/path/to/checkov to use another).
# Usage: bench/fidelity.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q
bin=$PWD/target/release/palisade
checkov=${CHECKOV:-/opt/checkov/bin/checkov}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "## machine"
echo "$(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(lscpu | sed -n 's/Model name: *//p')"
echo "date: $(date -u +%F); checkov $($checkov --version)"
echo
for pods in 1000 10000 50000; do
  $bin gen --pods "$pods" > "$work/c$pods.yaml"
  echo "c$pods.yaml: $(grep -c '^kind:' "$work/c$pods.yaml") objects, $(stat -c %s "$work/c$pods.yaml") bytes"
done
echo

echo "## palisade audit (hyperfine: 10 runs, 3 for 50k pods)"
for pods in 1000 10000 50000; do
  runs=10
  [ "$pods" = 50000 ] && runs=3
  echo "$pods pods:"
  hyperfine -N -w 1 -r $runs --style basic -i "$bin audit $work/c$pods.yaml -o json" 2>&1 | grep -E "Time|Range"
done
/usr/bin/time -f "peak RSS, 10000 pods: %M KiB" $bin audit "$work/c10000.yaml" -o json > /dev/null 2> "$work/rss.txt" || true
tail -1 "$work/rss.txt"
echo

echo "## loading alone (palisade bench, in-process)"
$bin bench --pods 1000,10000,50000 --verdicts 1000 | tail -4
echo

echo "## checkov -f FILE --framework kubernetes -o json, same files, one run"
/usr/bin/time -f "checkov 1000 pods: %e s wall, %M KiB peak RSS" "$checkov" -f "$work/c1000.yaml" --framework kubernetes -o json --quiet > /dev/null 2> "$work/ck.txt" || true
tail -1 "$work/ck.txt"
/usr/bin/time -f "palisade 1000 pods: %e s wall, %M KiB peak RSS" $bin audit "$work/c1000.yaml" -o json > /dev/null 2> "$work/pa.txt" || true
tail -1 "$work/pa.txt"
