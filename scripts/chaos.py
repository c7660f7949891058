"""Faults injected under load, with nothing acknowledged lost (issue 11; `make chaos`).

Needs the app running (`make up`). It deploys a chaos copy of the app (its own event log, policy,
catalog copy, ranker registry and query-memory index under `var/chaos`, searches settled after 20 s
instead of 600), then:

1. a load process (its own process, so the faults here never stall it) sends about `--qps`
   searches per second, open loop (half of them forcing all four strategies, so that every backend
   is called whatever the learned policy prefers), and follows about `--feedback` of them with a click on a random
   result under a client-chosen `event_id` (retried with the same id); it journals every call, and
   `fsync`s each acknowledged feedback before counting it (`ltrr/reliability.py`);
2. after a quiet baseline, each fault is injected `--repeat` times, in turn, each followed by a wait
   until searches are whole again (or `--max-wait` s) and `--gap` s more:
   - `ingress`, `learner`, `vector`: `ray.kill` of the replica actor (Serve replaces it);
   - `proxy`: `ray.kill` of Serve's proxy actor (the controller starts a new one);
   - `controller`: `ray.kill` of the Serve controller, restartable (Ray restarts it);
   - `meilisearch`, `milvus`: SIGKILL of the server process; a supervisor (this script, standing in
     for systemd or Kubernetes) starts it again `--restart-after` s later;
   - `ray-restart`: `ray stop --force`, then `scripts/up.sh` with the chaos config;
3. it stops the load, waits for every search to settle, reads the event log and the learner's status,
   and writes `report.json`, `report.md` and `timeline.png` to `--out` (default `bench-out/chaos`).

Ray calls run in short-lived subprocesses (`python scripts/chaos.py ray ...`): a driver whose cluster
is stopped under it exits, and this one must outlive `ray stop`.

    .venv/bin/python scripts/chaos.py --repeat 2            # about 20 minutes
    .venv/bin/python scripts/chaos.py --faults meilisearch,ingress --repeat 1
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import random
import signal
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))
PY = str(ROOT / ".venv" / "bin" / "python")
CHAOS_VAR = "var/chaos"
ALL_STRATEGIES = ["lexical", "vector", "graph", "memory"]
FAULTS = ("ingress", "learner", "vector", "proxy", "controller", "meilisearch", "milvus", "ray-restart")
#: Actor-name patterns of each Ray fault, and whether Ray may restart the killed actor itself.
RAY_FAULTS = {
    "ingress": ("#ingress#", False),
    "learner": ("#learner#", False),
    "vector": ("#vector#", False),
    "proxy": ("SERVE_PROXY_ACTOR", False),
    "controller": ("SERVE_CONTROLLER_ACTOR", True),
}


def log(msg: str) -> None:
    print(f"[chaos {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# -- Ray calls, each in its own short-lived process ------------------------------------------------
def ray_main(argv: list[str]) -> int:
    """``chaos.py ray kill PATTERN [--restart]`` / ``chaos.py ray learner-status``: print JSON."""
    import ray

    ray.init(address="auto", namespace="serve", logging_level=40, log_to_driver=False)
    if argv[0] == "kill":
        pattern, restart = argv[1], "--restart" in argv
        names = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True) if pattern in a["name"]]
        if not names:
            print(json.dumps({"killed": [], "error": f"no actor matches {pattern!r}"}))
            return 1
        name = sorted(names)[0]
        handle = ray.get_actor(name, namespace="serve")
        t = time.time()
        ray.kill(handle, no_restart=not restart)
        print(json.dumps({"killed": [name], "t": t}))
        return 0
    if argv[0] == "learner-status":
        from ray import serve

        status = serve.get_deployment_handle("learner", app_name="ltrr").status.remote().result(timeout_s=30)
        print(json.dumps(status, default=str))
        return 0
    raise SystemExit(f"unknown ray command {argv[0]!r}")


def ray_call(*args: str, timeout_s: float = 120.0) -> dict[str, Any]:
    out = subprocess.run(
        [PY, __file__, "ray", *args], capture_output=True, text=True, timeout=timeout_s, cwd=ROOT, check=False
    )
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        raise RuntimeError(f"chaos.py ray {' '.join(args)} failed: {out.stderr[-800:]}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


# -- the load process -------------------------------------------------------------------------------
def status_name(exc: BaseException) -> str:
    """The gRPC status name of a failed call (``UNAVAILABLE``), or the exception's type."""
    code = exc.code() if callable(getattr(exc, "code", None)) else None  # type: ignore[attr-defined]
    return str(code.name) if code is not None and hasattr(code, "name") else type(exc).__name__


