#!/usr/bin/env python
"""`make autoscale` (issue 12, "Scaling"): both of Serve's scaling paths, shown on the running app (`make up` first).

Stages, each printed as it goes (``[autoscale HH:MM:SS] ...``); the config changes and the figures are the pure
functions of :mod:`ltrr.scaling`:

0. **What runs**: ``GET /api/serve/applications/`` on the dashboard (``--dashboard``), turned back into the
   declarative config it was deployed with (saved as ``original_config.{json,yaml}`` under ``--out``), a gRPC
   health check and one search (the token from ``var/secrets/ltrr-token`` or ``$LTRR_TOKEN``, via
   :class:`~ltrr.client.LtrrClient`).
1. **CPU budget**: Serve places a replica only where its logical CPUs fit (``make up`` starts a 2-CPU head). When
   the peak of the run (2 replicas, then ``--max-replicas``) does not fit, ``num_cpus`` of the scaled deployments is
   lowered so it does (:func:`ltrr.scaling.fit_cpus`; a rolling restart, done and waited for before any timing);
   ``--no-cpu-fit`` keeps them, and replicas past the budget stay pending.
2. **The REST / dashboard path**: the same config PUT back (``PUT /api/serve/applications/``, what ``serve deploy``
   and the dashboard send) with ``num_replicas: 2`` for ``--deployments`` in the app's ``deployments`` overrides (a
   lightweight update: no restarts), polled once a second until Serve's target and its replicas, all RUNNING, are 2
   (at most ``--scale-timeout-s``); then back to 1. Both timings are reported.
3. **Autoscaling under a ramp**: the config PUT with ``num_replicas: "auto"`` and an ``autoscaling_config`` for each
   of ``--deployments`` (``--min-replicas``, ``--max-replicas``, ``--targets`` as target_ongoing_requests,
   ``--upscale-delay-s``, ``--downscale-delay-s``, ``--look-back-s``) and the app's ``external_scaler_enabled``
   off (Serve refuses it beside its own autoscaler); then closed-loop callers ``--ramp`` (1 → 4 →
   16 → 4 → 1), ``--step-s`` each, every search forced to every enabled strategy (so each reaches ``vector``),
   no retries. A sampler reads Serve's replica counts once a second.
4. **Restore**: the original config PUT back in a ``finally`` (also on SIGTERM and Ctrl-C), waited for, and said
   so in the report. Should that fail, ``serve deploy -a <dashboard> <out>/original_config.yaml`` restores it.

Writes ``report.md``, ``report.json`` (with every sample) and ``autoscale.png`` (replicas RUNNING and Serve's target
per deployment over the ramp; answers per second and callers) under ``--out`` (``bench-out/autoscale``). With the
defaults the run takes about 4 minutes (the ramp 2.5 of them), under 5 unless a wait hits its bound.

    .venv/bin/python scripts/autoscale.py                 # make autoscale
    .venv/bin/python scripts/autoscale.py --step-s 15 --skip-rest
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import signal
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("LTRR_HOME", str(ROOT))

from ltrr import loadtest as lt  # noqa: E402
from ltrr import scaling as sc  # noqa: E402

USER_AGENT = "ltrr-autoscale"  # not a browser: the dashboard leaves runtime_env unredacted, so a PUT keeps it


def log(msg: str) -> None:
    print(f"[autoscale {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# == the dashboard ==============================================================================================
class Dashboard:
    """Serve's REST API on the Ray dashboard."""

    def __init__(self, base: str, timeout_s: float = 30.0) -> None:
        self.base, self.timeout_s = base.rstrip("/"), timeout_s

    def _call(self, method: str, path: str, body: Any = None) -> bytes:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(f"{self.base}{path}", data=data, method=method)
        req.add_header("User-Agent", USER_AGENT)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                return bytes(resp.read())
        except urllib.error.HTTPError as exc:
            text = exc.read().decode(errors="replace")[:2000]
            raise RuntimeError(f"{method} {path}: HTTP {exc.code}: {text}") from None

    def details(self) -> dict[str, Any]:
        got: dict[str, Any] = json.loads(self._call("GET", "/api/serve/applications/"))
        return got

    def put(self, config: dict[str, Any]) -> None:
        self._call("PUT", "/api/serve/applications/", config)

    def total_cpus(self) -> float | None:
        """Logical CPUs of the ALIVE nodes (Ray's state API); None if it cannot be read."""
        try:
            from ray.util.state import list_nodes

            nodes = list_nodes(address=self.base, limit=1000, raise_on_missing_output=False)
        except Exception as exc:  # noqa: BLE001 - the budget is then not checked
            log(f"  the state API did not answer ({type(exc).__name__}: {exc}); CPU budget not checked")
            return None
        total = 0.0
        for n in nodes:
            d = n if isinstance(n, dict) else dataclasses.asdict(n)
            if d.get("state") == "ALIVE":
                total += float((d.get("resources_total") or {}).get("CPU", 0.0))
        return total


