#!/usr/bin/env python3
"""Writes Kubernetes audit events as JSON lines for benchmarks: the real events of
../shared/data/k8s-audit (panther-analysis native, falcosecurity-falco), repeated in
random order until the output reaches --mb megabytes, each copy with a fresh auditID
(inserted where a sample has none), so no two lines are equal.

usage: gen_k8s.py --mb 200 [--seed 1] [--shared ../shared] > events.jsonl
"""
import argparse, glob, json, os, random, sys, uuid

ap = argparse.ArgumentParser()
ap.add_argument("--mb", type=float, default=200)
ap.add_argument("--seed", type=int, default=1)
ap.add_argument("--shared", default=os.path.join(os.path.dirname(__file__), "..", "..", "shared"))
a = ap.parse_args()
root = os.path.join(a.shared, "data", "k8s-audit")
events = []
for path in [os.path.join(root, "panther-analysis_k8s-audit-native.jsonl")] + sorted(
        glob.glob(os.path.join(root, "falcosecurity-falco", "*", "*.json"))):
    with open(path, "rb") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                e = json.loads(line)
            except ValueError:
                continue
            if isinstance(e, dict) and e.get("kind") == "Event":
                events.append(line.decode())
if not events:
    sys.exit("no Kubernetes audit events found under " + root)
rng = random.Random(a.seed)
limit = int(a.mb * 1e6)
out = sys.stdout
written = 0
n = 0
while written < limit:
    line = rng.choice(events)
    e = json.loads(line)
    new = str(uuid.UUID(int=rng.getrandbits(128)))
    # Replace (or, where a sample lacks one, insert) the id textually so the rest of
    # the event keeps its exact bytes.
    if "auditID" in e:
        s = line.replace('"auditID":"%s"' % e["auditID"], '"auditID":"%s"' % new, 1)
    else:
        s = '{"auditID":"%s",' % new + line[1:]
    out.write(s)
    out.write("\n")
    written += len(s) + 1
    n += 1
sys.stderr.write("%d events, %d bytes\n" % (n, written))
