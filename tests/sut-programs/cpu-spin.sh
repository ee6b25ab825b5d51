#!/bin/sh
# A hostile SUT: after hello it reads one request and spins on the CPU forever (two busy processes). The case
# must end as "SUT hung" at the request's deadline, and nothing may keep running afterwards.
echo '{"hello":"netconform-sut/1","stack":"cpu-spin.sh","families":["ipv4","ipv6"],"caps":["tcp"]}'
read -r _request
echo "cpu-spin.sh: spinning" >&2
(while :; do :; done) &
while :; do :; done
