#!/bin/sh
# A SUT that says hello and then never answers: every request ends "SUT hung" at timeout_ms + 1 s.
# It does not even end at stdin EOF, so the harness has to kill it.
echo '{"hello":"netconform-sut/1","stack":"hang.sh","families":["ipv4"],"caps":["tcp"]}'
while read -r _request; do :; done
exec sleep 60
