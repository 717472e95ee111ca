#!/bin/sh
# Lua filter overhead A/B (both proxies loaded at once); options: bench/lua_overhead.sh --help.
exec /usr/bin/python3 "$(dirname "$0")/lua_overhead.py" "$@"
