"""Process management shared by the Meilisearch and Milvus Lite server wrappers.

Two ways to run a server:

* :class:`ManagedServer`: a child process owned by the caller (tests, benchmarks).
  :meth:`~ManagedServer.stop` sends the server's :attr:`~ManagedServer.stop_signal`
  (SIGKILL with ``kill=True`` or after ``timeout_s``); the data dir and port are kept,
  so ``start`` brings the same server back; :meth:`~ManagedServer.close` also deletes
  a temp data dir. A context manager: ``with Server() as srv: ...``.
* Daemon helpers for the command lines: :func:`daemon_spawn` starts a detached
  server and writes its pidfile, :func:`daemon_pid` and :func:`daemon_stop` find and
  stop it by that pidfile. A pid counts as the server only while it is alive (not a
  zombie) and its command line contains the server's ``marker``, so a recycled pid
  is never signalled.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Callable, ClassVar, Mapping, Self, Sequence

from ltrr.errors import BackendUnavailable

#: Waits until a just-started process serves (raises if it does not); gets the process.
WaitFn = Callable[["subprocess.Popen[bytes]"], None]


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (bind to port 0 and release it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def accepts_connections(host: str, port: int, timeout_s: float = 0.5) -> bool:
    """True if a TCP connection to ``host:port`` succeeds."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def check_port_free(host: str, port: int, server: str, hint: str = "") -> None:
    """Raise :class:`~ltrr.errors.BackendUnavailable` if something already answers on ``host:port``, so a
    stale server is never mistaken for the one about to start (``hint`` says what to do about it)."""
    if accepts_connections(host, port, 0.2):
        raise BackendUnavailable(f"cannot start {server}: {host}:{port} is already in use by another process{hint}")


def log_tail(path: Path, n: int = 1500) -> str:
    """The last ``n`` characters of a log file (``""`` if it cannot be read)."""
    try:
        return path.read_text(errors="replace")[-n:]
    except OSError:
        return ""


def spawn(
    cmd: Sequence[str], log_path: Path, *, cwd: Path | None = None, env: Mapping[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start ``cmd`` in its own session, stdout and stderr appended to ``log_path``, no stdin."""
    with open(log_path, "ab") as log:
        return subprocess.Popen(list(cmd), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                cwd=cwd, env=env, start_new_session=True)  # fmt: skip


def terminate(
    proc: subprocess.Popen[bytes], *, kill: bool = False, timeout_s: float = 20.0, sig: int = signal.SIGTERM
) -> None:
    """Stop ``proc`` (no-op if it exited): ``sig``, or SIGKILL with ``kill=True`` or after ``timeout_s``."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGKILL if kill else sig)
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# -- pidfiles (daemons) -----------------------------------------------------------
def pid_alive(pid: int, marker: bytes) -> bool:
    """True if ``pid`` is a live (non-zombie) process whose command line contains ``marker``."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            state = fh.read().rsplit(")", 1)[1].split()[0]
        if state == "Z":
            return False
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return marker in fh.read()
    except (OSError, IndexError):
        return False


def read_pid(pidfile: Path) -> int | None:
    """The pid written in ``pidfile``; ``None`` if it is missing or unreadable."""
    try:
        return int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return None


def daemon_pid(pidfile: Path, marker: bytes) -> int | None:
    """The pid of ``pidfile`` if that process is running and is the server (:func:`pid_alive`), else ``None``."""
    pid = read_pid(pidfile)
    return pid if pid is not None and pid_alive(pid, marker) else None


def daemon_spawn(
    cmd: Sequence[str],
    pidfile: Path,
    log_path: Path,
    wait: WaitFn,
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> int:
    """Start a detached server, write its pid to ``pidfile`` and ``wait`` for it; return the pid.

    If ``wait`` raises, the process is killed and the pidfile removed.
    """
    proc = spawn(cmd, log_path, cwd=cwd, env=env)
    pidfile.write_text(f"{proc.pid}\n")
    try:
        wait(proc)
    except BaseException:
        proc.kill()
        proc.wait()
        pidfile.unlink(missing_ok=True)
        raise
    proc.returncode = 0  # detached on purpose: silence Popen's "still running" ResourceWarning
    return proc.pid


def daemon_stop(pidfile: Path, marker: bytes, *, sig: int = signal.SIGTERM, timeout_s: float = 20.0) -> bool:
    """Stop the server named by ``pidfile`` (``sig``, SIGKILL after ``timeout_s``); False if none was running.

    The pidfile is removed either way.
    """
    pid = daemon_pid(pidfile, marker)
    if pid is None:
        pidfile.unlink(missing_ok=True)
        return False
    os.kill(pid, sig)
    deadline = time.monotonic() + timeout_s
    while pid_alive(pid, marker):
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 5.0
        time.sleep(0.05)
    pidfile.unlink(missing_ok=True)
    return True


# -- owned servers ----------------------------------------------------------------
class ManagedServer:
    """A server process owned by the caller, listening on ``host:port``; subclasses implement :meth:`_run`.

    ``data_dir=None`` makes a temp dir (``temp_prefix``) that :meth:`close` deletes;
    the server's output goes to ``<data_dir>/<log_name>``. The port is chosen once
    (a free port unless given), so :meth:`stop` then :meth:`start` brings the same
    server back on the same address and data.
    """

    #: Signal of a normal :meth:`stop` (SIGKILL follows after its ``timeout_s``).
    stop_signal: ClassVar[int] = signal.SIGTERM

    def __init__(
        self, data_dir: str | Path | None, *, host: str, port: int | None, temp_prefix: str, log_name: str
    ) -> None:
        self._own_dir = data_dir is None
        base = Path(tempfile.mkdtemp(prefix=temp_prefix)) if data_dir is None else Path(data_dir)
        self.data_dir = base.resolve()
        self.host = host
        self.port = port if port is not None else free_port(host)
        self.log_path = self.data_dir / log_name
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> Self:
        """Start the process (no-op if running) and wait until it serves (see :meth:`_run`)."""
        if self.is_running():
            return self
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._run()
        return self

    def _run(self) -> None:
        """Start the server with :meth:`_launch` (the data dir exists) and wait until it serves."""
        raise NotImplementedError

    def _launch(
        self, cmd: Sequence[str], wait: WaitFn, *, cwd: Path | None = None, env: Mapping[str, str] | None = None
    ) -> None:
        """Spawn ``cmd`` as this server's process and ``wait`` for it; kill it if waiting fails."""
        self._proc = spawn(cmd, self.log_path, cwd=cwd, env=env)
        try:
            wait(self._proc)
        except BaseException:
            self.stop(kill=True)
            raise

    def stop(self, *, kill: bool = False, timeout_s: float = 20.0) -> None:
        """Stop the process: :attr:`stop_signal`, or SIGKILL with ``kill=True`` or after ``timeout_s``."""
        proc, self._proc = self._proc, None
        if proc is not None:
            terminate(proc, kill=kill, timeout_s=timeout_s, sig=self.stop_signal)

    def close(self) -> None:
        """Stop and, if the data dir was a temp dir, delete it."""
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.close()
