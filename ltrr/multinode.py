"""The pure parts of ``scripts/multinode.py`` (``make multinode``, issue 12): two Ray nodes on one machine.

Nothing here starts a server or imports Ray; Linux ``/proc`` is read through a ``proc_root`` argument so tests
point it at a fake tree.

* **The run's Serve config** (:func:`derive_config`, :func:`scale_config`): the app's config with state of its
  own, the ingress and each strategy deployment at two replicas and ``max_replicas_per_node: 1`` (so each node
  runs one), the learner and the trainer pinned to the head by its custom resource :data:`HEAD_RESOURCE`, and
  the gRPC proxy on the head only. Replica counts change through the application's ``deployments`` overrides,
  never through ``args``: Serve's code version hashes the ``args``, so a change there restarts every replica,
  while ``num_replicas`` in an override is a lightweight update.
* **Placement** (:func:`node_kinds`, :func:`placement_rows`, :func:`running_by_node`, :func:`is_spread`): the
  state API's nodes and actors and Serve's replica details (``GET /api/serve/applications/``) as plain dicts.
  A node is the ``head`` (the state API's head node), the ``worker`` (it has the custom resource
  :data:`WORKER_RESOURCE`) or ``other``. Replicas are *spread* when each deployment has a RUNNING replica on
  the head and on the worker.
* **Timing** (:func:`first_after`): samples taken once a second, ``{"t", "nodes", "running"}``; the seconds from
  an event (the kill) to the first sample at or after it where a condition holds.
* **Processes** (:func:`read_procs`, :func:`find_raylet`, :func:`cluster_pids`): a node's raylet is the process
  whose executable is ``raylet`` with the argument ``--node_id=<id>``. The processes of one cluster are those
  naming its temp dir, its node ids or its GCS address in an argument, and all their descendants (a worker
  retitles itself ``ray::...`` but is its raylet's child). A process is named by its pid *and* its start time
  (``/proc/<pid>/stat`` field 22), so a reused pid is never taken for it.
* **Figures** (:func:`loss_figures`) from the journal of :mod:`ltrr.reliability`, and the report's Markdown
  (:func:`render_md`).
"""

from __future__ import annotations

import copy
import dataclasses
import os
from typing import Any, Callable, Final, Iterable, Mapping, Sequence

from pydantic import ValidationError

from ltrr.appconfig_io import APP_NAME as APP
from ltrr.config import AppConfig
from ltrr.errors import ConfigError
from ltrr.loadtest import md_table, parse_cmdline, pid_dirs
from ltrr.reliability import Call, Fault, failures_by_code, lost_acknowledged, recovery_seconds, windows
from ltrr.sim.bench_config import bench_config

ALL_STRATEGIES: Final = ("lexical", "vector", "graph", "memory")
#: Custom resources of the two nodes (``ray start --resources``).
HEAD_RESOURCE: Final = "head_node"
WORKER_RESOURCE: Final = "worker_node"
#: Logical CPUs per replica on the 1-CPU nodes: the ingress, and the strategy deployments between them; with the
#: learner and the trainer (0.1 each, on the head) the head holds 0.9 and the worker 0.7.
INGRESS_CPUS: Final = 0.4
STRATEGIES_CPUS: Final = 0.3
#: What a run names its own indexes and collection (``ltrr_mn_*``), beside the app's ``ltrr_*``.
INDEX_PREFIX: Final = "ltrr_mn"
#: Whole searches in a row (OK, not degraded) that make the answers whole again after a fault.
WHOLE_STREAK: Final = 10


def spread_deployments(app_args: Mapping[str, Any]) -> list[str]:
    """The deployments spread over the nodes: the ingress and every enabled strategy with its own deployment."""
    cfg = AppConfig.model_validate(dict(app_args))
    return ["ingress", *(n for n, s in cfg.enabled().items() if s.placement == "deployment")]


def _app(serve_cfg: dict[str, Any]) -> dict[str, Any]:
    return next(a for a in serve_cfg["applications"] if a.get("name") == APP)


