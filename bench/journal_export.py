#!/usr/bin/env python3
"""Converts JSON lines (stdin) to systemd journal export format (stdout), one journal
entry per line with MESSAGE set to the line, for the journal FSS baseline."""
import sys
boot = "3d1219c7c4c5404aaa1f6d2a48adfda4"
import time
t = int(time.time() * 1e6)
out = sys.stdout.buffer
for line in sys.stdin.buffer:
    line = line.rstrip(b"\n")
    if not line:
        continue
    t += 1
    out.write(b"__REALTIME_TIMESTAMP=%d\n__MONOTONIC_TIMESTAMP=%d\n_BOOT_ID=%s\nSYSLOG_IDENTIFIER=stele-bench\nMESSAGE=" % (t, t, boot.encode()))
    out.write(line)
    out.write(b"\n\n")
