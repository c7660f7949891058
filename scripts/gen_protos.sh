#!/usr/bin/env bash
# Regenerate ltrr/v1/*_pb2*.py from protos/. The generated modules are committed,
# so Ray's gRPC proxy and every replica can import them from the installed package.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
"$PY" -m grpc_tools.protoc -Iprotos --python_out=. --pyi_out=. --grpc_python_out=. protos/ltrr/v1/search.proto
touch ltrr/v1/__init__.py
