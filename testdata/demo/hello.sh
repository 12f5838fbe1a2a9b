#!/bin/sh
echo "$GREETING"
echo "running as $(id -un) in $(pwd)"
cat /app/built.txt /app/shout.txt