def derive_config(
    serve_cfg: Mapping[str, Any],
    *,
    var_dir: str,
    grpc_port: int,
    http_port: int,
    replicas: int = 2,
    meili: tuple[str, str] | None = None,
    milvus_uri: str | None = None,
) -> dict[str, Any]:
    """The Serve config of a two-node run, from the app's (``deployments/serve_config.yaml``):

    * state under ``var_dir`` (:func:`ltrr.sim.bench_config.bench_config`: event log, catalog copy, policy, ranker
      registry, query-memory index), and the run's own lexical index, vector collection and graph cache;
    * the ingress and each ``placement: deployment`` strategy at ``replicas`` replicas, ``max_replicas_per_node: 1``
      and :data:`INGRESS_CPUS` / a share of :data:`STRATEGIES_CPUS`;
    * the learner and the trainer pinned to the head (``ray_actor_options.resources: {head_node: 0.01}`` in the
      application's ``deployments`` overrides);
    * the gRPC proxy on the head only, on ``grpc_port`` (HTTP on ``http_port``);
    * the ranker trainer never retrains during the run and cold-starts from 300 queries (the experiment is about
      placement, not ranking quality);
    * ``meili`` (url, key) for the lexical and memory strategies and ``milvus_uri`` for the vector one, when given:
      servers that are already running elsewhere (Milvus 2.3.5 runs once per machine).

    Validated by :class:`ltrr.config.AppConfig`; raises :class:`ltrr.errors.ConfigError` naming the field."""
    src = copy.deepcopy(dict(serve_cfg))
    for app in src.get("applications") or []:  # blocks shared in the YAML (an alias) get renamed one at a time
        for spec in ((app.get("args") or {}).get("strategies") or {}).values():
            if isinstance(spec, dict):
                spec["config"] = copy.deepcopy(spec.get("config") or {})
    out = bench_config(src, var_dir=var_dir, memory_index=f"{INDEX_PREFIX}_queries")
    base = var_dir.rstrip("/")
    out["proxy_location"] = "HeadOnly"
    out["http_options"] = {**(out.get("http_options") or {}), "host": "127.0.0.1", "port": http_port}
    out["grpc_options"] = {**(out.get("grpc_options") or {}), "port": grpc_port}
    app = _app(out)
    args = app["args"]
    strategies = args.get("strategies") or {}
    if "lexical" in strategies:
        strategies["lexical"].setdefault("config", {})["index"] = f"{INDEX_PREFIX}_entities"
    if "vector" in strategies:
        strategies["vector"].setdefault("config", {})["collection"] = f"{INDEX_PREFIX}_entities"
    if "graph" in strategies:
        strategies["graph"].setdefault("config", {})["cache_dir"] = f"{base}/graph-cache"
    for name in ("lexical", "memory"):
        if meili is not None and name in strategies:
            strategies[name]["config"].update(url=meili[0], api_key=meili[1])
    if milvus_uri is not None and "vector" in strategies:
        strategies["vector"]["config"]["uri"] = milvus_uri
    ranking = args.setdefault("ranking", {})
    ranking["retrain_after"] = 1_000_000
    ranking["cold_start_queries"] = 300
    spread = spread_deployments(args)
    share = round(STRATEGIES_CPUS / max(1, len(spread) - 1), 3)
    for name in spread:
        block = args.setdefault("ingress", {}) if name == "ingress" else strategies[name]
        dep = block.setdefault("deployment", {})
        dep.update(
            num_replicas=replicas, max_replicas_per_node=1, num_cpus=INGRESS_CPUS if name == "ingress" else share
        )
    try:
        cfg = AppConfig.model_validate(args)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise ConfigError(f"multinode config: {'.'.join(str(x) for x in err['loc'])}: {err['msg']}") from None
    app["deployments"] = [
        {"name": name, "ray_actor_options": {"num_cpus": opts.num_cpus, "resources": {HEAD_RESOURCE: 0.01}}}
        for name, opts in (("learner", cfg.learner), ("trainer", cfg.trainer))
    ]
    return out


