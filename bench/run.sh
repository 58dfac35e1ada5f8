#!/usr/bin/env bash
# Reproduces the figures in BENCHMARKS.md. Needs: a release build, GNU time,
# and (for the peer comparison) np-guard's network-config-analyzer:
#   python3 -m venv /opt/nca && /opt/nca/bin/pip install network-config-analyzer
# Usage: bench/run.sh [NCA_SIZES]   (default "500 1000"; NCA is slow)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q
bin=target/release/palisade
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "## machine"
echo "$(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(lscpu | sed -n 's/Model name: *//p')"
echo "date: $(date -u +%F)"
echo

echo "## palisade bench (phases, in-process)"
$bin bench --pods 1000,10000,50000
echo

echo "## end to end: palisade reach FILE > /dev/null (wall s, peak RSS KiB)"
for pods in 1000 10000 50000; do
  $bin gen --pods "$pods" > "$work/c$pods.yaml"
  objects=$(grep -c '^kind:' "$work/c$pods.yaml")
  /usr/bin/time -f "pods=$pods objects=$objects wall=%e s rss=%M KiB" $bin reach "$work/c$pods.yaml" > /dev/null
done
echo

echo "## loading exactly 10,000 objects (7,663 pods), multi-document and as one kubectl List dump"
$bin gen --pods 7663 > "$work/o10k.yaml"
python3 - "$work/o10k.yaml" "$work/o10k-list.yaml" <<'PY'
import sys
docs = [d.strip("\n") for d in open(sys.argv[1]).read().split("---\n") if d.strip()]
out = ["apiVersion: v1\nitems:\n"]
for d in docs:
    first, *rest = d.split("\n")
    out.append("- " + first + "\n" + "".join("  " + l + "\n" for l in rest))
out.append("kind: List\nmetadata:\n  resourceVersion: \"\"\n")
open(sys.argv[2], "w").write("".join(out))
PY
echo "objects: $(grep -c '^kind:' "$work/o10k.yaml")"
for f in o10k.yaml o10k-list.yaml; do
  /usr/bin/time -o "$work/time" -f "$f: reach --focus-workload none (load + engine): wall=%e s user=%U s rss=%M KiB" \
    $bin reach "$work/$f" --focus-workload no/such > /dev/null
  cat "$work/time"
done
echo

echo "## peer: np-guard network-config-analyzer (NCA), same files, same run"
if [ -x /opt/nca/bin/nca ]; then
  /opt/nca/bin/nca --version 2>/dev/null || true
  for pods in ${1:-500 1000}; do
    f="$work/t$pods.yaml"
    $bin gen --pods "$pods" --no-pod-objects --host-network-percent 0 > "$f"
    /usr/bin/time -o "$work/time" -f "palisade pods=$pods wall=%e s rss=%M KiB" $bin reach "$f" > "$work/p$pods.txt"
    cat "$work/time"
    /usr/bin/time -o "$work/time" -f "nca      pods=$pods wall=%e s rss=%M KiB" /opt/nca/bin/nca --connectivity "$f" \
      --resource_list "$f" --output_format txt_no_fw_rules > "$work/n$pods.txt" 2>/dev/null
    cat "$work/time"
    echo "as generated:"
    python3 bench/compare_nca.py "$work/p$pods.txt" "$work/n$pods.txt" | grep -v '^    ' || true
    # The same cluster with key-only selector expressions written as values
    # (NCA mishandles them in cross-namespace peers).
    python3 bench/nca_equivalent.py "$f" "${f%.yaml}-eq.yaml"
    $bin reach "${f%.yaml}-eq.yaml" > "$work/p$pods.eq.txt"
    cmp -s <(sort "$work/p$pods.txt") <(sort "$work/p$pods.eq.txt") && echo "palisade map unchanged by the rewrite"
    /opt/nca/bin/nca --connectivity "${f%.yaml}-eq.yaml" --resource_list "${f%.yaml}-eq.yaml" --output_format txt_no_fw_rules > "$work/n$pods.eq.txt" 2>/dev/null
    echo "with equivalent selectors:"
    python3 bench/compare_nca.py "$work/p$pods.eq.txt" "$work/n$pods.eq.txt" | grep -v '^    ' || true
  done
else
  echo "NCA not installed; skipped"
fi
