#!/usr/bin/env bash
# `make multinode` (issue 12): two Ray nodes on this machine, the worker lost under load; see scripts/multinode.py.
#   scripts/multinode.sh [--short] [--load-s S] [--kill-at-s S] [--sqlite] ...
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/python scripts/multinode.py "$@"
