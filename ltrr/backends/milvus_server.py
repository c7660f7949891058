"""Run a real Milvus standalone server: the vector strategy's local default.

The ``milvus`` package on PyPI (2.3.5, January 2024; 2.3.9 has no Linux wheel)
carries a Milvus standalone binary with an embedded etcd, local storage and
RocksMQ, compressed with LZMA. ltrr does not use the package's Python launcher
(it writes its config into the data dir and decompresses 250 MB of binaries
into every data dir); it uses only the package's files:

* **Binaries** are decompressed once per package version into
  ``<var>/milvus-bin/<version>/`` under an exclusive file lock (several
  processes may start a server at once); a marker with the archive's sha256
  makes later starts skip it. Every data dir shares them.
* **Config**: :class:`milvus.MilvusServerConfig` renders the package's
  ``config.yaml.template`` into ``<data>/configs/milvus.yaml`` with this
  server's ports and storage paths under ``<data>/data`` (etcd, RocksMQ,
  segments and index files), logs under ``<data>/logs``.
* **Process**: ``<bin>/milvus run standalone`` with ``DEPLOY_MODE=STANDALONE``,
  ``METRICS_PORT`` (health and metrics over HTTP) and ``LD_LIBRARY_PATH`` set to
  the binaries; stdout and stderr go to ``<data>/milvus.log``. Ready means the
  health endpoint ``/healthz`` answers ``OK`` and the proxy port accepts
  connections. :meth:`MilvusStandaloneServer.stop` sends SIGINT (it exits in
  milliseconds; SIGTERM waits up to 20 s for clients to leave); data survive
  a SIGKILL as well (etcd and RocksMQ keep write-ahead logs).

What the binary does not let us choose (Milvus 2.3.5):

* The embedded etcd always binds ``127.0.0.1:2379`` and ``127.0.0.1:2380``,
  whatever the config says, so **one standalone server runs per machine** (per
  network namespace). Starting a second one fails at once naming the port.
* The proxy and the coordinators listen on **all interfaces** (Go's
  ``net.Listen(":port")``; the ``ip`` settings change only the advertised
  address). Firewall these ports on a machine reachable from elsewhere
  (README, "External Meilisearch or Milvus"), or point the strategy at a
  managed Milvus by ``uri``.

Command line (defaults from :mod:`ltrr.constants`: ``LTRR_VAR_DIR``, and the
port from ``LTRR_MILVUS_URI``)::

    python -m ltrr.backends.milvus_server start [--data-dir var/milvus] [--port 19530]
    python -m ltrr.backends.milvus_server status
    python -m ltrr.backends.milvus_server stop

``start`` runs the server in the background, writes ``<data>/milvus.pid`` and
returns once it is ready. Tests use :class:`MilvusStandaloneServer` on a temp
dir and free ports; ``stop`` then ``start`` brings it back on the same ports
and data.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import lzma
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence
from urllib.parse import urlparse

from ltrr import constants
from ltrr.backends._process import (
    ManagedServer,
    accepts_connections,
    check_port_free,
    daemon_pid,
    daemon_spawn,
    free_port,
    log_tail,
)
from ltrr.backends._process import daemon_stop as _daemon_stop
from ltrr.errors import BackendUnavailable, ConfigError

LOG_NAME = "milvus.log"
PID_NAME = "milvus.pid"
#: Bytes in the command line of a standalone server (a pidfile's pid must have them).
MARKER = b"milvus\x00run\x00standalone"
#: Where the embedded etcd listens, whatever is configured.
ETCD_PORTS = (2379, 2380)
#: The config template's port settings other than the proxy's (the package's names).
INTERNAL_PORTS = (
    "proxy_internal_port", "root_coord_port", "query_coord_port", "query_node_port",
    "index_coord_port", "index_node_port", "data_coord_port", "data_node_port",
)  # fmt: skip
#: Lease of a component's etcd session (``common.session.ttl``), seconds.
SESSION_TTL_S = 15
#: Default health/metrics port of a standalone server (the next free one is used if taken).
METRICS_PORT = 9091


def package_dir() -> Path:
    """The installed ``milvus`` package (raises :class:`ConfigError` if it is missing)."""
    try:
        import milvus
    except ImportError as exc:
        raise ConfigError("the `milvus` package (Milvus standalone) is not installed; run `make install`") from exc
    return Path(milvus.__file__).resolve().parent


def package_version() -> str:
    import milvus

    return str(milvus.__version__)


def bin_root() -> Path:
    """Where decompressed binaries live: ``$LTRR_MILVUS_BIN_DIR`` or ``<var>/milvus-bin``."""
    env = os.environ.get("LTRR_MILVUS_BIN_DIR", "")
    return Path(env) if env else Path(constants.resolve_path(f"{constants.VAR_DIR}/milvus-bin"))


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def install_binaries(root: Path | None = None) -> Path:
    """Decompress the package's binaries into ``<root>/<version>/`` once; return that directory.

    Each ``X.lzma`` becomes ``X`` (mode 0755), written to a temp file and renamed;
    ``X.sha256`` records the archive it came from, so an unchanged file is skipped
    and a reinstalled package version is decompressed again.
    """
    src = package_dir() / "data" / "bin"
    dest = (root or bin_root()) / package_version()
    archives = sorted(src.glob("*.lzma"))
    if not archives:
        raise ConfigError(f"no Milvus binaries in {src}; reinstall the `milvus` package")
    with _locked(dest.parent / f".{dest.name}.lock"):
        dest.mkdir(parents=True, exist_ok=True)
        for archive in archives:
            out = dest / archive.name[: -len(".lzma")]
            marker = out.with_name(out.name + ".sha256")
            digest = hashlib.sha256(archive.read_bytes()).hexdigest()
            if out.is_file() and marker.is_file() and marker.read_text().strip() == digest:
                continue
            tmp = out.with_name(out.name + ".tmp")
            with lzma.open(archive, "rb") as fin, open(tmp, "wb") as fout:
                shutil.copyfileobj(fin, fout, 1 << 20)
            tmp.chmod(0o755)
            os.replace(tmp, out)
            marker.write_text(digest + "\n")
    return dest


def _config_class() -> type:
    """The package's config renderer, probing ports with ``SO_REUSEADDR`` as Milvus (Go) binds them,
    so a restart is not refused a port that only has connections in TIME_WAIT."""
    from milvus import MilvusServerConfig

    class Config(MilvusServerConfig):  # type: ignore[misc]
        def try_bind_port(self, port: int) -> socket.socket | None:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("127.0.0.1", port))
                sock.listen()
                return sock
            except OSError:
                sock.close()
                return None

    return Config


def write_config(data_dir: Path, port: int, fixed_ports: dict[str, int] | None = None) -> dict[str, int]:
    """Render ``<data>/configs/milvus.yaml`` for a server whose proxy listens on ``port``.

    Internal ports named in ``fixed_ports`` are used as given; the others take the
    first free port from the template's default up (the package's resolver). Returns
    every port setting used, so a restart can reuse them.
    """
    cfg = _config_class()(data_dir=str(data_dir))
    cfg.set("proxy_port", int(port))
    for key, value in (fixed_ports or {}).items():
        cfg.set(key, int(value))
    # Sessions of a stopped server must expire before a restarted one serves its collections again;
    # 15 s (Milvus: 30) halves that wait and still leaves a loaded 2-core box ample time to renew leases.
    cfg.set("common.session.ttl", SESSION_TTL_S)
    # Advertise loopback, not "the first unicast address": clients and coordinators all live here.
    for component in ("rootCoord", "proxy", "queryCoord", "queryNode", "indexNode", "dataCoord", "dataNode"):
        cfg.set(f"{component}.ip", "127.0.0.1")
    cfg.resolve()
    return {key: int(cfg.get(key)) for key in ("proxy_port", *INTERNAL_PORTS)}


def server_env(bin_dir: Path, data_dir: Path, metrics_port: int) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DEPLOY_MODE="STANDALONE",
        METRICS_PORT=str(metrics_port),
        MILVUS_RUN_DIR=str(data_dir / "run"),
        LD_LIBRARY_PATH=":".join(p for p in (str(bin_dir), os.environ.get("LD_LIBRARY_PATH", "")) if p),
    )
    return env


def healthy(metrics_port: int, timeout_s: float = 1.0) -> bool:
    """True if the server's ``/healthz`` answers ``OK``."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/healthz", timeout=timeout_s) as resp:
            return b"OK" in resp.read()
    except (urllib.error.URLError, OSError):
        return False


