#!/usr/bin/env bash
# Debian packages the slow tests use: chromium (browser tests), iproute2 and iptables (testbed),
# nodejs (the player's jitter buffer and playout worklet run in V8 on their own).
# Installs only what is missing; as non-root it prints what is missing and lets those tests skip.
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
command -v chromium >/dev/null || need+=(chromium fonts-dejavu-core)
command -v ip >/dev/null || need+=(iproute2)
command -v node >/dev/null || need+=(nodejs)
command -v iptables >/dev/null || need+=(iptables)
if [ ${#need[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then
        echo "meshmeet: installing ${need[*]} (Debian)..." >&2
        apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
    else
        echo "meshmeet: missing ${need[*]}; the tests that need them will skip" >&2
    fi
fi
