#!/usr/bin/env python3
"""Issue 11's dashboard figure (BENCHMARKS.md): how long headless Chromium
takes from the page's start to the drawn graph of the generated
10,000-pod cluster, served by `palisade serve --manifests`.

Talks W3C WebDriver to Debian's chromedriver over plain HTTP (no client
library). Usage: bench/dashboard.py [PODS] [RUNS]; PALISADE overrides the
binary (default target/release/palisade).
"""
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

PODS = int(sys.argv[1]) if len(sys.argv) > 1 else 10000
RUNS = int(sys.argv[2]) if len(sys.argv) > 2 else 3
BIN = os.environ.get("PALISADE", "target/release/palisade")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(method, url, body=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method,
                                     headers={"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as answer:
        return json.loads(answer.read() or b"null")


def wait_until(ready, within=60.0):
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            if ready():
                return True
        except OSError:
            pass
        time.sleep(0.05)
    return False


def main():
    work = tempfile.mkdtemp(prefix="palisade-dashboard-")
    manifests = os.path.join(work, "cluster.yaml")
    with open(manifests, "w") as out:
        subprocess.run([BIN, "gen", "--pods", str(PODS)], stdout=out, check=True)
    port, driver_port = free_port(), free_port()
    started = time.monotonic()
    server = subprocess.Popen([BIN, "serve", "--listen", f"127.0.0.1:{port}",
                               "--store", f"sqlite:{work}/alerts.db", "--manifests", manifests],
                              stderr=subprocess.DEVNULL)
    driver = subprocess.Popen(["/usr/bin/chromedriver", f"--port={driver_port}"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}"
        assert wait_until(lambda: urllib.request.urlopen(f"{base}/healthz").status == 200)
        print(f"server start (manifests loaded, declared map computed): "
              f"{time.monotonic() - started:.2f} s")
        t = time.monotonic()
        graph = call("GET", f"{base}/api/v1/graph")
        print(f"GET /api/v1/graph: {time.monotonic() - t:.2f} s, level {graph['level']}, "
              f"{len(graph['nodes'])} nodes, {len(graph['edges'])} edges")
        wd = f"http://127.0.0.1:{driver_port}"
        assert wait_until(lambda: call("GET", f"{wd}/status")["value"]["ready"])
        args = ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--no-first-run", "--disable-background-networking", "--disable-sync",
                "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
                "--window-size=1400,900"]
        caps = {"capabilities": {"alwaysMatch": {"goog:chromeOptions": {
            "binary": "/usr/bin/chromium", "args": args}}}}
        session = call("POST", f"{wd}/session", caps)["value"]["sessionId"]
        run = lambda script: call("POST", f"{wd}/session/{session}/execute/sync",
                                  {"script": script, "args": []})["value"]
        for n in range(RUNS):
            call("POST", f"{wd}/session/{session}/url", {"url": f"{base}/?run={n}"})
            assert wait_until(lambda: run("return window.palisadeGraph !== undefined"), 60)
            drawn = run("return window.palisadeGraph")
            print(f"run {n + 1}: page start to graph drawn {drawn['sincePageStart'] / 1000:.2f} s "
                  f"(layout {drawn['ms'] / 1000:.2f} s; {drawn['nodes']} nodes, "
                  f"{drawn['edges']} edges, per {drawn['level']})")
        call("DELETE", f"{wd}/session/{session}")
    finally:
        driver.kill()
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
