#!/bin/sh
# A broken adapter for `netconform sut-check` tests: the kernel adapter given as $1, with every "EAGAIN" in its
# replies rewritten to "ETIMEDOUT" (a plausible mistake: the contract's name for "nothing by the deadline" is
# EAGAIN). Everything else it says is right, so the first deviation is the first EAGAIN the transcript expects.
"$1" | sed -u 's/"EAGAIN"/"ETIMEDOUT"/g'
