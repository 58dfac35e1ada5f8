#!/usr/bin/env python3
"""Runs SigmaHQ's Kubernetes audit rules, unchanged, through `palisade logs
scan` on a crafted trail: one event each rule means to catch and, for most,
a neighbouring event it must not. SigmaHQ's files are not in this
repository; point the script at a checkout of github.com/SigmaHQ/sigma.

    python3 tests/sigma/sigmahq.py SIGMA_CHECKOUT target/release/palisade

Prints one line per event and exits 1 on any mismatch. Rules are named by
the first 8 characters of their id.
"""
import glob
import json
import os
import subprocess
import sys
import tempfile

EVENTS = []


def event(expect, verb, resource, ns="shop", group="", sub=None, code=200, extra=None):
    n = len(EVENTS)
    o = {
        "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "RequestResponse",
        "auditID": f"id{n}", "stage": "ResponseComplete",
        "requestURI": f"/apis/{group}/v1/namespaces/{ns}/{resource}/x", "verb": verb,
        "user": {"username": "mallory", "groups": ["system:authenticated"]},
        "sourceIPs": ["10.0.0.5"], "userAgent": "kubectl/v1.31",
        "objectRef": {"resource": resource, "name": "x", "apiGroup": group, "apiVersion": "v1"},
        "responseStatus": {"code": code},
        "requestReceivedTimestamp": f"2026-12-03T10:00:{n:02d}.000000Z",
        "stageTimestamp": f"2026-12-03T10:00:{n:02d}.100000Z",
    }
    if ns:
        o["objectRef"]["namespace"] = ns
    if sub:
        o["objectRef"]["subresource"] = sub
    o.update(extra or {})
    EVENTS.append((expect, o))


def pod(spec):
    return {"requestObject": {"spec": spec}}


container = {"name": "c", "image": "i"}
event("eed82177", "create", "validatingwebhookconfigurations", ns=None, group="admissionregistration.k8s.io")
event(None, "get", "validatingwebhookconfigurations", ns=None, group="admissionregistration.k8s.io")
event("0c9b3bda", "create", "cronjobs", group="batch")
event(None, "list", "cronjobs", group="batch")
event("40967487", "delete", "deployments", group="apps")
event(None, "get", "deployments", group="apps")
event("3132570d", "delete", "events")
event(None, "list", "events")
event("a1b0ca4e", "create", "pods", sub="exec", code=101)
event(None, "create", "pods", sub="log")
event("402b955c", "create", "pods", code=201,
      extra=pod({"volumes": [{"name": "h", "hostPath": {"path": "/"}}], "containers": [container]}))
event(None, "create", "pods", code=201,
      extra=pod({"volumes": [{"name": "e", "emptyDir": {}}], "containers": [container]}))
event("a80d927d", "create", "pods", ns="kube-system", code=201, extra=pod({"containers": [container]}))
event("c5cd1b20", "create", "pods", code=201, extra=pod(
    {"containers": [dict(container, securityContext={"capabilities": {"add": ["SYS_ADMIN"]}})]}))
event("84b777bd", "create", "selfsubjectrulesreviews", ns=None, group="authorization.k8s.io", code=201)
event(None, "create", "selfsubjectaccessreviews", ns=None, group="authorization.k8s.io", code=201)
event("10b97915", "create", "rolebindings", group="rbac.authorization.k8s.io", code=201)
event(None, "get", "rolebindings", group="rbac.authorization.k8s.io")
event("eeb3e9e1", "list", "secrets")
event(None, "get", "configmaps")
event("58d31a75", "delete", "secrets")
event("e31bae15", "create", "serviceaccounts", code=201)
event("ad9012a6", "patch", "deployments", group="apps")
event("0d933542", "list", "pods", code=403)
# "Potential Enumeration Activity" compares responseStatus.code with
# 'ALLOW': a code is a number, so as written the rule cannot fire.
event(None, "get", "pods", extra={"requestURI": "/api/v1/namespaces/shop/pods/x/exec?command=%2fbin%2fsh"})


def main():
    sigma, palisade = sys.argv[1], sys.argv[2]
    rules = sorted(glob.glob(os.path.join(sigma, "rules/application/kubernetes/audit/*.yml")))
    if len(rules) != 16:
        print(f"expected SigmaHQ's 16 Kubernetes audit rules, found {len(rules)}")
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        trail = os.path.join(tmp, "trail.log")
        with open(trail, "w") as f:
            f.writelines(json.dumps(o) + "\n" for _, o in EVENTS)
        args = [palisade, "logs", "scan", "-o", "jsonl", trail]
        for rule in rules:
            args += ["--rules", rule]
        out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    fired = {}
    for line in out.splitlines():
        alert = json.loads(line)
        if not alert["rule"].startswith(("AUDIT-", "LOG-")):
            fired.setdefault(alert["evidence"]["records"][0]["record"], []).append(alert["rule"][:8])
    bad = 0
    for n, (expect, _) in enumerate(EVENTS, 1):
        got = fired.get(n, [])
        ok = got == ([expect] if expect else [])
        bad += not ok
        print(f"event {n:2}: expected {expect or '-':8} fired {','.join(got) or '-'}{'' if ok else '  MISMATCH'}")
    print(f"{len(rules)} rules loaded, {len(EVENTS)} events, {bad} mismatches")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
