#!/bin/sh
# A SUT that dies on its first request, like a stack segfaulting: the case fails "SUT crashed" with the tail of
# this stderr, whose last line is the segfault message.
echo '{"hello":"netconform-sut/1","stack":"crash.sh","families":["ipv4"],"caps":["tcp"]}'
read -r request
id=$(printf '%s\n' "$request" | sed -n 's/.*"id"[[:space:]]*:[[:space:]]*\([0-9][0-9]*\).*/\1/p')
echo "crash.sh: crashing on request id ${id:-none}" >&2
echo 'segfault in tcp_input (simulated)' >&2
exit 139
