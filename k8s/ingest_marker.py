"""The ingest Job's done-marker: which ingest built the indexes the Ray head is about to serve.

The Job (``k8s/base/ingest-job.yaml``) runs::

    python ingest_marker.py clear MARKER
    ltrr ingest --config CONFIG --data-dir DATA
    python ingest_marker.py write MARKER --config CONFIG --data-dir DATA

and the Ray head's init container waits with
``until python ingest_marker.py check MARKER --config CONFIG --data-dir DATA; do sleep 5; done``.

The marker holds a fingerprint of the ingest's inputs::

    fingerprint = sha256(ltrr version, catalog_path, index_targets(config), for each file of DATA: path, sha256)

``index_targets`` (:func:`ltrr.ingest.index_targets`) names where each enabled strategy keeps its
index (server URL, index or collection, cache directory). A head starts serving only if the
marker's fingerprint equals the one it computes from its own config and image, so:

* a re-ingest in progress has cleared the marker: a head (re)starting meanwhile waits for it;
* a new image (other data, another ltrr version) or a config that moves an index changes the
  fingerprint: its head waits until the Job has ingested for it, instead of serving the indexes an
  older ingest left (the flaw of the plain ``touch .ingest-done`` this replaces);
* a config change that moves no index (replica counts, timeouts, policy settings) keeps the
  fingerprint, so a restarting head is not held back by it.

Exit codes: ``check`` 0 when the marker matches, 1 when it is missing or stale (printing why);
``write`` and ``clear`` 0. Runs with the Python and the ltrr package of the ltrr image.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from importlib.metadata import version
from pathlib import Path
from typing import Any

#: Bump when the fingerprint's definition changes, so old markers stop matching.
SCHEMA = "ltrr-ingest-marker/1"


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


def write(marker: str | Path, config: str | Path, data_dir: str | Path) -> dict[str, Any]:
    """Write the marker atomically (temporary file, then rename) and return its content."""
    found = inputs(config, data_dir)
    content = {"fingerprint": _digest(found), "index_targets": found["index_targets"]}
    path = Path(marker)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(content, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, path)
    return content


def clear(marker: str | Path) -> None:
    """Remove the marker (before an ingest starts); a missing marker is fine."""
    Path(marker).unlink(missing_ok=True)


def check(marker: str | Path, config: str | Path, data_dir: str | Path) -> tuple[bool, str]:
    """``(True, "")`` if the marker exists and matches ``config`` and ``data_dir``, else ``(False, why)``."""
    path = Path(marker)
    try:
        content = json.loads(path.read_text())
    except FileNotFoundError:
        return False, f"no marker {path}: the ingest Job has not finished (or is running again)"
    except (OSError, ValueError) as exc:
        return False, f"marker {path} unreadable: {exc}"
    want = fingerprint(config, data_dir)
    got = content.get("fingerprint") if isinstance(content, dict) else None
    if got != want:
        return False, f"marker {path} is for another ingest ({got}), this config and image need {want}"
    return True, ""


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="ingest_marker.py", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("write", "check", "clear"):
        s = sub.add_parser(name)
        s.add_argument("marker")
        if name != "clear":
            s.add_argument("--config", required=True, help="the Serve config the ingest ran with")
            s.add_argument("--data-dir", required=True, help="the data directory the ingest read")
    args = p.parse_args(argv)
    if args.cmd == "clear":
        clear(args.marker)
        return 0
    if args.cmd == "write":
        print(json.dumps(write(args.marker, args.config, args.data_dir), sort_keys=True))
        return 0
    ok, why = check(args.marker, args.config, args.data_dir)
    if not ok:
        print(why, file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
