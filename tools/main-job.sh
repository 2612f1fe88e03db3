#!/bin/sh
# README's first command: set up, build, and relay 30 real messages through
# three local SMTP servers (10 each).
set -eu
cd "$(dirname "$0")/.."
sh tools/setup.sh
exec sh tests/main-job.sh "$(pwd)"
