#!/bin/sh
# A SUT that floods: megabytes of junk on stderr (kept truncated by the harness) and unsolicited event lines on
# stdout, forever, answering nothing. Every write blocks if the harness stops draining a pipe.
echo '{"hello":"netconform-sut/1","stack":"flood.sh","families":["ipv4"],"caps":["tcp"]}'
junk=$(head -c 65536 /dev/zero | tr '\0' 'x')
while :; do
    printf '%s\n' "$junk" >&2
    echo '{"event":"log"}'
done