def load_main(
    target: str, journal: str, qps: float, feedback: float, queries: list[str], t0: float, stop: Any, seed: int
) -> None:
    """Open-loop searches at ``qps``; each followed with probability ``feedback`` by a click."""
    from ltrr.client import LtrrClient
    from ltrr.reliability import Call, Journal

    rng = random.Random(seed)
    j = Journal(journal)
    lock = threading.Lock()
    local = threading.local()

    def client() -> LtrrClient:
        c = getattr(local, "client", None)
        if c is None:
            c = local.client = LtrrClient(target, timeout=5.0)
        return c

    def one(query: str, click: bool, pick: float, forced: bool) -> None:
        t = time.time() - t0
        s0 = time.perf_counter()
        try:
            # Half the searches force all four strategies (not learned from), so every backend is called
            # whatever the learned policy prefers; the other half are the policy's.
            resp = client().search(query, k=10, strategies=ALL_STRATEGIES if forced else ())
            code, degraded = "OK", resp.degraded
            missing = tuple(s.strategy for s in resp.strategies if s.status not in (1, 4))  # not OK/SKIPPED
        except Exception as exc:  # noqa: BLE001 - the outcome is what we journal
            resp, code, degraded, missing = None, status_name(exc), False, ()
        with lock:
            j.call(
                Call(
                    t,
                    "Search",
                    code,
                    time.perf_counter() - s0,
                    degraded,
                    missing,
                    resp.request_id if resp is not None else "",
                )
            )
        if resp is None or not click or not resp.results:
            return
        pos = 1 + int(pick * len(resp.results))
        eid = uuid.uuid4().hex  # client-chosen; every retry sends the same id
        t = time.time() - t0
        s0 = time.perf_counter()
        try:
            fb = client().feedback(
                resp.request_id, resp.results[pos - 1].entity_id, "click", position=pos, event_id=eid
            )
            code, dup = "OK", fb.duplicate
        except Exception as exc:  # noqa: BLE001
            code, dup = status_name(exc), False
        with lock:
            j.call(
                Call(
                    t,
                    "Feedback",
                    code,
                    time.perf_counter() - s0,
                    request_id=resp.request_id,
                    event_id=eid,
                    duplicate=dup,
                )
            )

    with ThreadPoolExecutor(max_workers=24) as pool:
        i = 0
        start = time.time()
        while not stop.is_set():
            due = start + i / qps
            delay = due - time.time()
            if delay > 0:
                time.sleep(delay)
            pool.submit(one, rng.choice(queries), rng.random() < feedback, rng.random(), rng.random() < 0.5)
            i += 1
    j.close()


# -- faults ---------------------------------------------------------------------------------------
def backend_pid(module: str) -> int | None:
    out = subprocess.run([PY, "-m", module, "status"], capture_output=True, text=True, cwd=ROOT, check=False)
    try:
        return json.loads(out.stdout.strip().splitlines()[-1]).get("pid")
    except (ValueError, IndexError):
        return None


def inject(name: str, args: argparse.Namespace, env: dict[str, str]) -> tuple[float, str]:
    """Inject one fault and undo what a supervisor would undo; returns when the fault took effect
    (unix time: the kill itself, not the start of the Python process that sends it) and what was done."""
    if name in RAY_FAULTS:
        pattern, restart = RAY_FAULTS[name]
        out = ray_call("kill", pattern, *(["--restart"] if restart else []))
        return float(out.get("t", time.time())), f"ray.kill {', '.join(out.get('killed', [])) or out.get('error')}"
    if name in ("meilisearch", "milvus"):
        module = f"ltrr.backends.{'meili' if name == 'meilisearch' else 'milvus'}_server"
        pid = backend_pid(module)
        if pid is None:
            return time.time(), f"no {name} process found"
        t = time.time()
        os.kill(pid, signal.SIGKILL)
        time.sleep(args.restart_after)
        subprocess.run([PY, "-m", module, "start"], cwd=ROOT, env=env, check=True, capture_output=True)
        return t, f"SIGKILL pid {pid}, restarted after {args.restart_after:g} s"
    if name == "ray-restart":
        t = time.time()
        subprocess.run(
            [str(ROOT / ".venv/bin/ray"), "stop", "--force"], cwd=ROOT, env=env, check=False, capture_output=True
        )
        with (ROOT / CHAOS_VAR / "up.log").open("a") as fh:
            subprocess.run([str(ROOT / "scripts/up.sh")], cwd=ROOT, env=env, check=True, stdout=fh, stderr=fh)
        return t, "ray stop --force, then scripts/up.sh with the chaos config"
    raise SystemExit(f"unknown fault {name!r}; valid: {', '.join(FAULTS)}")