def scale_config(serve_cfg: Mapping[str, Any], replicas: int, deployments: Iterable[str]) -> dict[str, Any]:
    """``serve_cfg`` with ``num_replicas: replicas`` for ``deployments`` in the application's ``deployments``
    overrides. The ``args`` are unchanged, so Serve applies it as a lightweight update: no replica restarts."""
    out = copy.deepcopy(dict(serve_cfg))
    overrides = _app(out).setdefault("deployments", [])
    by_name = {d["name"]: d for d in overrides}
    for name in deployments:
        if name in by_name:
            by_name[name]["num_replicas"] = replicas
        else:
            overrides.append({"name": name, "num_replicas": replicas})
    return out


def node_kinds(nodes: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """``{node_id: "head" | "worker" | "other"}``: the head is the state API's head node, the worker any node with
    the custom resource :data:`WORKER_RESOURCE`."""
    out = {}
    for n in nodes:
        if n.get("is_head_node"):
            kind = "head"
        elif WORKER_RESOURCE in (n.get("resources_total") or {}):
            kind = "worker"
        else:
            kind = "other"
        out[str(n["node_id"])] = kind
    return out


def parse_actor_name(name: str | None) -> tuple[str, str] | None:
    """``(deployment, replica id)`` of a Serve replica actor of the app (``SERVE_REPLICA::ltrr#vector#ab12``);
    ``("(controller)", "")`` / ``("(proxy)", "")`` for Serve's own actors; None for any other actor."""
    if not name:
        return None
    if name.startswith("SERVE_REPLICA::"):
        parts = name[len("SERVE_REPLICA::") :].split("#")
        if len(parts) == 3 and parts[0] == APP:
            return parts[1], parts[2]
        return None
    if name.startswith("SERVE_CONTROLLER_ACTOR"):
        return "(controller)", ""
    if name.startswith("SERVE_PROXY_ACTOR"):
        return "(proxy)", ""
    return None


def serve_replicas(details: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The replicas of the app in Serve's details (``GET /api/serve/applications/``): deployment, replica id,
    state, node id, actor name."""
    deps = ((details.get("applications") or {}).get(APP) or {}).get("deployments") or {}
    return [
        {
            "deployment": name,
            "replica_id": r.get("replica_id", ""),
            "state": r.get("state", ""),
            "node_id": r.get("node_id") or "",
            "actor_name": r.get("actor_name") or "",
        }
        for name, d in sorted(deps.items())
        for r in d.get("replicas") or []
    ]


def target_replicas(details: Mapping[str, Any]) -> dict[str, int]:
    """``{deployment: target_num_replicas}`` of the app in Serve's details."""
    deps = ((details.get("applications") or {}).get(APP) or {}).get("deployments") or {}
    return {name: int(d.get("target_num_replicas") or 0) for name, d in deps.items()}


def placement_rows(
    actors: Iterable[Mapping[str, Any]], details: Mapping[str, Any], kinds: Mapping[str, str]
) -> list[dict[str, Any]]:
    """The placement table: one row per live Serve actor of the state API (replicas of the app, the controller,
    the proxies): deployment, replica id, actor state, Serve's replica state (by actor name), node kind and id.
    Dead actors are left out; an actor not placed yet is on node ``pending``."""
    serve_state = {r["actor_name"]: r["state"] for r in serve_replicas(details)}
    rows = []
    for a in actors:
        parsed = parse_actor_name(a.get("name"))
        if parsed is None or a.get("state") == "DEAD":
            continue
        node = str(a.get("node_id") or "")
        rows.append(
            {
                "deployment": parsed[0],
                "replica_id": parsed[1],
                "actor_state": a.get("state", ""),
                "serve_state": serve_state.get(str(a.get("name")), ""),
                "node": kinds.get(node, "pending" if not node else "other"),
                "node_id": node,
            }
        )
    return sorted(rows, key=lambda r: (r["deployment"].startswith("("), r["deployment"], r["node"], r["replica_id"]))


def running_by_node(details: Mapping[str, Any]) -> dict[str, dict[str, int]]:
    """``{deployment: {node_id: RUNNING replicas}}`` in Serve's details."""
    out: dict[str, dict[str, int]] = {}
    for r in serve_replicas(details):
        if r["state"] == "RUNNING" and r["node_id"]:
            per = out.setdefault(r["deployment"], {})
            per[r["node_id"]] = per.get(r["node_id"], 0) + 1
    return out


def by_kind(running: Mapping[str, Mapping[str, int]], kinds: Mapping[str, str]) -> dict[str, dict[str, int]]:
    """``running_by_node`` summed per node kind: ``{deployment: {"head": n, "worker": m}}``."""
    out: dict[str, dict[str, int]] = {}
    for dep, per in running.items():
        acc = out.setdefault(dep, {})
        for node, n in per.items():
            kind = kinds.get(node, "other")
            acc[kind] = acc.get(kind, 0) + n
    return out


def is_spread(running: Mapping[str, Mapping[str, int]], deployments: Iterable[str], head: str, worker: str) -> bool:
    """Whether every deployment of ``deployments`` has a RUNNING replica on node ``head`` and on node ``worker``."""
    return all(running.get(d, {}).get(head, 0) >= 1 and running.get(d, {}).get(worker, 0) >= 1 for d in deployments)


def first_after(
    samples: Sequence[Mapping[str, Any]], since: float, pred: Callable[[Mapping[str, Any]], bool]
) -> float | None:
    """Seconds from ``since`` to the first sample (by ``t``) at or after it for which ``pred`` holds; None if none."""
    for s in samples:
        if s["t"] >= since and pred(s):
            return round(s["t"] - since, 2)
    return None


@dataclasses.dataclass(frozen=True)
class Proc:
    """One process of ``/proc``: its parent, its start time (clock ticks since boot: with the pid, it names the
    process even after the pid is reused) and its arguments."""

    pid: int
    ppid: int
    start: int
    argv: tuple[str, ...]


def parse_stat(text: str) -> tuple[int, int]:
    """``(ppid, starttime)`` of a ``/proc/<pid>/stat`` line; the command name in parentheses may hold spaces and
    parentheses, so fields are counted after its last ``)``: state, ppid, ... starttime is the 20th."""
    rest = text[text.rindex(")") + 2 :].split()
    return int(rest[1]), int(rest[19])


def read_procs(proc_root: str | os.PathLike[str] = "/proc") -> dict[int, Proc]:
    """Every process under ``proc_root`` whose ``stat`` and ``cmdline`` can be read."""
    out: dict[int, Proc] = {}
    for d in pid_dirs(proc_root):
        try:
            ppid, start = parse_stat((d / "stat").read_text(encoding="utf-8", errors="replace"))
            argv = tuple(parse_cmdline((d / "cmdline").read_bytes()))
        except (OSError, ValueError, IndexError):
            continue
        out[int(d.name)] = Proc(int(d.name), ppid, start, argv)
    return out


def find_raylet(procs: Mapping[int, Proc], node_id: str) -> int | None:
    """The pid of the raylet of node ``node_id`` (its executable is ``raylet``, one argument ``--node_id=<id>``)."""
    for p in procs.values():
        if p.argv and os.path.basename(p.argv[0]) == "raylet" and f"--node_id={node_id}" in p.argv:
            return p.pid
    return None


def cluster_pids(
    procs: Mapping[int, Proc],
    *,
    substrings: Sequence[str] = (),
    arg_suffixes: Sequence[str] = (),
    exclude: Iterable[int] = (),
) -> set[int]:
    """The processes of one Ray cluster: those with an argument containing one of ``substrings`` (its temp dir,
    its node ids) or ending with one of ``arg_suffixes`` (``127.0.0.1:<gcs port>``), and all their descendants
    (workers retitle themselves ``ray::...``, but they are the raylet's children). ``exclude`` (this process and
    its ancestors) never is."""
    skip = set(exclude)
    roots = {
        p.pid
        for p in procs.values()
        if p.pid not in skip
        and any(any(s in a for s in substrings) or any(a.endswith(x) for x in arg_suffixes) for a in p.argv)
    }
    children: dict[int, list[int]] = {}
    for p in procs.values():
        children.setdefault(p.ppid, []).append(p.pid)
    out, todo = set(), list(roots)
    while todo:
        pid = todo.pop()
        if pid in out or pid in skip:
            continue
        out.add(pid)
        todo.extend(children.get(pid, ()))
    return out


def ancestors(procs: Mapping[int, Proc], pid: int) -> set[int]:
    """``pid`` and its ancestors."""
    out = set()
    while pid > 0 and pid not in out:
        out.add(pid)
        p = procs.get(pid)
        pid = p.ppid if p else 0
    return out


def loss_figures(
    calls: Sequence[Call], faults: Sequence[Fault], stored_events: set[str], stored_searches: set[str]
) -> dict[str, Any]:
    """What the journal and the event log say about the run: per window (``baseline``, then each fault) calls,
    failures by status, degraded answers and the strategies they missed, acknowledged feedback and how much of it
    the log lacks; in all, acknowledged feedback and OK searches missing from the log (both must be 0), and the
    seconds from each fault until :data:`WHOLE_STREAK` whole searches in a row
    (:func:`ltrr.reliability.recovery_seconds`)."""
    lost = lost_acknowledged(calls, stored_events)
    ok_searches = {c.request_id for c in calls if c.rpc == "Search" and c.code == "OK" and c.request_id}
    wins = windows(calls, faults, lost)
    rec = recovery_seconds(calls, faults, streak=WHOLE_STREAK)
    return {
        "calls": len(calls),
        "searches": sum(1 for c in calls if c.rpc == "Search"),
        "feedback_sent": sum(1 for c in calls if c.rpc == "Feedback"),
        "feedback_acknowledged": sum(1 for c in calls if c.rpc == "Feedback" and c.code == "OK"),
        "acknowledged_lost": len(lost),
        "lost_ids": lost[:20],
        "searches_answered_not_logged": len(ok_searches - stored_searches),
        "failed_by_code": failures_by_code(calls),
        "windows": [
            {
                "name": w.name,
                "calls": w.calls,
                "failed": dict(sorted(w.failed.items())),
                "degraded": w.degraded,
                "degraded_missing": dict(sorted(w.missing.items())),
                "acknowledged": w.acknowledged,
                "lost": w.lost,
            }
            for w in wins
        ],
        "whole_again_s": [None if r is None else round(r, 2) for r in rec],
    }


def md_placement(rows: Sequence[Mapping[str, Any]]) -> str:
    """The placement table (:func:`placement_rows`) in Markdown; node ids cut to 12 characters."""
    return md_table(
        ("deployment", "replica", "node", "actor", "Serve state", "node id"),
        [
            [
                r["deployment"],
                r["replica_id"] or "–",
                r["node"],
                r["actor_state"],
                r["serve_state"] or "–",
                r["node_id"][:12] or "–",
            ]
            for r in rows
        ],
    )


def render_md(report: Mapping[str, Any]) -> str:
    """The Markdown of a run's report (the dict written as ``report.json``)."""
    cfg, wl, ar = report["config"], report["worker_loss"], report["after_restart"]
    kill_win = next((w for w in wl.get("windows", []) if w["name"] != "baseline"), None) or {}
    base_win = next((w for w in wl.get("windows", []) if w["name"] == "baseline"), None) or {}

    def fails(d: Mapping[str, int]) -> str:
        return ", ".join(f"{k} {v}" for k, v in d.items()) or "0"

    tp = report.get("throughput", {})
    restarted = None if ar.get("restart_t_s") is None else round(ar["restart_t_s"] - wl["kill_t_s"], 1)
    lines = [
        f"# Two Ray nodes on one machine, the worker lost under load ({report['date']})",
        "",
        f"- command: `{report['command']}`",
        f"- machine: {report['machine']}; event log: **{report['event_log']}**; catalog slice of "
        f"{cfg['max_artists'] or 'all'} artists",
        f"- nodes: head (1 CPU, `{HEAD_RESOURCE}`) and worker (1 CPU, `{WORKER_RESOURCE}`), both `ray start` on "
        f"127.0.0.1; spread over both (`num_replicas: 2`, `max_replicas_per_node: 1`): "
        f"{', '.join(cfg['spread_deployments'])}; learner and trainer pinned to the head; gRPC proxy on the head",
        "",
        "## Placement before the kill (Ray state API; Serve's replica state)",
        "",
        md_placement(report.get("placement_before", [])),
        "",
        f"Replicas on both nodes: **{'yes' if report.get('spread_before') else 'NO'}**",
        "",
        "## Throughput (closed loop, every search forced to all four strategies)",
        "",
        md_table(
            (
                "replicas per deployment",
                "callers",
                "seconds",
                "answers",
                "req/s",
                "degraded",
                "failed",
                "p50 ms",
                "p99 ms",
            ),
            [
                [
                    n,
                    t["callers"],
                    t["seconds"],
                    t["answers"],
                    t["req_per_s"],
                    t["degraded"],
                    t["failed"],
                    t["latency_ms"]["p50"],
                    t["latency_ms"]["p99"],
                ]
                for n, t in sorted(tp.items())
            ],
        ),
        "",
        "## The worker's raylet killed under load",
        "",
        f"- load: {cfg['qps']:g} searches/s open loop for {cfg['load_s']:g} s, {cfg['feedback']:.0%} followed by a "
        f"click with a client-chosen event id; SIGKILL of the worker's raylet (pid {wl.get('raylet_pid')}) at "
        f"{wl.get('kill_t_s')} s",
        f"- baseline (before the kill): {base_win.get('calls', 0)} calls, failed {fails(base_win.get('failed', {}))}, "
        f"degraded {base_win.get('degraded', 0)}",
        f"- after the kill ({wl.get('window_s')} s of load): {kill_win.get('calls', 0)} calls, **failed "
        f"{fails(kill_win.get('failed', {}))}**, **degraded {kill_win.get('degraded', 0)}** (missing: "
        f"{fails(kill_win.get('degraded_missing', {}))})",
        f"- feedback: {wl.get('feedback_sent')} sent, {wl.get('feedback_acknowledged')} acknowledged, **"
        f"{wl.get('acknowledged_lost')} acknowledged missing from the event log**; answered searches missing from "
        f"the log: {wl.get('searches_answered_not_logged')}",
        f"- seconds after the kill until: answers whole again ({WHOLE_STREAK} in a row) **{wl.get('whole_again_s')}**;"
        f" Ray marked the node DEAD {wl.get('node_dead_s')}; Serve had dropped its replicas "
        f"{wl.get('serve_dropped_s')}; every replica RUNNING again {wl.get('replicas_back_s')} (the worker was "
        f"restarted {restarted} s after the kill: `max_replicas_per_node: 1` keeps the replacements off the head)",
        "",
        "## After the worker restarted",
        "",
        f"Replicas on both nodes again: **{'yes' if ar.get('spread') else 'NO'}**, {ar.get('seconds')} s after "
        f"`ray start` (bound {cfg['spread_timeout_s']:g} s)",
        "",
        md_placement(ar.get("placement", [])),
        "",
        f"![replicas per node and searches per second]({report.get('plot', 'multinode.png')})",
        "",
    ]
    if report.get("notes"):
        lines += ["## Notes", "", *[f"- {n}" for n in report["notes"]], ""]
    return "\n".join(lines)
