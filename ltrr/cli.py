"""``ltrr``: command-line entry point.

ltrr ingest   [--config F] [--max-artists N] [--only S] [--skip S] [--skip-catalog] [--no-cold-start]
              build the catalog and every index (incremental), then the cold-start ranker if needed
ltrr train-ranker [--config F] [--cold-start] [--rollback] [--json] [--lease-timeout S]
              train the ranker on the event log (or on predicted queries), validate it on the
              newest searches against the current model and RRF, publish it if not worse; holds
              the trainer lease while it does (waits while another trainer holds it)
ltrr search   QUERY [-k N] [--type T] [--strategy S] [--explain] [--target H:P] [--token-file F]
ltrr health   [--target H:P] [--token-file F]
              both send a bearer token: --token-file's, else $LTRR_TOKEN, else var/secrets/ltrr-token's
ltrr catalog  summary | synthetic [--n N] [--seed S] [--config F] [--path F]
ltrr ope      [--config F] [--policy P ...] [--estimator E ...] [--since T] [--out DIR]
              off-policy estimates of candidate recall and cost from the event log
ltrr users    import FILE | show USER_ID [--config F] [--catalog PATH]
              import listening profiles (JSON Lines, one profile a line; - reads stdin)
              into the config's catalog store, or print one as such a line
ltrr migrate-events [--config F] [--sqlite PATH] [--dsn DSN] [--force]
              copy the SQLite event log into PostgreSQL, seqs kept (ltrr.event_store)
ltrr migrate-catalog [--config F] [--sqlite PATH] [--dsn DSN] [--force]
              copy the SQLite catalog into PostgreSQL, seqs, watermarks and the profile
              learner's cursor kept, so no index is rebuilt (ltrr.catalog.store_pg)

With a DSN ($LTRR_EVENTS_DSN, else the config's events_dsn) ingest, train-ranker, users and
catalog summary use the PostgreSQL catalog (ltrr.catalog.store.open_catalog); without one,
catalog_path. catalog synthetic writes a SQLite file only (--path with a DSN).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from ltrr import constants as C
from ltrr.errors import InvalidRequest

if TYPE_CHECKING:
    from ltrr.catalog.store import CatalogBase
    from ltrr.client import LtrrClient
    from ltrr.config import AppConfig
    from ltrr.types import UserProfile

DEFAULT_CONFIG = "deployments/serve_config.yaml"


def _ingest(args: argparse.Namespace) -> int:
    from ltrr.appconfig_io import load_app_config
    from ltrr.catalog.build import build_catalog
    from ltrr.catalog.store import open_catalog
    from ltrr.ingest import sync_all

    cfg = load_app_config(args.config)
    names = list(cfg.enabled())
    for name in [*args.only, *args.skip]:
        if name not in names:
            print(f"error: --only/--skip: {name!r} is not an enabled strategy; enabled: {', '.join(names)}")
            return 2
    chosen = [n for n in (args.only or names) if n not in args.skip]
    store = open_catalog(cfg)
    try:
        t0 = time.perf_counter()
        if not args.skip_catalog:
            stats = build_catalog(store, args.data_dir, max_artists=args.max_artists, progress=True)
            print(f"==> catalog in {time.perf_counter() - t0:.1f} s: {json.dumps(stats.to_dict())}", file=sys.stderr)
        sync_all(cfg, store, progress=True, only=chosen)
        if not args.no_cold_start:
            _ingest_cold_start(cfg, store)
        print(f"ingest done in {time.perf_counter() - t0:.1f} s; catalog has {store.count()} entities", file=sys.stderr)
    finally:
        store.close()
    return 0


def _ingest_cold_start(cfg: AppConfig, store: CatalogBase) -> None:
    """The cold-start ranker, when one is needed (none yet, or the current cold-start model lacks a strategy
    ready now). It takes no lease: the trainer deployment of a running app holds it for its life, and the
    background ingest of ``make up`` must still re-train once vector is indexed. A publish goes only over the
    model it was compared against (:func:`ltrr.ranking.retrain.fit_and_publish`), so it never replaces a
    model a trainer published while it trained."""
    from ltrr.errors import Aborted
    from ltrr.ranking.retrain import cold_start, needs_cold_start

    if not needs_cold_start(cfg, store):
        return
    try:
        report = cold_start(cfg, store, progress=True)
    except Aborted as exc:
        print(f"cold-start ranker: not published: {exc}", file=sys.stderr)
        return
    print(report.table() or f"cold-start ranker: {report.reason}", file=sys.stderr)


def _train_ranker(args: argparse.Namespace) -> int:
    """Train and publish holding the trainer lease (:mod:`ltrr.lease`), as the trainer deployment does: while
    another holds it (the deployment, another ``train-ranker``), wait, or give up after ``--lease-timeout``
    seconds (exit 1, nothing trained). ``--rollback`` is the operator's override of what serves: it takes no
    lease (the registry serialises it with publishes), so it works while the trainer deployment runs."""
    from ltrr.appconfig_io import load_app_config
    from ltrr.catalog.store import open_catalog
    from ltrr.errors import Aborted
    from ltrr.lease import TRAINER, acquire_within, lease_for, waiting_message
    from ltrr.ranking.registry import registry_for
    from ltrr.ranking.retrain import cold_start, retrain_from_log

    if args.lease_timeout is not None and not args.lease_timeout >= 0:
        print(f"error: --lease-timeout must be >= 0 seconds, got {args.lease_timeout:g}", file=sys.stderr)
        return 2
    cfg = load_app_config(args.config)
    if args.rollback:
        registry = registry_for(cfg)
        try:
            version = registry.rollback()
        finally:
            registry.close()
        print(f"now serving {version} (replicas pick it up within {cfg.ranking.reload_interval_s:g} s)")
        return 0
    lease = lease_for(cfg, TRAINER)
    bound = "" if args.lease_timeout is None else f"; giving up after {args.lease_timeout:g} s (--lease-timeout)"

    def say() -> None:
        print(f"==> {waiting_message(TRAINER)}{bound}", file=sys.stderr, flush=True)

    if not acquire_within(lease, args.lease_timeout, on_wait=say):
        print(
            f"error: another trainer still holds the {TRAINER} lease ({lease!r}) after {args.lease_timeout:g} s: "
            "nothing was trained or published",
            file=sys.stderr,
        )
        return 1
    try:
        registry = registry_for(cfg, lease=lease)
        try:
            if args.cold_start:
                store = open_catalog(cfg)
                try:
                    report = cold_start(cfg, store, progress=True, registry=registry)
                finally:
                    store.close()
            else:
                report = retrain_from_log(cfg, progress=True, registry=registry)
        finally:
            registry.close()
    except Aborted as exc:  # the lease was lost while training
        print(f"error: not published: {exc}", file=sys.stderr)
        return 1
    finally:
        lease.release()
    if args.json:
        print(json.dumps(report.to_dict(), indent=2, default=str))
    else:
        if report.table():
            print(report.table())
        print(f"{'published ' + report.published if report.published else 'not published'}: {report.reason}")
        if report.skipped:
            print("searches not trained on: " + ", ".join(f"{n} {why}" for why, n in sorted(report.skipped.items())))
    return 0


def _client(args: argparse.Namespace) -> LtrrClient | None:
    """A client of ``--target`` with ``--timeout`` that sends ``--token-file``'s token (without the option,
    the client reads ``$LTRR_TOKEN`` or ``var/secrets/ltrr-token``). None, with the error printed to stderr,
    when that file cannot be read or holds no token."""
    from ltrr.client import LtrrClient, read_token_file

    token = None
    if args.token_file:
        try:
            token = read_token_file(args.token_file)
        except (OSError, UnicodeDecodeError) as exc:
            print(f"error: --token-file: cannot read {args.token_file!r}: {exc}", file=sys.stderr)
            return None
        if token is None:
            print(f"error: --token-file: {args.token_file!r} holds no token", file=sys.stderr)
            return None
    return LtrrClient(args.target, timeout=args.timeout, token=token)


def _search(args: argparse.Namespace) -> int:
    import grpc

    from ltrr.client import format_table

    client = _client(args)
    if client is None:
        return 2
    with client as c:
        try:
            resp = c.search(
                args.query,
                k=args.k,
                user_id=args.user,
                entity_types=args.type or (),
                strategies=args.strategy or (),
                explain=args.explain,
            )
        except grpc.RpcError as exc:
            print(f"error: {exc.code().name}: {exc.details()}", file=sys.stderr)
            return 2
    print(format_table(resp))
    return 0


def _health(args: argparse.Namespace) -> int:
    import grpc

    from ltrr.index_status import INDEX_SERVICE_PREFIX
    from ltrr.strategies.registry import STRATEGY_NAMES

    client = _client(args)
    if client is None:
        return 2
    with client as c:
        try:
            status = c.health()
        except grpc.RpcError as exc:
            print(f"{exc.code().name}: {exc.details()}")
            return 1
        print(status)
        for name in STRATEGY_NAMES if status == "SERVING" else ():
            try:
                index = c.health(INDEX_SERVICE_PREFIX + name)
            except grpc.RpcError:  # NOT_FOUND: not deployed
                continue
            if index != "SERVING":
                print(f"  {name} index: {index} (still indexing in the background; answers lack what is not indexed)")
    return 0 if status == "SERVING" else 1


def _catalog(args: argparse.Namespace) -> int:
    """``ltrr catalog summary`` / ``ltrr catalog synthetic`` on ``--path``'s SQLite file, else on the app
    config's catalog store (:func:`~ltrr.catalog.store.open_catalog`: PostgreSQL when a DSN is configured).
    ``synthetic`` writes only a SQLite file."""
    from ltrr.catalog.build import catalog_summary
    from ltrr.catalog.store import CatalogStore, open_catalog

    if args.path is not None:
        store: CatalogBase = CatalogStore(args.path)
    else:
        import os

        from ltrr.appconfig_io import load_app_config
        from ltrr.event_store import DSN_ENV, events_dsn

        cfg = load_app_config(args.config)
        if args.action == "synthetic" and events_dsn(cfg):
            where = f"${DSN_ENV}" if os.environ.get(DSN_ENV, "").strip() else f"{args.config}'s events_dsn"
            print(
                f"error: synthetic writes a SQLite file, and the catalog is PostgreSQL's ({where}): pass --path FILE",
                file=sys.stderr,
            )
            return 2
        store = open_catalog(cfg)
    try:
        if args.action == "summary":
            print(json.dumps(catalog_summary(store), indent=2))
            return 0
        from ltrr.catalog.synthetic import generate_synthetic

        assert isinstance(store, CatalogStore)  # a DSN was refused above
        stats = generate_synthetic(store, args.n, seed=args.seed, progress=True)
        print(json.dumps(stats.to_dict()))
        return 0
    finally:
        store.close()


def _ope(args: argparse.Namespace) -> int:
    from ltrr.appconfig_io import load_app_config
    from ltrr.bandit import POLICIES, space_for
    from ltrr.eventlog import SQLiteEventLog
    from ltrr.ope import ESTIMATORS
    from ltrr.ope.logged import collect, evaluate, format_report

    cfg = load_app_config(args.config)
    policies = args.policy or list(POLICIES)
    estimators = args.estimator or list(ESTIMATORS)
    for name, known, what in ((policies, POLICIES, "--policy"), (estimators, ESTIMATORS, "--estimator")):
        bad = [n for n in name if n not in known]
        if bad:
            print(f"error: {what}: unknown {bad[0]!r}; valid: {', '.join(known)}", file=sys.stderr)
            return 2
    events_path = args.events or cfg.events_path
    if not Path(events_path).exists():
        print(f"error: --events: no event log at {events_path}", file=sys.stderr)
        return 2
    strategies = list(cfg.enabled())
    log = SQLiteEventLog(events_path)
    try:
        total = log.counts().get("settlements")
        if args.limit:
            total = min(total or args.limit, args.limit)
        until = log.oldest_pending_ts()
        rounds = collect(
            log.iter_settled(limit=args.limit),
            strategies,
            cfg.policy,
            policies,
            seed=args.seed,
            total=total,
            until_ts=until,
            since_ts=args.since,
        )
    finally:
        log.close()
    if rounds.n == 0:
        print(
            f"error: no settled, policy-decided searches before the oldest unsettled one "
            f"({rounds.unsettled} settled ones after it wait for it)",
            file=sys.stderr,
        )
        return 1
    space = space_for(cfg.policy, strategies)
    print(f"ope: bootstrapping {len(policies)} policies x {len(estimators)} estimators ...", file=sys.stderr)
    result = evaluate(rounds, space, estimators=estimators, n_bootstrap_samples=args.bootstrap, random_state=args.seed)
    text = format_report(result, estimators)
    print(text)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "ope.md").write_text(text + "\n")
        (out / "ope.json").write_text(json.dumps(result, indent=2))
    return 0


_PROFILE_FIELDS = ("user_id", "top_artists", "top_tags")
_PROGRESS_EVERY = 10_000


def _weighted(where: str, value: object) -> object:
    """``[{"name": n, "weight": w}, ...]`` (the proto's WeightedName) or ``[[n, w], ...]`` -> pairs."""
    if not isinstance(value, list):
        return value  # user_from_fields names the type
    out: list[object] = []
    for j, item in enumerate(value):
        if isinstance(item, dict):
            extra = sorted(set(item) - {"name", "weight"})
            if extra:
                raise InvalidRequest(f"{where}[{j}]", f"unknown field {extra[0]!r}; valid: name, weight")
            item = (item.get("name", ""), item.get("weight"))
        out.append(item)
    return out


def _profile_fields(index: int, obj: object) -> tuple[object, object, object]:
    """One JSON line's ``(user_id, top_artists, top_tags)``, for :func:`ltrr.validation.user_from_fields`."""
    where = f"users[{index}]"
    if not isinstance(obj, dict):
        raise InvalidRequest(where, f"must be a JSON object with {', '.join(_PROFILE_FIELDS)}")
    extra = sorted(set(obj) - set(_PROFILE_FIELDS))
    if extra:
        raise InvalidRequest(where, f"unknown field {extra[0]!r}; valid: {', '.join(_PROFILE_FIELDS)}")
    return (
        obj.get("user_id", ""),
        _weighted(f"{where}.top_artists", obj.get("top_artists", [])),
        _weighted(f"{where}.top_tags", obj.get("top_tags", [])),
    )


def _artist_names(fields: list[tuple[object, object, object]]) -> list[str]:
    """Every artist name the profiles mention (to look them up in the catalog once)."""
    names: set[str] = set()
    for _, artists, _ in fields:
        for item in artists if isinstance(artists, list) else ():
            if isinstance(item, (list, tuple)) and item and isinstance(item[0], str):
                names.add(item[0].strip())
    return sorted(names)


def _profile_json(u: UserProfile) -> str:
    return json.dumps(
        {
            "user_id": u.user_id,
            "top_artists": [{"name": a, "weight": w} for a, w in u.top_artists],
            "top_tags": [{"name": t, "weight": w} for t, w in u.top_tags],
        },
        ensure_ascii=False,
    )


def _users(args: argparse.Namespace) -> int:
    """``ltrr users import FILE`` / ``ltrr users show USER_ID`` on the app config's catalog store
    (:func:`~ltrr.catalog.store.open_catalog`: PostgreSQL when a DSN is configured), or ``--catalog``'s file."""
    from ltrr.appconfig_io import load_app_config
    from ltrr.catalog.store import CatalogStore, open_catalog
    from ltrr.event_store import events_dsn

    store: CatalogBase | None = None
    path = Path(args.catalog) if args.catalog else None
    if path is None:
        cfg = load_app_config(args.config)
        if events_dsn(cfg):
            store = open_catalog(cfg)
        path = Path(cfg.catalog_path)
    if store is None:
        if not path.exists():
            print(f"error: no catalog at {path} (`ltrr ingest` builds it)", file=sys.stderr)
            return 2
        store = CatalogStore(path)
    try:
        return _users_show(store, args.target) if args.action == "show" else _users_import(store, args.target)
    finally:
        store.close()


def _users_show(store: CatalogBase, user_id: str) -> int:
    profile = store.user(user_id.strip())
    if profile is None:
        print(f"error: no profile for {user_id!r} in {store.location}", file=sys.stderr)
        return 1
    state = store.user_state(profile.user_id)
    if state is not None:
        print(f"learned from {state.get('events', 0)} positive events", file=sys.stderr)
    print(_profile_json(profile))
    return 0


def _users_import(store: CatalogBase, source: str) -> int:
    """Read and check every line, then write all profiles in one transaction (nothing on an error)."""
    from ltrr.validation import user_from_fields

    fields: list[tuple[object, object, object]] = []
    lines: list[int] = []
    try:
        stream = sys.stdin if source == "-" else open(source, encoding="utf-8")
    except OSError as exc:
        print(f"error: FILE: cannot read {source!r}: {exc.strerror}", file=sys.stderr)
        return 2
    try:
        for n, line in enumerate(stream, 1):
            if not line.strip():
                continue
            try:
                fields.append(_profile_fields(len(fields), json.loads(line.rstrip("\r\n"))))
            except json.JSONDecodeError as exc:
                print(f"error: line {n}: not valid JSON (column {exc.colno}): {exc.msg}", file=sys.stderr)
                return 2
            except InvalidRequest as exc:
                print(f"error: line {n}: {exc}", file=sys.stderr)
                return 2
            lines.append(n)
            if len(fields) % _PROGRESS_EVERY == 0:
                print(f"users: read {len(fields)} profiles", file=sys.stderr)
    finally:
        if stream is not sys.stdin:
            stream.close()
    print(f"users: read {len(fields)} profiles; checking them against {store.location}", file=sys.stderr)
    known = {eid for eid, e in store.get_many(_artist_names(fields)).items() if e.entity_type == "artist"}
    users: list[UserProfile] = []
    for i, (uid, artists, tags) in enumerate(fields):
        try:
            users.append(user_from_fields(i, user_id=uid, top_artists=artists, top_tags=tags, known_artists=known))
        except InvalidRequest as exc:
            print(f"error: line {lines[i]}: {exc}", file=sys.stderr)
            return 2
    changed = store.upsert_users(users)
    print(f"imported {len(users)} profiles ({changed} new or changed) into {store.location}")
    return 0


def _migrate_events(args: argparse.Namespace) -> int:
    """``python -m ltrr.eventlog_pg migrate``, with --sqlite and --dsn defaulting to the app's log."""
    return _migrate(args, catalog=False)


def _migrate_catalog(args: argparse.Namespace) -> int:
    """The same for the catalog (:func:`ltrr.catalog.store_pg.copy_sqlite_catalog`), --sqlite defaulting to
    the app's ``catalog_path``."""
    return _migrate(args, catalog=True)


def _migrate(args: argparse.Namespace, *, catalog: bool) -> int:
    import os

    from ltrr.event_store import DSN_ENV, events_dsn
    from ltrr.eventlog_pg import run_migrate

    args.dsn = args.dsn or os.environ.get(DSN_ENV, "").strip() or None
    if args.sqlite is None or args.dsn is None:
        from ltrr.appconfig_io import load_app_config

        cfg = load_app_config(args.config)
        args.sqlite = args.sqlite or (cfg.catalog_path if catalog else cfg.events_path)
        args.dsn = args.dsn or events_dsn(cfg)
    if catalog:
        from ltrr.catalog.store_pg import copy_sqlite_catalog

        return run_migrate(args, copy_sqlite_catalog)
    return run_migrate(args)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    p = argparse.ArgumentParser(prog="ltrr", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)

    pi = sub.add_parser("ingest", help="build the catalog and bring every strategy's index up to date")
    pi.add_argument("--config", default=DEFAULT_CONFIG)
    pi.add_argument("--data-dir", default="data")
    pi.add_argument("--max-artists", type=int, default=None, help="a smaller, consistent slice (tests)")
    pi.add_argument("--only", action="append", default=[], metavar="STRATEGY", help="index only these (repeatable)")
    pi.add_argument("--skip", action="append", default=[], metavar="STRATEGY", help="do not index these (repeatable)")
    pi.add_argument("--skip-catalog", action="store_true", help="index the catalog as it is; do not rebuild it")
    pi.add_argument("--no-cold-start", action="store_true", help="do not train the cold-start ranker")
    pi.set_defaults(fn=_ingest)

    pt = sub.add_parser("train-ranker", help="train, validate and publish the ranker")
    pt.add_argument("--config", default=DEFAULT_CONFIG)
    pt.add_argument("--cold-start", action="store_true", help="train on predicted queries, not the event log")
    pt.add_argument("--rollback", action="store_true", help="serve the previous published model again")
    pt.add_argument("--json", action="store_true", help="print the full report as JSON")
    pt.add_argument(
        "--lease-timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help="give up (exit 1) if another trainer still holds the trainer lease after this long (default: wait)",
    )
    pt.set_defaults(fn=_train_ranker)

    for name, fn in (("search", _search), ("health", _health)):
        ps = sub.add_parser(name)
        ps.add_argument("--target", default="127.0.0.1:9000")
        ps.add_argument("--timeout", type=float, default=C.CLIENT_TIMEOUT_S)
        ps.add_argument(
            "--token-file",
            default=None,
            help="send the first token of this file (default: $LTRR_TOKEN, else var/secrets/ltrr-token if present)",
        )
        ps.set_defaults(fn=fn)
        if name == "search":
            ps.add_argument("query")
            ps.add_argument("-k", type=int, default=10)
            ps.add_argument("--user", default="")
            ps.add_argument("--type", action="append", help="entity type filter (repeatable)")
            ps.add_argument("--strategy", action="append", help="force a strategy (repeatable)")
            ps.add_argument("--explain", action="store_true")

    pc = sub.add_parser("catalog", help="count a catalog's entities, or generate a synthetic SQLite catalog")
    pc.add_argument("action", choices=["summary", "synthetic"])
    pc.add_argument("--config", default=DEFAULT_CONFIG, help="app config whose catalog is used without --path")
    pc.add_argument(
        "--path",
        default=None,
        help="SQLite catalog file (default: the config's catalog: PostgreSQL with a DSN, else catalog_path)",
    )
    pc.add_argument("--n", type=int, default=100_000)
    pc.add_argument("--seed", type=int, default=0)
    pc.set_defaults(fn=_catalog)

    po = sub.add_parser("ope", help="off-policy evaluation of retrieval policies from the event log")
    po.add_argument("--config", default=DEFAULT_CONFIG)
    po.add_argument("--events", default=None, help="event log (default: the config's events_path)")
    po.add_argument("--policy", action="append", help="target policy (repeatable; default: all)")
    po.add_argument("--estimator", action="append", help="ipw, snipw, dr (repeatable; default: all)")
    po.add_argument("--limit", type=int, default=None, help="evaluate at most this many settled searches")
    po.add_argument("--since", type=float, default=None, help="only searches at or after this unix time")
    po.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples for the CIs")
    po.add_argument("--seed", type=int, default=0)
    po.add_argument("--out", default=None, help="also write ope.md and ope.json here")
    po.set_defaults(fn=_ope)

    pm = sub.add_parser("migrate-events", help="copy the SQLite event log into PostgreSQL (seqs kept)")
    pm.add_argument("--config", default=DEFAULT_CONFIG, help="app config for the defaults of --sqlite and --dsn")
    pm.add_argument("--sqlite", default=None, help="SQLite event log to copy (default: the config's events_path)")
    pm.add_argument("--dsn", default=None, help="target (default: $LTRR_EVENTS_DSN, else the config's events_dsn)")
    pm.add_argument("--force", action="store_true", help="empty a non-empty target first")
    pm.set_defaults(fn=_migrate_events)

    pmc = sub.add_parser(
        "migrate-catalog",
        help="copy the SQLite catalog into PostgreSQL (seqs, watermarks and the profile learner's cursor kept)",
        description="Copy every row of a SQLite catalog (entities, relations, users, the profile learner's state, "
        "meta) into the PostgreSQL catalog in one transaction. Seqs are kept, so the indexes' watermarks (in meta) "
        "still hold and nothing is re-indexed; the row counts and largest seqs are compared afterwards. "
        "A target that already holds a catalog is refused unless --force. Stop the writers first; run it once, "
        "then set the DSN: every process that has it opens the PostgreSQL catalog.",
    )
    pmc.add_argument("--config", default=DEFAULT_CONFIG, help="app config for the defaults of --sqlite and --dsn")
    pmc.add_argument("--sqlite", default=None, help="SQLite catalog to copy (default: the config's catalog_path)")
    pmc.add_argument("--dsn", default=None, help="target (default: $LTRR_EVENTS_DSN, else the config's events_dsn)")
    pmc.add_argument("--force", action="store_true", help="empty a target that holds a catalog first")
    pmc.set_defaults(fn=_migrate_catalog)

    pu = sub.add_parser("users", help="import or show user listening profiles in the catalog store")
    pu.add_argument("action", choices=["import", "show"])
    pu.add_argument("target", metavar="FILE|USER_ID", help="import: a JSON Lines file, - for stdin; show: a user id")
    pu.add_argument("--config", default=DEFAULT_CONFIG, help="app config whose catalog is written")
    pu.add_argument(
        "--catalog",
        default=None,
        help="SQLite catalog file (default: the config's catalog: PostgreSQL with a DSN, else catalog_path)",
    )
    pu.set_defaults(fn=_users)

    args = p.parse_args(argv)
    return int(args.fn(args))


if __name__ == "__main__":
    sys.exit(main())