def wait_whole(client: Any, max_wait_s: float, streak: int = 5) -> float | None:
    """Probe until ``streak`` searches in a row are OK and whole; seconds waited, or None."""
    t0 = time.monotonic()
    run = 0
    while time.monotonic() - t0 < max_wait_s:
        try:
            ok = not client.search("radiohead", k=5).degraded
        except Exception:  # noqa: BLE001
            ok = False
        run = run + 1 if ok else 0
        if run >= streak:
            return time.monotonic() - t0
        time.sleep(0.5)
    return None


# -- verification ---------------------------------------------------------------------------------
def event_log_facts(path: str) -> dict[str, Any]:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30.0)
    try:
        q = lambda sql: db.execute(sql).fetchall()  # noqa: E731
        return {
            "event_ids": [r[0] for r in q("SELECT event_id FROM feedback")],
            "searches": q("SELECT COUNT(*) FROM searches")[0][0],
            "feedback": q("SELECT COUNT(*) FROM feedback")[0][0],
            # The same click stored under two ids (a retry that was not deduplicated):
            "duplicate_clicks": q(
                "SELECT COUNT(*) FROM (SELECT 1 FROM feedback GROUP BY request_id, entity_id, action, position "
                "HAVING COUNT(*) > 1)"
            )[0][0],
            "duplicate_settlements": q(
                "SELECT COUNT(*) FROM (SELECT 1 FROM settlements GROUP BY request_id HAVING COUNT(*) > 1)"
            )[0][0],
            "settlements": q("SELECT COUNT(*) FROM settlements")[0][0],
            "pending": q("SELECT COUNT(*) FROM pending")[0][0],
            "max_search_seq": q("SELECT COALESCE(MAX(seq), 0) FROM search_seq")[0][0],
            "max_positive_settlement_seq": q(
                "SELECT COALESCE(MAX(seq), 0) FROM settlements WHERE outcome = 'positive'"
            )[0][0],
        }
    finally:
        db.close()


def write_report(
    out: Path,
    args: argparse.Namespace,
    calls: list[Any],
    faults: list[Any],
    facts: dict[str, Any],
    learner: dict[str, Any],
    lost: list[str],
    timings: dict[str, float],
) -> dict[str, Any]:
    from ltrr.reliability import failures_by_code, recovery_seconds, windows

    rec = recovery_seconds(calls, faults, streak=10)
    wins = windows(calls, faults, lost)
    by_fault: dict[str, dict[str, Any]] = {}
    for w, f, r in zip(wins[1:], faults, rec, strict=True):
        d = by_fault.setdefault(
            f.name,
            {"injected": 0, "calls": 0, "failed": {}, "degraded": 0, "acknowledged": 0, "lost": 0, "recovery_s": []},
        )
        d["injected"] += 1
        d["calls"] += w.calls
        d["degraded"] += w.degraded
        d["acknowledged"] += w.acknowledged
        d["lost"] += w.lost
        for code, n in w.failed.items():
            d["failed"][code] = d["failed"].get(code, 0) + n
        d["recovery_s"].append(r)
    acked = sum(1 for c in calls if c.rpc == "Feedback" and c.code == "OK")
    report = {
        "command": " ".join(sys.argv),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{os.cpu_count()} cores",
        "qps": args.qps,
        "feedback_share": args.feedback,
        "calls": len(calls),
        "searches": sum(1 for c in calls if c.rpc == "Search"),
        "feedback_sent": sum(1 for c in calls if c.rpc == "Feedback"),
        "feedback_acknowledged": acked,
        "acknowledged_lost": len(lost),
        "lost_ids": lost[:20],
        "failed_by_code": failures_by_code(calls),
        "baseline": {"calls": wins[0].calls, "failed": dict(wins[0].failed), "degraded": wins[0].degraded},
        "faults": by_fault,
        "event_log": {k: v for k, v in facts.items() if k != "event_ids"},
        "learner": {
            k: learner.get(k)
            for k in ("cursor", "open_cursor", "skipped_events", "errors", "settled", "policy_version", "saved_version")
        },
        "timings_s": timings,
    }
    report["settlements_applied_equal_settled"] = (
        learner.get("cursor") == facts["max_positive_settlement_seq"]
        and learner.get("open_cursor") == facts["max_search_seq"]
        and facts["pending"] == 0
    )
    (out / "report.json").write_text(json.dumps(report, indent=2, default=str))

    def secs(v: list[float | None]) -> str:
        got = [x for x in v if x is not None]
        never = len(v) - len(got)
        txt = f"{statistics.median(got):.1f} / {max(got):.1f}" if got else "-"
        return txt + (f" ({never} never within the window)" if never else "")

    lines = [
        f"# Faults under load ({report['date']})",
        "",
        f"- command: `{report['command']}`",
        f"- machine: {report['machine']}; load {args.qps:g} searches/s open loop, {args.feedback:.0%} followed by "
        "a click with a client-chosen event id",
        f"- calls: {report['searches']} searches, {report['feedback_sent']} feedback, {acked} feedback acknowledged",
        f"- **acknowledged feedback missing from the log: {len(lost)}**",
        f"- clicks stored twice: {facts['duplicate_clicks']}; searches settled twice: {facts['duplicate_settlements']}",
        f"- settlements: {facts['settlements']} of {facts['searches']} searches settled, {facts['pending']} pending;"
        f" learner cursor {learner.get('cursor')} = last positive settlement {facts['max_positive_settlement_seq']}, "
        f"open cursor {learner.get('open_cursor')} = last search {facts['max_search_seq']}: "
        f"**{'equal' if report['settlements_applied_equal_settled'] else 'NOT equal'}**; learner skipped "
        f"{learner.get('skipped_events')} events",
        f"- baseline window: {wins[0].calls} calls, failed {dict(wins[0].failed) or 0}, degraded {wins[0].degraded}",
        "",
        "| fault | injected | calls in its windows | failed (by status) | degraded answers | feedback acked | "
        "acked lost | seconds until whole (median / max) |",
        "|---|---:|---:|---|---:|---:|---:|---|",
    ]
    for name, d in report["faults"].items():
        failed = ", ".join(f"{k} {v}" for k, v in sorted(d["failed"].items())) or "0"
        lines.append(
            f"| {name} | {d['injected']} | {d['calls']} | {failed} | {d['degraded']} | {d['acknowledged']} | "
            f"{d['lost']} | {secs(d['recovery_s'])} |"
        )
    lines += ["", "Failed calls by RPC and status: " + json.dumps(report["failed_by_code"]), ""]
    (out / "report.md").write_text("\n".join(lines) + "\n")
    plot_timeline(out / "timeline.png", calls, faults)
    return report