def wait_until(what: str, fn: Callable[[], Any], timeout_s: float, every_s: float = 1.0) -> tuple[Any, float]:
    """Call ``fn`` until it returns something truthy (an exception counts as not yet): ``(its value, seconds)``;
    raises TimeoutError after ``timeout_s``."""
    t0 = time.monotonic()
    last: Exception | None = None
    while True:
        try:
            got = fn()
            if got:
                return got, time.monotonic() - t0
        except Exception as exc:  # noqa: BLE001 - not yet
            last = exc
        if time.monotonic() - t0 >= timeout_s:
            raise TimeoutError(f"{what}: not after {timeout_s:g} s" + (f" (last error: {last})" if last else ""))
        time.sleep(every_s)


def counts_line(counts: dict[str, dict[str, Any]], names: list[str]) -> str:
    return ", ".join(
        f"{n} {counts[n]['running']}/{counts[n]['target']}"
        + (f" {counts[n]['states']}" if counts[n]["live"] != counts[n]["running"] else "")
        for n in names
        if n in counts
    )


# == load =======================================================================================================
def status_of(exc: BaseException) -> str:
    code = exc.code() if callable(getattr(exc, "code", None)) else None  # type: ignore[attr-defined]
    return str(code.name) if code is not None and hasattr(code, "name") else f"CLIENT_{type(exc).__name__}"


class Ramp:
    """``max(levels)`` closed-loop callers, each with its own channel (no retries); caller ``i`` searches back to
    back while ``i < level`` and idles otherwise. Records are :class:`ltrr.loadtest.CallRecord`, ``t_end`` in seconds
    since :meth:`start`."""

    def __init__(
        self, target: str, queries: list[str], callers: int, strategies: list[str], k: int, deadline_s: float, seed: int
    ) -> None:
        self.target, self.queries, self.strategies, self.k, self.deadline_s = target, queries, strategies, k, deadline_s
        self.seed = seed
        self.level = 0
        self.t0 = 0.0
        self.records: list[lt.CallRecord] = []
        self.lock = threading.Lock()
        self.halt = threading.Event()
        self.threads = [threading.Thread(target=self._caller, args=(i,), daemon=True) for i in range(callers)]

    def start(self) -> None:
        self.t0 = time.perf_counter()
        for th in self.threads:
            th.start()

    def _caller(self, i: int) -> None:
        from ltrr.client import LtrrClient

        rng = random.Random(self.seed * 100_003 + i)
        with LtrrClient(self.target, timeout=self.deadline_s, attempts=1) as c:
            while not self.halt.is_set():
                if i >= self.level:
                    self.halt.wait(0.05)
                    continue
                q = self.queries[rng.randrange(len(self.queries))]
                s0 = time.perf_counter()
                try:
                    c.search(q, k=self.k, strategies=self.strategies)
                    status = "OK"
                except Exception as exc:  # noqa: BLE001 - counted by status
                    status = status_of(exc)
                end = time.perf_counter()
                with self.lock:
                    self.records.append(lt.CallRecord(end - self.t0, (end - s0) * 1000.0, status))

    def answered_since(self, t: float) -> int:
        with self.lock:
            return sum(1 for r in self.records if r.t_end >= t and r.status == "OK")

    def stop(self) -> None:
        self.level = 0
        self.halt.set()
        for th in self.threads:
            th.join(timeout=self.deadline_s + 5.0)


