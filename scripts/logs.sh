#!/usr/bin/env bash
# Follow the Serve logs of the running application (Ray writes them per replica).
set -uo pipefail
dir=/tmp/ray/session_latest/logs/serve
[ -d "$dir" ] || { echo "no Serve logs at $dir: is ltrr up?"; exit 1; }
exec tail -n 20 -F "$dir"/*.log
