"""Run a Milvus Lite server: the vector strategy's lightweight option (by ``uri``).

The local default is a real Milvus standalone server (:mod:`ltrr.backends.milvus_server`);
Milvus Lite 3.2 is a pure-Python engine that scans every row on each search, so it is
kept for development machines where the standalone binary cannot run.

Milvus Lite (the ``milvus-lite`` package) stores a database in a directory that
only one process may open, so ltrr runs it as **one local gRPC server**::

    python -m milvus_lite server --data-dir DIR --host 127.0.0.1 --port PORT

and every client connects with ``MilvusClient(uri="http://127.0.0.1:PORT")``,
exactly as to a standalone Milvus (so the same code serves a real Milvus in
Kubernetes: only ``uri``/``token`` change).

Server process settings (decided here):

* ``OMP_NUM_THREADS=1`` (``omp_threads``): faiss builds and searches HNSW with
  OpenMP; on the 2-core box a second thread did not speed up a 60k-vector HNSW
  build and its spinning workers slow the embedder and Ray down.
* stdout/stderr go to ``<data>/milvus-lite.log``.
* :meth:`MilvusLiteServer.stop` sends SIGINT first: the server then stops gRPC
  (5 s grace) and closes the database cleanly; SIGKILL after ``timeout_s``.
  Data survive a kill too (Milvus Lite has a write-ahead log).
* Ready means: the server logged "listening on" and the port accepts TCP
  connections (Milvus Lite opens the database before it binds the port).
  Starting on a port that already answers fails at once, so a stale server
  is never mistaken for the new one.

Command line (defaults from :mod:`ltrr.constants`: ``LTRR_VAR_DIR``; point the
vector strategy's ``uri`` at it)::

    python -m ltrr.backends.milvus_lite_server start [--data-dir var/milvus-lite] [--port 19540]
    python -m ltrr.backends.milvus_lite_server status
    python -m ltrr.backends.milvus_lite_server stop

``start`` runs the server in the background, writes ``<data>/milvus-lite.pid``
and returns once the port accepts connections. Tests use
:class:`MilvusLiteServer`: a server on a free port in a temp dir that can be
stopped and started again on the same port and data.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Sequence

from ltrr import constants
from ltrr.backends._process import (
    ManagedServer,
    accepts_connections,
    check_port_free,
    daemon_pid,
    daemon_spawn,
    log_tail,
)
from ltrr.backends._process import daemon_stop as _daemon_stop
from ltrr.backends._process import free_port as free_port  # re-exported: part of this module's API
from ltrr.errors import BackendUnavailable

LOG_NAME = "milvus-lite.log"
PID_NAME = "milvus-lite.pid"
#: Bytes in the command line of a Milvus Lite server (a pidfile's pid must have them).
MARKER = b"milvus_lite"
#: Default port of the CLI's server: beside, not on, the standalone server's 19530.
LITE_PORT = 19540


def server_command(data_dir: Path, host: str, port: int, max_workers: int = 10) -> list[str]:
    """The argv that starts the Milvus Lite gRPC server with this interpreter."""
    return [
        sys.executable, "-m", "milvus_lite", "server", "--data-dir", str(data_dir),
        "--host", host, "--port", str(port), "--max-workers", str(max_workers),
    ]  # fmt: skip


def server_env(omp_threads: int = 1) -> dict[str, str]:
    """The server's environment: ours plus the thread limits of the module docstring."""
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = str(omp_threads)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _listening_since(log: Path, offset: int) -> bool:
    """True once the server printed its "listening on" line after byte ``offset`` of its log."""
    try:
        with open(log, "rb") as fh:
            fh.seek(offset)
            return b"listening on" in fh.read()
    except OSError:
        return False


