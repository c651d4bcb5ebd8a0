#!/usr/bin/env python3
"""Writes N synthetic ~200-byte JSON audit events as JSON lines (varied actors, verbs,
resources, outcomes, times, ids, source addresses — never one event repeated).

usage: gen_synthetic.py N > events.jsonl
"""
import sys
n = int(sys.argv[1])
actors = ["alice@example.com", "bob@example.com", "system:serviceaccount:kube-system:deployment-controller",
          "carol", "dave@corp.example", "system:anonymous", "eve", "ci-bot"]
verbs = ["get", "list", "create", "update", "delete", "watch"]
res = ["pods", "secrets", "configmaps", "deployments", "namespaces", "roles"]
out = sys.stdout
buf = []
for i in range(n):
    x = (i * 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
    buf.append('{"time":"2026-11-29T10:%02d:%02d.%06dZ","actor":"%s","action":"%s","resource":"ns-%d/%s/%x","outcome":"%s","id":"%016x","src":"10.%d.%d.%d"}\n' % (
        (i // 60000) % 60, (i // 1000) % 60, x % 1000000, actors[(x >> 8) % 8], verbs[(x >> 16) % 6],
        (x >> 24) % 50, res[(x >> 32) % 6], (x >> 40) & 0xFFFFF, "failure" if x % 13 == 0 else "success", x,
        (x >> 8) & 255, (x >> 16) & 255, (x >> 24) & 255))
    if len(buf) == 100000:
        out.write("".join(buf)); buf = []
out.write("".join(buf))