def plot_timeline(path: Path, calls: list[Any], faults: list[Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not calls:
        return
    end = int(max(c.t for c in calls)) + 1
    ok, deg, bad = [0] * end, [0] * end, [0] * end
    for c in calls:
        if c.rpc != "Search":
            continue
        i = int(c.t)
        if c.code != "OK":
            bad[i] += 1
        elif c.degraded:
            deg[i] += 1
        else:
            ok[i] += 1
    fig, ax = plt.subplots(figsize=(12, 4))
    xs = range(end)
    ax.stackplot(xs, ok, deg, bad, labels=["whole", "degraded", "failed"], colors=["#4c9a2a", "#f2b134", "#d1495b"])
    for f in faults:
        ax.axvline(f.t, color="k", lw=0.6, ls="--")
        ax.text(f.t, ax.get_ylim()[1] * 0.95, f.name, rotation=90, fontsize=7, va="top", ha="right")
    ax.set_xlabel("seconds since start")
    ax.set_ylabel("searches per second")
    ax.set_title("Searches under injected faults")
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def catalog_queries(catalog: Any, n: int = 300) -> list[str]:
    """The ``n`` most popular artists, "artists like" the first 60, eight tags, and the first 40 lower-cased
    with their last letter dropped. ``catalog``: a SQLite file's path, or an open store of either backend
    (:class:`~ltrr.catalog.store.CatalogBase`, left open: e.g. scripts/multinode.py's PostgreSQL catalog)."""
    from ltrr.catalog.store import CatalogStore

    store = CatalogStore(catalog) if isinstance(catalog, (str, Path)) else catalog
    try:
        artists = [e for _, batch in store.entities_since(0, 5000) for e in batch if e.entity_type == "artist"]
    finally:
        if store is not catalog:
            store.close()
    top = [a.title for a in sorted(artists, key=lambda e: -e.popularity)[:n]]
    tags = ["rock", "female vocalists", "jazz", "electronic", "hip hop", "80s", "indie", "metal"]
    return top + [f"artists like {a}" for a in top[:60]] + tags + [a.lower()[:-1] for a in top[:40]]


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "ray":
        return ray_main(sys.argv[2:])
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--target", default="127.0.0.1:9000")
    ap.add_argument("--config", default="deployments/serve_config.yaml", help="the app's Serve config")
    ap.add_argument("--qps", type=float, default=20.0, help="searches per second (open loop)")
    ap.add_argument("--feedback", type=float, default=0.3, help="share of searches followed by a click")
    ap.add_argument("--faults", default=",".join(FAULTS), help=f"comma-separated, from {', '.join(FAULTS)}")
    ap.add_argument("--repeat", type=int, default=2, help="times each fault is injected")
    ap.add_argument("--baseline", type=float, default=20.0, help="quiet seconds before the first fault")
    ap.add_argument("--gap", type=float, default=10.0, help="seconds after answers are whole before the next fault")
    ap.add_argument("--max-wait", type=float, default=180.0, help="longest wait for whole answers after a fault")
    ap.add_argument("--restart-after", type=float, default=5.0, help="seconds before a killed server is restarted")
    ap.add_argument("--settle", type=float, default=25.0, help="reward window of the chaos app, seconds")
    ap.add_argument("--out", type=Path, default=ROOT / "bench-out" / "chaos")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    names = [f.strip() for f in args.faults.split(",") if f.strip()]
    unknown = sorted(set(names) - set(FAULTS))
    if unknown:
        ap.error(f"--faults: unknown {', '.join(unknown)}; valid: {', '.join(FAULTS)}")
    from bench_regret import deploy_bench, wait_for_indexes

    from ltrr.client import LtrrClient
    from ltrr.reliability import Fault, Journal, lost_acknowledged, read_journal

    args.out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    client = LtrrClient(args.target, timeout=10.0)
    wait_for_indexes(client, ["lexical", "vector", "graph", "memory"])
    log("deploying the chaos app (var/chaos)")
    t = time.perf_counter()
    app, _ = deploy_bench(
        args,
        client,
        var_dir=CHAOS_VAR,
        memory_index="ltrr_chaos_queries",
        policy={"reward_window_s": args.settle, "checkpoint_interval_s": 5.0},
        writer="scripts/chaos.py",
    )
    timings["deploy the chaos app"] = time.perf_counter() - t
    env = {**os.environ, "LTRR_CONFIG": f"{CHAOS_VAR}/serve_config.yaml", "LTRR_HOME": str(ROOT)}
    journal_path = args.out / "journal.jsonl"
    journal_path.unlink(missing_ok=True)
    queries = catalog_queries(app.catalog_path)
    t0 = time.time()
    stop = mp.get_context("spawn").Event()
    load = mp.get_context("spawn").Process(
        target=load_main,
        args=(args.target, str(journal_path), args.qps, args.feedback, queries, t0, stop, args.seed),
        daemon=True,
    )
    load.start()
    (args.out / "faults.jsonl").unlink(missing_ok=True)
    faults_journal = Journal(args.out / "faults.jsonl")
    log(f"load started: {args.qps:g} searches/s, {args.feedback:.0%} with feedback; baseline {args.baseline:g} s")
    time.sleep(args.baseline)
    plan = [n for _ in range(args.repeat) for n in names]
    for i, name in enumerate(plan, 1):
        log(f"fault {i}/{len(plan)}: {name}")
        try:
            took, detail = inject(name, args, env)
        except Exception as exc:  # noqa: BLE001 - report it and carry on with the next fault
            took, detail = time.time(), f"injection failed: {exc}"
        faults_journal.fault(Fault(name, took - t0, time.time() - t0, detail))
        waited = wait_whole(client, args.max_wait)
        log(f"  {detail}; whole again after {waited if waited is None else round(waited, 1)} s (probe)")
        time.sleep(args.gap)
    stop.set()
    load.join(timeout=60)
    faults_journal.close()
    log(f"load stopped; waiting {args.settle + 15:.0f} s for every search to settle")
    time.sleep(args.settle + 15)
    facts: dict[str, Any] = {}
    for _ in range(30):
        facts = event_log_facts(app.events_path)
        learner = ray_call("learner-status")
        if facts["pending"] == 0 and learner.get("open_cursor") == facts["max_search_seq"]:
            break
        time.sleep(5)
    calls, faults = read_journal([journal_path, args.out / "faults.jsonl"])
    lost = lost_acknowledged(calls, facts["event_ids"])
    report = write_report(args.out, args, calls, faults, facts, learner, lost, timings)
    log(f"report: {args.out / 'report.md'}; acknowledged lost: {report['acknowledged_lost']}")
    log("restoring the normal app")
    subprocess.run([str(ROOT / ".venv/bin/serve"), "deploy", args.config], cwd=ROOT, check=False)
    return 0 if not lost else 1


if __name__ == "__main__":
    raise SystemExit(main())
