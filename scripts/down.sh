#!/usr/bin/env bash
# Stop everything scripts/up.sh started. Safe to run twice.
set -uo pipefail
cd "$(dirname "$0")/.."
export RAY_AUTH_MODE=${RAY_AUTH_MODE:-disabled}
PY=.venv/bin/python
if [ -f var/ingest-background.pid ]; then  # incremental: the next `make up` carries on from its watermark
  kill "$(cat var/ingest-background.pid)" 2>/dev/null && echo "stopped the background ingest"
  rm -f var/ingest-background.pid
fi
[ -x .venv/bin/serve ] && .venv/bin/serve shutdown -y >/dev/null 2>&1
[ -x .venv/bin/ray ] && .venv/bin/ray stop --force >/dev/null 2>&1
[ -x $PY ] && $PY -m ltrr.backends.milvus_server stop
[ -x $PY ] && $PY -m ltrr.backends.meili_server stop
echo "ltrr stopped"