def check_etcd_ports_free() -> None:
    hint = (
        ". Milvus 2.3.5's embedded etcd always binds 127.0.0.1:2379 and :2380, so only one server runs per "
        "machine; stop the other one (`make down`, or `python -m ltrr.backends.milvus_server stop`) first"
    )
    for p in ETCD_PORTS:
        check_port_free("127.0.0.1", p, "Milvus standalone", hint)


def _wait_ready(
    proc: subprocess.Popen[bytes] | None, port: int, metrics_port: int, log: Path, timeout_s: float
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise BackendUnavailable(f"milvus exited with code {proc.returncode}; log tail:\n{log_tail(log)}")
        if healthy(metrics_port) and accepts_connections("127.0.0.1", port, 0.5):
            return
        time.sleep(0.1)
    raise BackendUnavailable(f"milvus on port {port} not ready after {timeout_s:g} s; log tail:\n{log_tail(log)}")


def _prepare(data_dir: Path, port: int, fixed: dict[str, int] | None) -> tuple[list[str], dict[str, int], Path]:
    """Install binaries and write the config; return the argv, the port settings and the binaries' dir."""
    check_etcd_ports_free()
    check_port_free("127.0.0.1", port, "Milvus standalone")
    bin_dir = install_binaries()
    ports = write_config(data_dir, port, fixed)
    return [str(bin_dir / "milvus"), "run", "standalone"], ports, bin_dir


class MilvusStandaloneServer(ManagedServer):
    """A Milvus standalone server process owned by the caller (tests, scripts, benchmarks).

    ``data_dir=None`` makes a temp dir that :meth:`close` deletes. The proxy port
    (a free one unless given), the internal ports and the metrics port are chosen
    on the first start and kept, so :meth:`stop` then :meth:`start` brings the
    same server back on the same URI and data. Only one runs per machine (see the
    module docstring). ``with MilvusStandaloneServer() as srv: MilvusClient(uri=srv.uri)``.
    """

    #: SIGINT stops it in milliseconds; SIGTERM drains clients for up to 20 s. Either keeps the data.
    stop_signal = signal.SIGINT

    def __init__(
        self, data_dir: str | Path | None = None, *, port: int | None = None, startup_timeout_s: float = 180.0
    ) -> None:
        if port is not None and not 1 <= port <= 65535:
            raise ValueError(f"`port` must be in [1, 65535], got {port}")
        super().__init__(data_dir, host="127.0.0.1", port=port, temp_prefix="ltrr-milvus-", log_name=LOG_NAME)
        self.startup_timeout_s = startup_timeout_s
        self.metrics_port = free_port()
        self._ports: dict[str, int] | None = None

    @property
    def uri(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _run(self) -> None:
        cmd, self._ports, bin_dir = _prepare(self.data_dir, self.port, self._ports)
        self._launch(
            cmd,
            lambda proc: _wait_ready(proc, self.port, self.metrics_port, self.log_path, self.startup_timeout_s),
            cwd=self.data_dir,
            env=server_env(bin_dir, self.data_dir, self.metrics_port),
        )


# -- daemon management (CLI) ----------------------------------------------------
def _state_path(data_dir: Path) -> Path:
    return data_dir / "ports.json"


def daemon_start(data_dir: Path, port: int, *, timeout_s: float = 180.0) -> int:
    """Start a background server on ``data_dir`` (idempotent); return its pid."""
    data = data_dir.resolve()
    data.mkdir(parents=True, exist_ok=True)
    pidfile, log_path, state = data / PID_NAME, data / LOG_NAME, _state_path(data)
    pid = daemon_pid(pidfile, MARKER)
    if pid is not None:
        saved = json.loads(state.read_text())
        _wait_ready(None, saved["proxy_port"], saved["metrics_port"], log_path, timeout_s)
        return pid
    metrics = METRICS_PORT if not accepts_connections("127.0.0.1", METRICS_PORT, 0.2) else free_port()
    cmd, ports, bin_dir = _prepare(data, port, None)
    state.write_text(json.dumps({**ports, "metrics_port": metrics}) + "\n")
    return daemon_spawn(
        cmd, pidfile, log_path, lambda proc: _wait_ready(proc, port, metrics, log_path, timeout_s),
        cwd=data, env=server_env(bin_dir, data, metrics),
    )  # fmt: skip


def daemon_stop(data_dir: Path, timeout_s: float = 30.0) -> bool:
    """Stop the server named by the pidfile (SIGINT, SIGKILL after ``timeout_s``); False if none was running."""
    return _daemon_stop(data_dir / PID_NAME, MARKER, sig=signal.SIGINT, timeout_s=timeout_s)


def daemon_status(data_dir: Path, port: int) -> dict[str, object]:
    pid = daemon_pid(data_dir / PID_NAME, MARKER)
    try:
        metrics = int(json.loads(_state_path(data_dir).read_text())["metrics_port"])
    except (OSError, ValueError, KeyError):
        metrics = METRICS_PORT
    return {
        "running": pid is not None,
        "pid": pid,
        "uri": f"http://127.0.0.1:{port}",
        "ready": pid is not None and healthy(metrics) and accepts_connections("127.0.0.1", port),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parsed = urlparse(constants.MILVUS_URI)
    ap = argparse.ArgumentParser(prog="python -m ltrr.backends.milvus_server", description=__doc__.split("\n")[0])
    ap.add_argument("command", choices=["start", "stop", "status", "install"])
    ap.add_argument("--data-dir", default=f"{constants.VAR_DIR}/milvus", help="data dir (default: var/milvus)")
    ap.add_argument("--port", type=int, default=parsed.port or 19530, help="proxy port (from LTRR_MILVUS_URI)")
    args = ap.parse_args(argv)
    data = Path(constants.resolve_path(args.data_dir))
    try:
        if args.command == "install":
            print(install_binaries())
        elif args.command == "start":
            pid = daemon_start(data, args.port)
            print(json.dumps({"pid": pid, "uri": f"http://127.0.0.1:{args.port}"}))
        elif args.command == "stop":
            print("stopped" if daemon_stop(data) else "not running")
        else:
            status = daemon_status(data, args.port)
            print(json.dumps(status))
            return 0 if status["running"] and status["ready"] else 1
    except (BackendUnavailable, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
