#!/usr/bin/env bash
# The container-log benchmark of BENCHMARKS.md (issue 10): palisade's
# built-in rules plus 100 keyword rules against GNU grep with the same
# patterns, one core, on a generated CRI log.
# Usage: bench/logs.sh [LINES] [SHARE]   (defaults: 2000000 0.01)
# Needs hyperfine and a release build (cargo build --release). grep writes
# its count to a file: with stdout on /dev/null, GNU grep stops at the
# first match.
set -euo pipefail
cd "$(dirname "$0")/.."
lines=${1:-2000000}
share=${2:-0.01}
work=${WORK:-$(mktemp -d)}
bin=$PWD/target/release/palisade
mkdir -p "$work/pods/shop_web-1_u1/app"
log=$work/pods/shop_web-1_u1/app/0.log
python3 bench/gen_container_log.py "$lines" "$share" > "$log"
# 100 keyword rules (random 8-letter words), and the same words for grep
# beside the built-in rules' two message patterns, LOG-008's attack
# strings and what the Envoy and CoreDNS rules look for.
python3 - "$work" <<'PY'
import random, sys
random.seed(11)
work = sys.argv[1]
words = ["".join(random.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(8)) for _ in range(100)]
with open(f"{work}/kw.yaml", "w") as rules:
    for i, w in enumerate(words):
        rules.write(f"- rule: keyword {i}\n  id: KW-{i:03d}\n  source: container_log\n"
                    f"  match:\n    message|contains: {w}\n  priority: low\n  output: \"{{message}}\"\n")
with open(f"{work}/kw.txt", "w") as f:
    f.write("\n".join(words) + "\n")
with open(f"{work}/patterns.txt", "w") as f:
    f.write("connection refused|connection reset|connection timed out|i/o timeout|ECONNREFUSED|ETIMEDOUT|no route to host\n")
    f.write("\\b(401|403)\\b|unauthori[sz]ed|forbidden|permission denied\n")
    f.write("rbac_access_denied\nNXDOMAIN\n")
    # LOG-008's attack strings, as extended regular expressions.
    f.write("\\$\\{jndi:\n\\(\\) \\{ :; \\};\n/dev/tcp/\nbash -i >&\nnc -e /bin/\nncat -e\n"
            "stratum\\+tcp://\nxmrig\n/etc/shadow\n/proc/self/environ\n169\\.254\\.169\\.254\n"
            "union select\n\\.\\./\\.\\./\\.\\./\\.\\./\n")
    f.write("\n".join(words) + "\n")
PY
echo "input: $(wc -c < "$log") bytes, $lines lines"
cd "$work"
taskset -c 0 hyperfine -w 1 -r 5 \
  "$bin logs scan --rules kw.yaml pods/ -o jsonl > out.jsonl" \
  "grep -E -c -i -f patterns.txt $log > count.txt" \
  "grep -E -c -f patterns.txt $log > count.txt"
echo "alerts: $(wc -l < out.jsonl)"