class Sampler(lt.PeriodicSampler):
    """Every ``every_s``: Serve's replica counts of the app, as ``{"t", "replicas"}`` (``t`` in seconds since
    ``t0``, a :func:`time.perf_counter` value)."""

    def __init__(self, dash: Dashboard, app: str, t0: float, every_s: float = 1.0) -> None:
        super().__init__(t0, every_s)
        self.dash, self.app = dash, app

    def sample(self) -> dict[str, Any]:
        return {"replicas": sc.replica_counts(self.dash.details(), self.app)}

    def last(self) -> dict[str, Any]:
        return self.samples[-1]["replicas"] if self.samples else {}

    def stop(self) -> None:
        self.halt()


def plot(path: Path, samples: list[dict[str, Any]], records: list[lt.CallRecord], levels: list[int], step_s: float,
         deployments: list[str]) -> None:
    """Replicas RUNNING (solid) and Serve's target (dashed) per deployment; answers per second and callers."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(12, 6.5), sharex=True)
    ts = [s["t"] for s in samples]
    for i, dep in enumerate(deployments):
        color = f"C{i}"
        running = [s["replicas"].get(dep, {}).get("running", 0) for s in samples]
        target = [s["replicas"].get(dep, {}).get("target", 0) for s in samples]
        top.step(ts, running, where="post", color=color, label=f"{dep} RUNNING")
        top.step(ts, target, where="post", color=color, ls="--", alpha=0.7, label=f"{dep} target")
    top.set_ylabel("replicas")
    top.set_title("Serve replicas per deployment (sampled once a second)")
    top.legend(loc="upper right", fontsize=8)
    end = int(len(levels) * step_s)
    per_s = sc.answers_per_second(records, end)
    bottom.plot(range(end), per_s, color="#4c9a2a", label="answers/s")
    bottom.set_ylabel("answers per second")
    bottom.set_xlabel("seconds since the ramp started")
    twin = bottom.twinx()
    twin.step([i * step_s for i in range(len(levels) + 1)], [*levels, levels[-1]], where="post", color="k", lw=0.8,
              label="callers")
    twin.set_ylabel("closed-loop callers")
    bottom.legend(loc="upper left", fontsize=8)
    twin.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# == the run ====================================================================================================
class Run:
    def __init__(self, args: argparse.Namespace, report: dict[str, Any]) -> None:
        self.args, self.report = args, report
        self.dash = Dashboard(args.dashboard)
        self.original: dict[str, Any] | None = None
        self.changed = False
        self.t_stage = time.perf_counter()

    def stage(self, name: str) -> None:
        now = time.perf_counter()
        self.report["timings_s"][name] = round(now - self.t_stage, 1)
        self.t_stage = now

    def counts(self) -> dict[str, dict[str, Any]]:
        return sc.replica_counts(self.dash.details(), self.args.app)

    def put(self, cfg: dict[str, Any], what: str) -> float:
        log(f"PUT /api/serve/applications/: {what}")
        self.changed = True
        self.dash.put(cfg)
        return time.monotonic()

    def settle(self, want: dict[str, int], what: str, timeout_s: float) -> float | None:
        """Seconds until :func:`ltrr.scaling.scaled_to` ``want``; None (noted) when not within ``timeout_s``."""
        try:
            _, s = wait_until(what, lambda: sc.scaled_to(self.counts(), want), timeout_s)
        except TimeoutError as exc:
            note = f"{exc}; at the end: {counts_line(self.counts(), list(want))}"
            log(f"  {note}")
            self.report["notes"].append(note)
            return None
        return round(s, 1)

    def wait_answers(self, client: Any, strategies: list[str], timeout_s: float) -> None:
        """Until 3 searches in a row, forced to every strategy, are whole (not degraded)."""
        streak = [0]

        def whole() -> bool:
            ok = not client.search("radiohead", k=5, strategies=strategies).degraded
            streak[0] = streak[0] + 1 if ok else 0
            return streak[0] >= 3

        wait_until("whole answers", whole, timeout_s, 0.5)

    def restore(self) -> None:
        if self.original is None or not self.changed:
            return
        try:
            self.put(self.original, "the original config")
            want = {n: c["target"] for n, c in self.report["before"].items()}
            s = self.settle(want, "the original replicas", self.args.scale_timeout_s)
            self.report["restored"] = s is not None
            log(f"  restored{'' if s is None else f' after {s} s'}: {counts_line(self.counts(), list(want))}")
        except Exception as exc:  # noqa: BLE001 - said, with the way back by hand
            self.report["restored"] = False
            msg = (f"restoring failed ({exc}); by hand: serve deploy -a {self.args.dashboard} "
                   f"{self.args.out / 'original_config.yaml'}")
            self.report["notes"].append(msg)
            log(msg)


def experiment(r: Run) -> int:
    import yaml

    from ltrr.client import LtrrClient

    args, report = r.args, r.report
    details = r.dash.details()
    original = sc.deploy_config(details)
    app_cfg = sc.app_config(original, args.app)
    r.original = original
    (args.out / "original_config.json").write_text(json.dumps(original, indent=2) + "\n")
    (args.out / "original_config.yaml").write_text(
        "# The config running before scripts/autoscale.py (GET /api/serve/applications/); restore with\n"
        f"#   serve deploy -a {args.dashboard} {args.out / 'original_config.yaml'}\n"
        + yaml.safe_dump(original, sort_keys=False)
    )
    before = sc.replica_counts(details, args.app)
    report["before"] = before
    names = list(args.deployments)
    missing = [n for n in names if n not in before]
    if missing:
        raise SystemExit(f"no deployment {', '.join(missing)} in {args.app!r}; deployments: {', '.join(before)}")
    log(f"running: {counts_line(before, list(before))} (RUNNING/target); saved {args.out / 'original_config.yaml'}")
    strategies = sc.forced_strategies(app_cfg.get("args") or {})
    client = LtrrClient(args.target, timeout=10.0)
    health = client.health()
    if health != "SERVING":
        raise SystemExit(f"gRPC health of {args.target} is {health}; is the app up (`make up`)?")
    r.wait_answers(client, strategies, 30.0)
    titles, artists = lt.catalog_names(args.catalog)
    queries = lt.make_queries(titles, artists, 2000, seed=args.seed)
    r.stage("preflight")

    # -- the CPU budget ------------------------------------------------------------------------------------------
    deps = details["applications"][args.app]["deployments"]
    per_replica = {n: float((d.get("required_resources") or {}).get("CPU", 0.0)) for n, d in deps.items()}
    now = {n: c["target"] for n, c in before.items()}
    peak = {n: max(args.replicas if not args.skip_rest else 1, args.max_replicas if not args.skip_ramp else 1)
            for n in names}
    total = r.dash.total_cpus()
    fit: dict[str, Any] = {"total_cpus": total, "per_replica": per_replica, "need_peak": sc.cpu_need(
        per_replica, {**now, **peak}), "lowered": {}}
    report["cpu_fit"] = fit
    base = original
    if total is not None and fit["need_peak"] > total:
        if args.cpu_fit:
            fit["lowered"] = sc.fit_cpus(per_replica, now, peak, total)
            log(f"the peak needs {fit['need_peak']:g} of {total:g} logical CPUs: num_cpus per replica for the run "
                + ", ".join(f"{n} {per_replica[n]:g} -> {c:g}" for n, c in fit["lowered"].items()))
            base = sc.with_actor_cpus(original, fit["lowered"], sc.actor_options(details, args.app), args.app)
            r.put(base, "lowered num_cpus (a rolling restart)")
            r.settle({n: now[n] for n in names}, "replicas restarted with the lowered CPUs", args.settle_timeout_s)
            r.wait_answers(client, strategies, args.settle_timeout_s)
        else:
            report["notes"].append(f"the peak needs {fit['need_peak']:g} of {total:g} logical CPUs (--no-cpu-fit): "
                                   "replicas past the budget stay pending")
    r.stage("CPU budget")

    # -- the REST / dashboard path -------------------------------------------------------------------------------
    if not args.skip_rest:
        ones = {n: 1 for n in names}
        if not sc.scaled_to(r.counts(), ones):
            r.put(sc.with_replicas(base, ones, args.app), "num_replicas 1 first")
            r.settle(ones, "one replica each", args.scale_timeout_s)
        up = {n: args.replicas for n in names}
        r.put(sc.with_replicas(base, up, args.app), f"num_replicas 1 -> {args.replicas} for {', '.join(names)}")
        up_s = r.settle(up, f"{args.replicas} replicas RUNNING", args.scale_timeout_s)
        log(f"  {counts_line(r.counts(), names)}" + (f" after {up_s} s" if up_s is not None else ""))
        r.put(sc.with_replicas(base, ones, args.app), f"num_replicas {args.replicas} -> 1")
        down_s = r.settle(ones, "one replica each", args.scale_timeout_s)
        log(f"  {counts_line(r.counts(), names)}" + (f" after {down_s} s" if down_s is not None else ""))
        report["rest"] = {"deployments": names, "replicas": args.replicas, "up_s": up_s, "up_reached": up_s is not None,
                          "down_s": down_s, "down_reached": down_s is not None}
        r.stage("REST API: 1 -> 2 -> 1")

    # -- autoscaling under a ramp --------------------------------------------------------------------------------
    if not args.skip_ramp:
        auto = report["config"]["autoscaling"]
        r.put(sc.with_autoscaling(base, auto, args.app), "autoscaling_config for " + ", ".join(auto))
        wait_until("autoscaling_config applied", lambda: sc.autoscaling_applied(r.dash.details(), names, args.app),
                   args.scale_timeout_s)
        r.settle({n: args.min_replicas for n in names}, f"{args.min_replicas} replica(s) each", args.scale_timeout_s)
        ramp = Ramp(args.target, queries, max(args.ramp), strategies, args.k, args.deadline, args.seed)
        ramp.start()
        sampler = Sampler(r.dash, args.app, ramp.t0)
        sampler.start()
        log(f"ramp: {' -> '.join(str(n) for n in args.ramp)} callers, {args.step_s:g} s each")
        try:
            for i, n in enumerate(args.ramp):
                ramp.level = n
                step_end = ramp.t0 + (i + 1) * args.step_s
                while (left := step_end - time.perf_counter()) > 0:
                    time.sleep(min(5.0, left))
                    t = time.perf_counter() - ramp.t0
                    rate = ramp.answered_since(t - 5.0) / 5.0
                    log(f"  t={t:5.0f} s callers {n:>2}: {rate:6.1f} answers/s; {counts_line(sampler.last(), names)}")
        finally:
            ramp.stop()
            sampler.stop()
        records = sorted(ramp.records, key=lambda x: x.t_end)
        samples = sampler.samples
        peak_end = (args.ramp.index(max(args.ramp)) + 1) * args.step_s
        report["ramp"] = {
            "levels": args.ramp,
            "step_s": args.step_s,
            "steps": sc.ramp_steps(args.ramp, args.step_s, records, samples),
            "first_upscale_s": {n: sc.first_time(samples, n, "running", lambda x: x > 1) for n in names},
            "back_to_one_s": {n: sc.first_time(samples, n, "running", lambda x: x <= 1, since=peak_end) for n in names},
            "by_status": lt.count_statuses(x.status for x in records),
            "sampler_errors": sampler.errors,
            "samples": samples,
        }
        report["plot"] = "autoscale.png"
        plot(args.out / "autoscale.png", samples, records, args.ramp, args.step_s, names)
        r.stage("autoscaling ramp")
    client.close()
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dashboard", default="http://127.0.0.1:8265", help="the Ray dashboard (Serve's REST API)")
    ap.add_argument("--target", default="127.0.0.1:9000", help="the app's gRPC address")
    ap.add_argument("--app", default="ltrr", help="the Serve application")
    ap.add_argument("--deployments", default="vector,ingress", help="the deployments scaled, comma-separated")
    ap.add_argument("--replicas", type=int, default=2, help="num_replicas of the REST API step")
    ap.add_argument("--min-replicas", type=int, default=1)
    ap.add_argument("--max-replicas", type=int, default=3)
    ap.add_argument("--targets", default="vector=4,ingress=16", help="target_ongoing_requests per deployment")
    ap.add_argument("--upscale-delay-s", type=float, default=5.0)
    ap.add_argument("--downscale-delay-s", type=float, default=30.0)
    ap.add_argument("--look-back-s", type=float, default=15.0, help="look_back_period_s, > 10 (Serve's default: 30)")
    ap.add_argument("--ramp", default="1,4,16,4,1", help="closed-loop callers of each step")
    ap.add_argument("--step-s", type=float, default=30.0, help="seconds of each ramp step")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--deadline", type=float, default=10.0, help="each search's deadline (s)")
    ap.add_argument("--scale-timeout-s", type=float, default=120.0, help="bound on each wait for a replica count")
    ap.add_argument("--settle-timeout-s", type=float, default=180.0, help="bound on the restart of the CPU fit")
    ap.add_argument("--no-cpu-fit", dest="cpu_fit", action="store_false", help="keep num_cpus even if it does not fit")
    ap.add_argument("--skip-rest", action="store_true", help="no REST API step")
    ap.add_argument("--skip-ramp", action="store_true", help="no autoscaling ramp")
    ap.add_argument("--catalog", default=str(ROOT / "var" / "catalog.sqlite"), help="where the queries come from")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=ROOT / "bench-out" / "autoscale")
    args = ap.parse_args(argv)
    args.deployments = [d.strip() for d in args.deployments.split(",") if d.strip()]
    try:
        args.ramp = sc.parse_levels(args.ramp)
        targets = sc.parse_targets(args.targets)
    except ValueError as exc:
        ap.error(str(exc))
    if not args.deployments:
        ap.error("--deployments must name at least one deployment")
    if not 1 <= args.min_replicas <= args.max_replicas:
        ap.error(f"--min-replicas must be in [1, --max-replicas={args.max_replicas}], got {args.min_replicas}")
    if args.replicas < 2:
        ap.error(f"--replicas must be at least 2, got {args.replicas}")
    if args.look_back_s <= 10.0:
        ap.error(f"--look-back-s must be > 10 (Serve's metrics interval), got {args.look_back_s:g}")
    if args.step_s <= 0:
        ap.error(f"--step-s must be > 0, got {args.step_s:g}")
    unknown = [n for n in args.deployments if n not in targets]
    if unknown:
        ap.error(f"--targets has no target_ongoing_requests for {', '.join(unknown)}")
    args.autoscaling = {
        n: {
            "min_replicas": args.min_replicas,
            "max_replicas": args.max_replicas,
            "target_ongoing_requests": targets[n],
            "upscale_delay_s": args.upscale_delay_s,
            "downscale_delay_s": args.downscale_delay_s,
            "look_back_period_s": args.look_back_s,
        }
        for n in args.deployments
    }
    args.out = args.out.resolve()
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def on_term(signum: int, frame: Any) -> None:
        raise SystemExit(f"stopped by signal {signum}")

    signal.signal(signal.SIGTERM, on_term)  # so the finally below restores the original config
    args.out.mkdir(parents=True, exist_ok=True)
    keys = ("dashboard", "target", "app", "deployments", "replicas", "ramp", "step_s", "scale_timeout_s", "k",
            "deadline", "cpu_fit", "autoscaling")
    report: dict[str, Any] = {**lt.report_head(sys.argv, {k: getattr(args, k) for k in keys}), "restored": None}
    r = Run(args, report)
    code = 1
    try:
        code = experiment(r)
    except BaseException as exc:
        report["error"] = f"{type(exc).__name__}: {exc}"
        log(f"FAILED: {report['error']}")
        raise
    finally:
        r.restore()
        r.stage("restore")
        (args.out / "report.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
        try:
            (args.out / "report.md").write_text(sc.render_md(report))
        except Exception as exc:  # noqa: BLE001 - a partial report; report.json has it all
            log(f"report.md not written ({type(exc).__name__}: {exc})")
        log(f"report: {args.out / 'report.md'}")
    return code if report.get("restored") is not False else 1


if __name__ == "__main__":
    raise SystemExit(main())