def _wait_ready(
    host: str, port: int, proc: subprocess.Popen[bytes] | None, log: Path, timeout_s: float, log_offset: int | None,
) -> None:  # fmt: skip
    """Wait until the port accepts connections (and, for a process we started, it logged "listening on")."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise BackendUnavailable(f"milvus-lite exited with code {proc.returncode}; log tail:\n{log_tail(log)}")
        if (log_offset is None or _listening_since(log, log_offset)) and accepts_connections(host, port, 0.5):
            return
        time.sleep(0.05)
    raise BackendUnavailable(
        f"milvus-lite on {host}:{port} not ready after {timeout_s:g} s; log tail:\n{log_tail(log)}"
    )


def _log_size(log: Path) -> int:
    try:
        return log.stat().st_size
    except OSError:
        return 0


class MilvusLiteServer(ManagedServer):
    """A Milvus Lite server process owned by the caller (tests, scripts, benchmarks).

    ``data_dir=None`` makes a temp dir that :meth:`close` deletes. The port is
    chosen once (a free port unless given), so :meth:`stop` then :meth:`start`
    brings the same server back on the same URI and data. :meth:`stop` sends
    SIGINT (clean shutdown), or SIGKILL with ``kill=True`` or after ``timeout_s``.
    Use as a context manager: ``with MilvusLiteServer() as srv: MilvusClient(uri=srv.uri)``.
    """

    stop_signal = signal.SIGINT

    def __init__(
        self,
        data_dir: str | Path | None = None,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        omp_threads: int = 1,
        max_workers: int = 10,
        startup_timeout_s: float = 60.0,
    ) -> None:
        if port is not None and not 1 <= port <= 65535:
            raise ValueError(f"`port` must be in [1, 65535], got {port}")
        if omp_threads < 1:
            raise ValueError(f"`omp_threads` must be >= 1, got {omp_threads}")
        super().__init__(data_dir, host=host, port=port, temp_prefix="ltrr-milvus-", log_name=LOG_NAME)
        self.omp_threads = omp_threads
        self.max_workers = max_workers
        self.startup_timeout_s = startup_timeout_s

    @property
    def uri(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _run(self) -> None:
        """Start the process and wait until it logged "listening on" and the port accepts connections."""
        check_port_free(self.host, self.port, "milvus-lite")
        cmd = server_command(self.data_dir, self.host, self.port, self.max_workers)
        offset = _log_size(self.log_path)
        self._launch(
            cmd,
            lambda proc: _wait_ready(self.host, self.port, proc, self.log_path, self.startup_timeout_s, offset),
            env=server_env(self.omp_threads),
        )


# -- daemon management (CLI) ----------------------------------------------------
def daemon_start(data_dir: Path, host: str, port: int, *, omp_threads: int = 1, timeout_s: float = 60.0) -> int:
    """Start a background server on ``data_dir`` (idempotent); return its pid."""
    data = data_dir.resolve()
    data.mkdir(parents=True, exist_ok=True)
    pidfile, log_path = data / PID_NAME, data / LOG_NAME
    pid = daemon_pid(pidfile, MARKER)
    if pid is not None:
        _wait_ready(host, port, None, log_path, timeout_s, None)
        return pid
    check_port_free(host, port, "milvus-lite")
    offset = _log_size(log_path)
    return daemon_spawn(
        server_command(data, host, port), pidfile, log_path,
        lambda proc: _wait_ready(host, port, proc, log_path, timeout_s, offset), env=server_env(omp_threads),
    )  # fmt: skip


def daemon_stop(data_dir: Path, timeout_s: float = 20.0) -> bool:
    """Stop the server named by the pidfile (SIGINT, SIGKILL after ``timeout_s``); False if none was running."""
    return _daemon_stop(data_dir / PID_NAME, MARKER, sig=signal.SIGINT, timeout_s=timeout_s)


def daemon_status(data_dir: Path, host: str, port: int) -> dict[str, object]:
    pid = daemon_pid(data_dir / PID_NAME, MARKER)
    return {
        "running": pid is not None,
        "pid": pid,
        "uri": f"http://{host}:{port}",
        "ready": accepts_connections(host, port),
    }


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ltrr.backends.milvus_lite_server", description=__doc__.split("\n")[0])
    ap.add_argument("command", choices=["start", "stop", "status"])
    ap.add_argument("--data-dir", default=f"{constants.VAR_DIR}/milvus-lite", help="database dir (var/milvus-lite)")
    ap.add_argument("--host", default="127.0.0.1", help="listen address")
    ap.add_argument("--port", type=int, default=LITE_PORT, help=f"listen port (default {LITE_PORT})")
    ap.add_argument("--omp-threads", type=int, default=1, help="OMP_NUM_THREADS of the server (faiss)")
    args = ap.parse_args(argv)
    data = Path(args.data_dir)
    try:
        if args.command == "start":
            pid = daemon_start(data, args.host, args.port, omp_threads=args.omp_threads)
            print(json.dumps({"pid": pid, "uri": f"http://{args.host}:{args.port}"}))
        elif args.command == "stop":
            print("stopped" if daemon_stop(data) else "not running")
        else:
            status = daemon_status(data, args.host, args.port)
            print(json.dumps(status))
            return 0 if status["running"] and status["ready"] else 1
    except BackendUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
