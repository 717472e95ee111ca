#!/bin/sh
# istio.stats + istio.metadata_exchange overhead A/B (both proxies loaded at once); options: --help.
exec /usr/bin/python3 "$(dirname "$0")/istio_stats_ab.py" "$@"
