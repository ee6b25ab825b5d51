#!/bin/sh
# A SUT that never speaks: no hello within the protocol's 5 s (docs/driver-protocol.md, "Hello").
# The harness must give up on it and end it.
exec sleep 60
