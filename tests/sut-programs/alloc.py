#!/usr/bin/python3
# A hostile SUT: after hello it allocates (and touches) memory without bound. The sandbox's address-space limit
# (RLIMIT_AS) stops it: Python raises MemoryError and exits, so the case fails "SUT crashed" with this stderr.
import sys

print('{"hello":"netconform-sut/1","stack":"alloc.py","families":["ipv4","ipv6"],"caps":["tcp"]}', flush=True)
sys.stdin.readline()
hoard = []
print("alloc.py: allocating without bound", file=sys.stderr, flush=True)
while True:
    hoard.append(b"\x01" * (64 << 20))  # written, so every page is resident (calloc'd zeros would not be)
