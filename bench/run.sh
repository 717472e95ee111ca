#!/bin/sh
# Proxy benchmark entry point; the work is done by run.py (Python standard library only).
# Options: bench/run.sh --help, method: bench/README.md. `bench/run.sh mesh ...`: interception cost.
exec /usr/bin/python3 "$(dirname "$0")/run.py" "$@"
