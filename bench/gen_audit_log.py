# A Kubernetes audit log (log backend, JSON lines) for the scan benchmark
# (BENCHMARKS.md, issue 10). Usage: python3 bench/gen_audit_log.py EVENTS
# mostly reads and lease renewals, as a real cluster writes, with a few
# writes that rules fire on.
import json, random, sys
random.seed(5)
n = int(sys.argv[1])
users = ["system:kube-controller-manager", "system:kube-scheduler", "system:node:node-1", "system:serviceaccount:kube-system:coredns", "alice", "bob"]
reads = [("pods", ""), ("configmaps", ""), ("secrets", ""), ("endpoints", ""), ("nodes", ""), ("leases", "coordination.k8s.io"), ("deployments", "apps")]
for i in range(n):
    r = random.random()
    user = random.choice(users)
    if r < 0.80:
        verb = random.choice(["get", "list", "watch"]); res, grp = random.choice(reads); code = 200; obj = None
    elif r < 0.97:
        verb = random.choice(["update", "patch"]); res, grp = ("leases", "coordination.k8s.io"); code = 200; obj = None
    elif r < 0.995:
        verb = "create"; res, grp = ("pods", ""); code = 201
        obj = {"kind": "Pod", "apiVersion": "v1", "metadata": {"name": f"web-{i}", "namespace": "shop", "labels": {"app": "web"}}, "spec": {"containers": [{"name": "app", "image": "nginx:1.27", "ports": [{"containerPort": 80}]}]}}
    else:
        verb = "delete"; res, grp = ("networkpolicies", "networking.k8s.io"); code = 200; obj = None
    ev = {"kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "RequestResponse" if obj else "Metadata",
          "auditID": f"{i:08x}-0000-4000-8000-000000000000", "stage": "ResponseComplete",
          "requestURI": f"/api/v1/namespaces/shop/{res}/x{i % 97}", "verb": verb,
          "user": {"username": user, "groups": ["system:authenticated"]},
          "sourceIPs": [f"10.0.{i % 7}.{i % 250 + 1}"], "userAgent": "kube-controller-manager/v1.31.0 (linux/amd64) kubernetes/abcdef0",
          "objectRef": {"resource": res, "namespace": "shop", "name": f"x{i % 97}", "apiVersion": "v1", **({"apiGroup": grp} if grp else {})},
          "responseStatus": {"metadata": {}, "code": code},
          "requestReceivedTimestamp": f"2026-11-30T10:{(i//6000)%60:02d}:{(i//100)%60:02d}.{i%100:02d}0000Z",
          "stageTimestamp": f"2026-11-30T10:{(i//6000)%60:02d}:{(i//100)%60:02d}.{i%100:02d}1000Z",
          "annotations": {"authorization.k8s.io/decision": "allow", "authorization.k8s.io/reason": "RBAC: allowed by ClusterRoleBinding \"system:kube-controller-manager\""}}
    if obj:
        ev["requestObject"] = obj; ev["responseObject"] = obj
    print(json.dumps(ev, separators=(",", ":")))
