#!/usr/bin/python3
# A hostile SUT: after hello it forks until the kernel refuses (RLIMIT_NPROC of its sandbox), every child
# escaping into its own session (setsid) and sleeping, then it never answers. The sandbox must bound the forks,
# the case must end as "SUT hung", and teardown must end every child (the SUT's PID namespace ends with it).
import os
import sys
import time

print('{"hello":"netconform-sut/1","stack":"fork-bomb.py","families":["ipv4","ipv6"],"caps":["tcp"]}', flush=True)
sys.stdin.readline()
forked = 0
while forked < 10_000:
    try:
        pid = os.fork()
    except OSError as e:
        print(f"fork-bomb.py: forked {forked} children, then fork failed: {e.strerror}", file=sys.stderr, flush=True)
        break
    if pid == 0:
        os.setsid()
        time.sleep(600)
        os._exit(0)
    forked += 1
time.sleep(600)
