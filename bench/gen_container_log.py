# A CRI container log for the log-scan benchmark (BENCHMARKS.md, issue 10):
# ordinary application lines, with a few that rules fire on (refused
# connections, Envoy 403s, CoreDNS queries), about 190 bytes a line.
# Usage: python3 bench/gen_container_log.py LINES [SHARE] > 0.log
# SHARE is the fraction of lines that concern a rule (default 0.01).
import random, sys
random.seed(7)
n = int(sys.argv[1])
share = float(sys.argv[2]) if len(sys.argv) > 2 else 0.01
words = "request handled user session cache miss hit backend worker queue job started finished ok retry payload bytes latency".split()
out = sys.stdout
for i in range(n):
    t = f"2026-11-30T10:{(i//60000)%60:02d}:{(i//1000)%60:02d}.{i%1000:03d}000000Z"
    r = random.random()
    if r < share * 0.1:
        msg = "dial tcp 10.0.0.9:5432: connect: connection refused"
    elif r < share * 0.2:
        msg = '[2025-07-22T17:55:52.085Z] "GET / HTTP/1.1" 403 - rbac_access_denied_matched_policy[none] - "-" 0 19 0 - "10.244.1.1" "curl/8.14.1" "id" "db" "-" inbound|80|| - 10.244.1.9:80 10.244.1.1:0 x default'
    elif r < share:
        msg = f'[INFO] 10.244.0.11:46853 - {i} "A IN host{i}.example.com. udp 82 false 512" NOERROR qr,rd,ra 192 0.002916556s'
    else:
        msg = f"level=info ts={t} msg=\"" + " ".join(random.choice(words) for _ in range(12)) + f"\" id={i} duration={random.randint(1,999)}ms"
    out.write(f"{t} stdout F {msg}\n")
