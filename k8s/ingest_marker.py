"""The ingest Job's done-marker: which ingest built the indexes the Ray head is about to serve.

The marker is a row of the catalog's meta in PostgreSQL (key :data:`META_KEY` of ``catalog_meta``, written
through :class:`ltrr.catalog.store_pg.PgCatalogStore`), on the database of ``--dsn``, else of
``$LTRR_EVENTS_DSN``: the database the ingest wrote the catalog to, so the Job and every Ray head see the
same marker from any node, with no volume between them. Without a DSN every subcommand fails (exit 2,
"no DSN"): a cluster always has one, and there is no file fallback.

The Job (``k8s/base/ingest-job.yaml``) runs::

    python ingest_marker.py clear
    ltrr ingest --config CONFIG --data-dir DATA
    python ingest_marker.py write --config CONFIG --data-dir DATA

and the Ray head's init container waits with
``until python ingest_marker.py check --config CONFIG --data-dir DATA; do sleep 5; done``.

``write`` stores JSON holding a fingerprint of the ingest's inputs::

    fingerprint = sha256(ltrr version, catalog_path, index_targets(config), for each file of DATA: path, sha256)

``clear`` stores the empty value (the row is kept: ``catalog_meta`` has no delete), which ``check`` reads as
"an ingest is running". ``index_targets`` (:func:`ltrr.ingest.index_targets`) names where each enabled
strategy keeps its index (server URL, index or collection, cache directory). A head starts serving only if
the marker's fingerprint equals the one it computes from its own config and image, so:

* a re-ingest in progress has cleared the marker: a head (re)starting meanwhile waits for it;
* a new image (other data, another ltrr version) or a config that moves an index changes the
  fingerprint: its head waits until the Job has ingested for it, instead of serving the indexes an
  older ingest left (the flaw of the plain ``touch .ingest-done`` this replaces);
* a config change that moves no index (replica counts, timeouts, policy settings) keeps the
  fingerprint, so a restarting head is not held back by it.

Exit codes: ``check`` 0 when the marker matches, 1 when it is missing, cleared or stale (printing why);
``write`` and ``clear`` 0; any subcommand 2 when there is no DSN or the database refuses or cannot be
reached (printing why). Runs with the Python and the ltrr package of the ltrr image.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from importlib.metadata import version
from pathlib import Path
from typing import Any, Callable, TypeVar

from ltrr.event_store import DSN_ENV  # where the DSN comes from when ``--dsn`` is not given

#: Bump when the fingerprint's definition changes, so old markers stop matching.
SCHEMA = "ltrr-ingest-marker/1"
#: The marker's key in the catalog's meta (``catalog_meta``).
META_KEY = "k8s:ingest_done"
T = TypeVar("T")


class MarkerError(Exception):
    """No DSN, or the database could not be opened, read or written: exit 2."""


def inputs(config: str | Path, data_dir: str | Path) -> dict[str, Any]:
    """What an ingest with ``config`` (a Serve or app config YAML) over ``data_dir`` builds from."""
    from ltrr.appconfig_io import load_app_config
    from ltrr.ingest import index_targets

    cfg = load_app_config(config)
    root = Path(data_dir)
    files = sorted(p for p in root.rglob("*") if p.is_file())
    if not files:
        raise SystemExit(f"ingest_marker: no data files under {root}")
    return {
        "schema": SCHEMA,
        "ltrr": version("ltrr"),
        "catalog_path": cfg.catalog_path,
        "index_targets": dict(sorted(index_targets(cfg).items())),
        "data": {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() for p in files},
    }


def _digest(found: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(found, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def fingerprint(config: str | Path, data_dir: str | Path) -> str:
    """sha256 of :func:`inputs`, as canonical JSON."""
    return _digest(inputs(config, data_dir))


def resolve_dsn(dsn: str | None = None) -> str:
    """``dsn`` if non-empty, else ``$LTRR_EVENTS_DSN``; :class:`MarkerError` if neither is set."""
    found = (dsn or "").strip() or os.environ.get(DSN_ENV, "").strip()
    if not found:
        raise MarkerError(
            f"no DSN: the marker lives in the PostgreSQL catalog; set ${DSN_ENV} (the Secret's events_dsn) or --dsn"
        )
    return found


def _with_catalog(dsn: str | None, fn: Callable[[Any], T]) -> T:
    """``fn(store)`` on the PostgreSQL catalog of :func:`resolve_dsn`, closed afterwards; a DSN that does not
    parse, a newer catalog schema, or a server that cannot be reached or refuses is a :class:`MarkerError`."""
    from ltrr.catalog.store_pg import PgCatalogStore
    from ltrr.errors import BackendError

    where = "--dsn" if (dsn or "").strip() else f"${DSN_ENV}"
    try:
        store = PgCatalogStore(resolve_dsn(dsn))
    except (ValueError, BackendError) as exc:
        raise MarkerError(f"{where}: {exc}") from exc
    try:
        return fn(store)
    except BackendError as exc:
        raise MarkerError(f"{where}: {exc}") from exc
    finally:
        store.close()


def write(config: str | Path, data_dir: str | Path, *, dsn: str | None = None) -> dict[str, Any]:
    """Store the marker of an ingest of ``config`` over ``data_dir`` (one upsert) and return its content."""
    found = inputs(config, data_dir)
    content = {"fingerprint": _digest(found), "index_targets": found["index_targets"]}
    _with_catalog(dsn, lambda store: store.set_meta(META_KEY, json.dumps(content, sort_keys=True)))
    return content


def clear(*, dsn: str | None = None) -> None:
    """Clear the marker (before an ingest starts): store the empty value. Clearing twice, or a marker that
    was never written, is fine."""
    _with_catalog(dsn, lambda store: store.set_meta(META_KEY, ""))


def read(*, dsn: str | None = None) -> str | None:
    """The stored marker: None if never written, "" if cleared, else its JSON."""
    return _with_catalog(dsn, lambda store: store.get_meta(META_KEY))


def check(config: str | Path, data_dir: str | Path, *, dsn: str | None = None) -> tuple[bool, str]:
    """``(True, "")`` if the marker exists and matches ``config`` and ``data_dir``, else ``(False, why)``."""
    raw = read(dsn=dsn)
    where = f"marker {META_KEY} of the catalog"
    if raw is None:
        return False, f"no {where}: the ingest Job has not finished yet"
    if raw == "":
        return False, f"{where} is cleared: the ingest Job is running (again) or failed"
    try:
        content = json.loads(raw)
    except ValueError as exc:
        return False, f"{where} unreadable: {exc}"
    want = fingerprint(config, data_dir)
    got = content.get("fingerprint") if isinstance(content, dict) else None
    if got != want:
        return False, f"{where} is for another ingest ({got}), this config and image need {want}"
    return True, ""


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="ingest_marker.py", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("write", "check", "clear"):
        s = sub.add_parser(name)
        s.add_argument("--dsn", default=None, help=f"the PostgreSQL catalog's DSN (default: ${DSN_ENV})")
        if name != "clear":
            s.add_argument("--config", required=True, help="the Serve config the ingest ran with")
            s.add_argument("--data-dir", required=True, help="the data directory the ingest read")
    args = p.parse_args(argv)
    try:
        if args.cmd == "clear":
            clear(dsn=args.dsn)
            return 0
        if args.cmd == "write":
            print(json.dumps(write(args.config, args.data_dir, dsn=args.dsn), sort_keys=True))
            return 0
        ok, why = check(args.config, args.data_dir, dsn=args.dsn)
    except MarkerError as exc:
        print(f"ingest_marker: {exc}", file=sys.stderr)
        return 2
    if not ok:
        print(why, file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
