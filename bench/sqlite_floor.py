# The floor to compare palisade serve's SQLite ingest with: the same alerts,
# parsed and inserted by Python's sqlite3 into the same schema, with the
# same pragmas, in transactions of 1,000 rows (BENCHMARKS.md, issue 11).
import sqlite3, time, json, os
path = "/tmp/palisade-sqlite-floor.db"
for f in (path, path + "-wal", path + "-shm"):
    if os.path.exists(f): os.remove(f)
db = sqlite3.connect(path, isolation_level=None)
db.execute("PRAGMA journal_mode=WAL"); db.execute("PRAGMA synchronous=FULL")
db.execute("PRAGMA cache_size=-65536"); db.execute("PRAGMA wal_autocheckpoint=4096")
db.executescript("""CREATE TABLE alerts (id TEXT PRIMARY KEY, origin TEXT, time_us INTEGER, received_us INTEGER, rule TEXT, severity INTEGER, class TEXT, src_namespace TEXT, src_workload TEXT, dst_namespace TEXT, dst_workload TEXT, protocol TEXT, port INTEGER, connections INTEGER, last_seen_us INTEGER, summary TEXT, doc TEXT, deliveries INTEGER);
CREATE INDEX a1 ON alerts (time_us); CREATE INDEX a2 ON alerts (rule, time_us); CREATE INDEX a3 ON alerts (src_namespace, time_us); CREATE INDEX a4 ON alerts (dst_namespace, time_us);""")
doc = '{"id":"X","origin":"bench","time":"2026-12-02T10:00:00Z","first_seen":"2026-12-02T10:00:00Z","rule":"FLOW-001","name":"policy-bypass","severity":"critical","summary":"web/fe[Deployment] reached shop/db[StatefulSet]:5432, which the policy denies","src":{"kind":"pod","ip":"10.0.1.5","namespace":"web","pod":"fe-1","workload":"web/fe[Deployment]"},"dst":{"kind":"pod","ip":"10.0.2.9","namespace":"shop","pod":"db-0","workload":"shop/db[StatefulSet]"},"protocol":"TCP","port":5432,"connections":1,"evidence":{"records":[{"file":"ebpf","format":"ebpf","record":1}]}}'
N = 200000
start = time.time()
for b in range(0, N, 1000):
    rows = []
    for i in range(b, b + 1000):
        d = json.loads(doc.replace('"X"', '"%d"' % i))
        rows.append((d["id"], d["origin"], 0, 0, d["rule"], 4, "bypass", "web", d["src"]["workload"], "shop", d["dst"]["workload"], "TCP", 5432, 1, None, d["summary"], json.dumps(d), 1))
    db.execute("BEGIN")
    db.executemany("INSERT INTO alerts VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT(id) DO UPDATE SET deliveries = deliveries + 1", rows)
    db.execute("COMMIT")
el = time.time() - start
print("python sqlite3: %d rows in %.2f s: %.0f rows/s" % (N, el, N / el))
