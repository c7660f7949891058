#!/usr/bin/env bash
# Start everything ltrr needs on this machine and return once gRPC answers:
# Meilisearch and Milvus standalone (one local server each), the catalog and
# indexes (incremental: a re-run only indexes what changed), a Ray head node and
# the Serve application from deployments/serve_config.yaml. Each stage prints
# how long it took.
# Point it at external servers with LTRR_MEILI_URL / LTRR_MILVUS_URI (see README).
set -euo pipefail
cd "$(dirname "$0")/.."
export LTRR_HOME=${LTRR_HOME:-$PWD}
export RAY_AUTH_MODE=${RAY_AUTH_MODE:-disabled}
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
# The gRPC proxy's largest message: Ray reads it from the environment of `ray start` (default 2 GiB).
export RAY_SERVE_GRPC_MAX_MESSAGE_SIZE=${RAY_SERVE_GRPC_MAX_MESSAGE_SIZE:-4194304}
PY=.venv/bin/python
BIN=.venv/bin
CONFIG=${LTRR_CONFIG:-deployments/serve_config.yaml}
mkdir -p var/log

t0=$(date +%s)
ts=$t0
stage() {  # print the time the previous stage took, then the next stage's name
  local now; now=$(date +%s)
  [ -n "${1:-}" ] && echo "    ($(( now - ts )) s)"
  ts=$now
  [ -n "${2:-}" ] && echo "==> $2"
  return 0
}

stage "" "API token (var/secrets/ltrr-token, mode 0600)"
$PY -m ltrr.auth ensure var/secrets/ltrr-token
stage done "Meilisearch"
$PY -m ltrr.backends.meili_server start
stage done "Milvus standalone (first start decompresses its binaries into var/milvus-bin)"
$PY -m ltrr.backends.milvus_server start
# Strategies indexed in the background (default: vector, whose first run embeds the whole catalog):
# ltrr serves as soon as the others are indexed; `ltrr health` and every answer say what is still
# missing. LTRR_BACKGROUND_INDEX= (empty) indexes everything before serving.
BACKGROUND=${LTRR_BACKGROUND_INDEX-vector}
skip=() only=()
for s in $BACKGROUND; do skip+=(--skip "$s"); only+=(--only "$s"); done
stage done "catalog and indexes${BACKGROUND:+ except $BACKGROUND}"
$BIN/ltrr ingest --config "$CONFIG" ${LTRR_MAX_ARTISTS:+--max-artists "$LTRR_MAX_ARTISTS"} "${skip[@]}"
if [ -n "$BACKGROUND" ]; then
  stage done "index $BACKGROUND in the background (log: var/log/ingest-background.log)"
  if [ -f var/ingest-background.pid ] && kill -0 "$(cat var/ingest-background.pid)" 2>/dev/null; then
    echo "    already running (pid $(cat var/ingest-background.pid))"
  else
    # The first run builds the ONNX embedder (~10 s) and embeds the catalog on both cores (~5 min).
    nohup $BIN/ltrr ingest --config "$CONFIG" --skip-catalog "${only[@]}" >var/log/ingest-background.log 2>&1 &
    echo $! >var/ingest-background.pid
  fi
fi

stage done "Ray head node"
# Prometheus metrics (ltrr/metrics.py, exported as ray_ltrr_*) at http://127.0.0.1:$METRICS_PORT/metrics;
# only a head started here gets the port (a running one keeps its own: `ray stop` first to change it).
METRICS_PORT=${LTRR_METRICS_PORT:-8080}
if ! $BIN/ray status >/dev/null 2>&1; then
  $BIN/ray start --head --num-cpus=2 --dashboard-host=127.0.0.1 --disable-usage-stats \
    --metrics-export-port="$METRICS_PORT" >var/log/ray-start.log 2>&1 \
    || { cat var/log/ray-start.log; exit 1; }
fi
stage done "Serve application"
$BIN/serve deploy "$CONFIG" >var/log/serve-deploy.log 2>&1 || { cat var/log/serve-deploy.log; exit 1; }

stage done ""
echo -n "==> waiting for gRPC health on 127.0.0.1:9000 "
for _ in $(seq 1 180); do
  if $BIN/ltrr health --timeout 2 >/dev/null 2>&1; then
    echo " SERVING after $(( $(date +%s) - ts )) s"
    echo "==> ltrr is up: $(( $(date +%s) - t0 )) s in all"
    $BIN/ltrr health --timeout 5 | sed 1d || true  # any index still catching up in the background
    echo "==> every call needs the token: the ltrr CLI and LtrrClient read var/secrets/ltrr-token (or \$LTRR_TOKEN);"
    echo "    grpcurl -H \"authorization: Bearer \$(cat var/secrets/ltrr-token)\" -plaintext 127.0.0.1:9000 ..."
    echo "==> example: ltrr search 'artists like radiohead' -k 5"
    $BIN/ltrr search "artists like radiohead" -k 5
    echo "==> example: ltrr search 'radiohaed' (typo) -k 5"
    $BIN/ltrr search "radiohaed" -k 5
    exit 0
  fi
  echo -n "."
  sleep 2
done
echo " timed out"; $BIN/serve status || true; exit 1
