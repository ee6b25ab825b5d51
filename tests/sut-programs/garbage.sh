#!/bin/sh
# A SUT whose first stdout line is not a JSON object: a protocol error that must name the line.
echo 'hello world'
exec sleep 60
