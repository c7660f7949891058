"""The pure parts of ``scripts/autoscale.py`` (``make autoscale``, issue 12 "Scaling"): Serve's two scaling paths.

Nothing here talks to a server or imports Ray. The inputs are plain dicts: Serve's details as
``GET /api/serve/applications/`` returns them (``ServeInstanceDetails``), and the declarative config that
``PUT /api/serve/applications/`` takes (``ServeDeploySchema``, what ``serve deploy`` and the dashboard send).

* **The running config** (:func:`deploy_config`): each application's ``deployed_app_config`` (what was deployed,
  unset options left out, as the controller stores it) with the instance's proxy location, HTTP and gRPC options.
  PUT back unchanged, it changes nothing; an application missing from a PUT is deleted, so every one is kept.
* **Changes** (:func:`with_replicas`, :func:`with_autoscaling`, :func:`with_actor_cpus`): entries of the
  application's ``deployments`` overrides, merged by name, never its ``args``. Serve's code version hashes the
  ``args``, so a change there restarts every replica; ``num_replicas`` and ``autoscaling_config`` in an override are
  a lightweight update (no restart). ``ray_actor_options`` is not: a new CPU reservation restarts the replicas.
  With ``autoscaling_config`` the override's ``num_replicas`` is ``"auto"`` (Serve refuses an integer beside it),
  and the application's ``external_scaler_enabled`` is off (Serve refuses it beside its own autoscaler).
* **CPU budget** (:func:`fit_cpus`): Serve places a replica only where its logical CPUs fit. With ``c_d`` the CPUs
  per replica of deployment ``d``, ``n_d`` its replicas now and ``p_d`` at the run's peak (``d`` in the scaled
  set ``S``), the peak needs ``sum_{d not in S} c_d n_d + sum_{d in S} c_d p_d``; past the cluster's ``total``, each
  ``c_d`` of ``S`` is multiplied by ``f = (total - sum_{d not in S} c_d n_d) / sum_{d in S} c_d p_d`` (rounded down
  to 0.01), so the peak fits and the deployments keep their ratio.
* **Replica counts** (:func:`replica_counts`, :func:`scaled_to`): per deployment Serve's target, its RUNNING
  replicas and its live replicas by state.
* **The load ramp** (:func:`parse_levels`, :func:`level_at`, :func:`answers_per_second`, :func:`ramp_steps`):
  closed-loop callers held at each level for ``step_s`` seconds; answers counted per whole second.
* **The report** (:func:`render_md`).
"""

from __future__ import annotations

import copy
import math
from collections import Counter
from typing import Any, Iterable, Mapping, Sequence

from ltrr.appconfig_io import APP_NAME
from ltrr.errors import ConfigError
from ltrr.loadtest import CallRecord, latency_summary, md_table
from ltrr.strategies.registry import STRATEGY_NAMES

RUNNING = "RUNNING"
#: Top-level keys of ``ServeInstanceDetails`` that a ``ServeDeploySchema`` takes back as they are.
INSTANCE_KEYS = ("proxy_location", "http_options", "grpc_options", "target_capacity")


# -- the declarative config ------------------------------------------------------------------------------------
def deploy_config(details: Mapping[str, Any]) -> dict[str, Any]:
    """The declarative config (``ServeDeploySchema``) of what runs, from Serve's details: every application's
    ``deployed_app_config`` and the instance's ``proxy_location``, ``http_options``, ``grpc_options`` and
    ``target_capacity`` (those that are set). Raises :class:`~ltrr.errors.ConfigError` when there is no
    application, or one has no stored config (deployed by ``serve.run``, or being deleted): a PUT without it
    would delete it."""
    apps = details.get("applications") or {}
    if not apps:
        raise ConfigError("no Serve application is running (`make up` first)")
    out: dict[str, Any] = {k: copy.deepcopy(details[k]) for k in INSTANCE_KEYS if details.get(k) is not None}
    out["applications"] = []
    for name, app in sorted(apps.items()):
        cfg = app.get("deployed_app_config")
        if not cfg:
            raise ConfigError(
                f"application {name!r} has no declarative config (deployed with serve.run, or being deleted); "
                "only an app deployed by `serve deploy` / the REST API can be changed through it"
            )
        out["applications"].append(copy.deepcopy(cfg))
    return out


def app_config(cfg: Mapping[str, Any], app: str = APP_NAME) -> dict[str, Any]:
    """Application ``app`` of a declarative config (the dict itself, not a copy); ConfigError naming those there."""
    for a in cfg.get("applications") or []:
        if a.get("name") == app:
            return a  # type: ignore[no-any-return]
    names = ", ".join(str(a.get("name")) for a in cfg.get("applications") or []) or "none"
    raise ConfigError(f"no application named {app!r} in the config; running: {names}")


def with_deployment_options(
    cfg: Mapping[str, Any], options: Mapping[str, Mapping[str, Any]], app: str = APP_NAME
) -> dict[str, Any]:
    """A copy of ``cfg`` with ``options[name]`` merged into the ``deployments`` override of deployment ``name`` of
    application ``app`` (added when absent); a value of None removes that key from the override."""
    out = copy.deepcopy(dict(cfg))
    overrides = app_config(out, app).setdefault("deployments", [])
    by_name = {d["name"]: d for d in overrides}
    for name, opts in options.items():
        entry = by_name.get(name)
        if entry is None:
            entry = {"name": name}
            overrides.append(entry)
            by_name[name] = entry
        for k, v in opts.items():
            if v is None:
                entry.pop(k, None)
            else:
                entry[k] = copy.deepcopy(v)
    return out


def with_replicas(cfg: Mapping[str, Any], replicas: Mapping[str, int], app: str = APP_NAME) -> dict[str, Any]:
    """``cfg`` with a fixed ``num_replicas`` per deployment (and no ``autoscaling_config`` override)."""
    for name, n in replicas.items():
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"`replicas[{name!r}]` must be an int >= 1, got {n!r}")
    return with_deployment_options(
        cfg, {name: {"num_replicas": n, "autoscaling_config": None} for name, n in replicas.items()}, app
    )


def with_autoscaling(
    cfg: Mapping[str, Any], autoscaling: Mapping[str, Mapping[str, Any]], app: str = APP_NAME
) -> dict[str, Any]:
    """``cfg`` with ``num_replicas: "auto"`` and ``autoscaling_config`` per deployment (Serve fills the keys left
    out with its defaults for ``"auto"``), and the application's ``external_scaler_enabled`` off: Serve (2.60)
    refuses an application with both, its own autoscaler and an external one (the dashboard's scale API)."""
    for name, a in autoscaling.items():
        lo, hi = a.get("min_replicas", 1), a.get("max_replicas")
        if hi is not None and hi < lo:
            raise ValueError(f"`{name}.max_replicas` must be at least `min_replicas` ({lo}), got {hi}")
    out = with_deployment_options(
        cfg, {name: {"num_replicas": "auto", "autoscaling_config": dict(a)} for name, a in autoscaling.items()}, app
    )
    target = app_config(out, app)
    if target.get("external_scaler_enabled"):
        target["external_scaler_enabled"] = False
    return out


def with_actor_cpus(
    cfg: Mapping[str, Any],
    cpus: Mapping[str, float],
    actor_options: Mapping[str, Mapping[str, Any]],
    app: str = APP_NAME,
) -> dict[str, Any]:
    """``cfg`` with ``ray_actor_options`` of each deployment of ``cpus``: its current options (``actor_options``,
    from Serve's details; an override replaces them whole) with ``num_cpus`` set. Restarts its replicas."""
    opts = {n: {"ray_actor_options": {**dict(actor_options.get(n) or {}), "num_cpus": c}} for n, c in cpus.items()}
    return with_deployment_options(cfg, opts, app)


def actor_options(details: Mapping[str, Any], app: str = APP_NAME) -> dict[str, dict[str, Any]]:
    """``{deployment: ray_actor_options}`` now applied (Serve's details)."""
    return {
        name: dict((d.get("deployment_config") or {}).get("ray_actor_options") or {})
        for name, d in _deployments(details, app).items()
    }


def forced_strategies(app_args: Mapping[str, Any]) -> list[str]:
    """The strategies enabled in the app's ``args`` (all by default): a search forced to them all reaches every
    strategy deployment (``vector``) on every call."""
    specs = app_args.get("strategies")
    if not specs:  # unset: the default, every registered strategy
        return list(STRATEGY_NAMES)
    return [n for n in STRATEGY_NAMES if n in specs and (specs[n] or {}).get("enabled", True)]


# -- replica counts --------------------------------------------------------------------------------------------
def _deployments(details: Mapping[str, Any], app: str) -> dict[str, Any]:
    return dict((((details.get("applications") or {}).get(app) or {}).get("deployments")) or {})


def replica_counts(details: Mapping[str, Any], app: str = APP_NAME) -> dict[str, dict[str, Any]]:
    """``{deployment: {"target", "running", "live", "states"}}`` in Serve's details: its target number of replicas,
    those RUNNING, all live ones, and how many are in each state."""
    out = {}
    for name, d in sorted(_deployments(details, app).items()):
        states = Counter(str(r.get("state", "")) for r in d.get("replicas") or [])
        out[name] = {
            "target": int(d.get("target_num_replicas") or 0),
            "running": states.get(RUNNING, 0),
            "live": sum(states.values()),
            "states": dict(sorted(states.items())),
        }
    return out


def scaled_to(counts: Mapping[str, Mapping[str, Any]], want: Mapping[str, int]) -> bool:
    """Whether each deployment of ``want`` has Serve's target at its number and exactly that many replicas, all
    RUNNING (none starting or stopping)."""
    return all(
        name in counts and counts[name]["target"] == n and counts[name]["running"] == n and counts[name]["live"] == n
        for name, n in want.items()
    )


def autoscaling_applied(details: Mapping[str, Any], names: Iterable[str], app: str = APP_NAME) -> bool:
    """Whether each deployment of ``names`` runs with an ``autoscaling_config`` (Serve's details)."""
    deps = _deployments(details, app)
    return all(bool(((deps.get(n) or {}).get("deployment_config") or {}).get("autoscaling_config")) for n in names)


# -- the CPU budget --------------------------------------------------------------------------------------------
def fit_cpus(
    per_replica: Mapping[str, float], replicas: Mapping[str, int], peak: Mapping[str, int], total: float
) -> dict[str, float]:
    """New CPUs per replica of the deployments of ``peak`` so that the run's peak fits in ``total`` logical CPUs
    (module docstring); ``{}`` when it fits as it is. ``per_replica`` and ``replicas`` cover every deployment of the
    app. Raises ``ValueError`` when the others alone leave no room, or a share would fall below 0.01."""
    for name in peak:
        if name not in per_replica:
            raise ValueError(f"`peak` names {name!r}, which is not a deployment; deployments: {', '.join(per_replica)}")
    fixed = sum(c * replicas.get(n, 0) for n, c in per_replica.items() if n not in peak)
    scaled = sum(per_replica[n] * p for n, p in peak.items())
    if fixed + scaled <= total + 1e-9 or scaled <= 0:
        return {}
    room = total - fixed
    if room <= 1e-9:
        raise ValueError(f"the other deployments hold {fixed:g} of {total:g} CPUs: no room to scale {', '.join(peak)}")
    f = room / scaled
    out = {n: math.floor(per_replica[n] * f * 100 + 1e-9) / 100 for n in peak}
    small = [n for n, c in out.items() if c < 0.01]
    if small:
        raise ValueError(f"{', '.join(small)} would get < 0.01 CPU per replica to fit {total:g} CPUs")
    return out


def cpu_need(per_replica: Mapping[str, float], replicas: Mapping[str, int]) -> float:
    """Logical CPUs of ``replicas`` replicas per deployment."""
    return round(sum(c * replicas.get(n, 0) for n, c in per_replica.items()), 4)


# -- the ramp --------------------------------------------------------------------------------------------------
def parse_levels(spec: str) -> list[int]:
    """``"1,4,16,4,1"`` as ``[1, 4, 16, 4, 1]``: callers per step, each in [1, 256]."""
    try:
        levels = [int(x) for x in spec.split(",") if x.strip()]
    except ValueError:
        raise ValueError(f"`levels` must be comma-separated integers, got {spec!r}") from None
    if not levels or any(not 1 <= n <= 256 for n in levels):
        raise ValueError(f"`levels` must be one or more integers in [1, 256], got {spec!r}")
    return levels


def parse_targets(spec: str) -> dict[str, float]:
    """``"vector=4,ingress=16"`` as ``{"vector": 4.0, "ingress": 16.0}``: each target > 0."""
    out: dict[str, float] = {}
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        name, eq, value = part.partition("=")
        try:
            v = float(value)
        except ValueError:
            v = math.nan
        if not eq or not name.strip() or not (math.isfinite(v) and v > 0):
            raise ValueError(f"`targets` must be name=number pairs with numbers > 0, got {part!r}")
        out[name.strip()] = v
    if not out:
        raise ValueError(f"`targets` must name at least one deployment, got {spec!r}")
    return out


def level_at(levels: Sequence[int], step_s: float, t: float) -> int | None:
    """Callers at ``t`` seconds into the ramp (step ``floor(t / step_s)``); None before 0 or after the last step."""
    if t < 0 or step_s <= 0:
        return None
    i = int(t // step_s)
    return levels[i] if i < len(levels) else None


def answers_per_second(records: Sequence[CallRecord], seconds: int) -> list[int]:
    """OK answers ended in each whole second ``[i, i + 1)`` of ``0 <= i < seconds``."""
    out = [0] * max(0, seconds)
    for r in records:
        i = int(math.floor(r.t_end))
        if r.status == "OK" and 0 <= i < len(out):
            out[i] += 1
    return out


def ramp_steps(
    levels: Sequence[int],
    step_s: float,
    records: Sequence[CallRecord],
    samples: Sequence[Mapping[str, Any]],
) -> list[dict[str, Any]]:
    """One row per step: its callers and time span, answers and answers per second, failures, latency of the OK
    answers, and per deployment the largest target and RUNNING count and the RUNNING count at its end (from the
    ``{"t", "replicas": replica_counts}`` samples in the step)."""
    rows = []
    for i, n in enumerate(levels):
        t0, t1 = i * step_s, (i + 1) * step_s
        recs = [r for r in records if t0 <= r.t_end < t1]
        ok = [r.latency_ms for r in recs if r.status == "OK"]
        inside = [s for s in samples if t0 <= s["t"] < t1]
        reps: dict[str, dict[str, int]] = {}
        for s in inside:
            for dep, c in s["replicas"].items():
                acc = reps.setdefault(dep, {"max_target": 0, "max_running": 0, "end_running": 0})
                acc["max_target"] = max(acc["max_target"], c["target"])
                acc["max_running"] = max(acc["max_running"], c["running"])
                acc["end_running"] = c["running"]
        lat = latency_summary(ok)
        rows.append(
            {
                "step": i + 1,
                "callers": n,
                "t0_s": round(t0, 2),
                "t1_s": round(t1, 2),
                "answers": len(ok),
                "answers_per_s": round(len(ok) / step_s, 2) if step_s > 0 else None,
                "failed": len(recs) - len(ok),
                "p50_ms": lat["p50"],
                "p99_ms": lat["p99"],
                "replicas": reps,
            }
        )
    return rows


def first_time(
    samples: Sequence[Mapping[str, Any]], dep: str, key: str, pred: Any, since: float = 0.0
) -> float | None:
    """``t`` of the first sample at or after ``since`` whose ``replicas[dep][key]`` satisfies ``pred``; None if none."""
    for s in samples:
        c = s["replicas"].get(dep)
        if s["t"] >= since and c is not None and pred(c[key]):
            return float(s["t"])
    return None


# -- the report ------------------------------------------------------------------------------------------------
def render_md(report: Mapping[str, Any]) -> str:
    """The Markdown of a run's report (the dict written as ``report.json``)."""
    cfg = report["config"]
    lines = [
        f"# Scaling the running app: the REST API and autoscaling under a ramp ({report['date']})",
        "",
        f"- command: `{report['command']}`",
        f"- machine: {report['machine']}; dashboard {cfg['dashboard']}; gRPC {cfg['target']}; application "
        f"`{cfg['app']}`",
        "- every search forced to all enabled strategies, so each one reaches the `vector` deployment",
    ]
    fit = report.get("cpu_fit") or {}
    if fit.get("lowered"):
        lines.append(
            f"- CPU budget: the peak needs {fit['need_peak']:g} logical CPUs of {fit['total_cpus']:g}; for the run "
            "`num_cpus` per replica was lowered to "
            + ", ".join(f"{n} {c:g} (from {fit['per_replica'][n]:g})" for n, c in fit["lowered"].items())
            + " (a rolling restart, before any timing), and restored at the end"
        )
    elif fit.get("total_cpus") is not None:
        lines.append(f"- CPU budget: the peak needs {fit['need_peak']:g} logical CPUs of {fit['total_cpus']:g}")
    rest = report.get("rest")
    if rest:
        lines += [
            "",
            "## Replicas changed through the REST API (`PUT /api/serve/applications/`, what `serve deploy` and the "
            "dashboard send)",
            "",
            md_table(
                ("change", "deployments", "reached", "seconds", "bound s"),
                [
                    [f"num_replicas 1 → {rest['replicas']}", ", ".join(rest["deployments"]), _yes(rest["up_reached"]),
                     rest["up_s"], cfg["scale_timeout_s"]],
                    [f"num_replicas {rest['replicas']} → 1", ", ".join(rest["deployments"]), _yes(rest["down_reached"]),
                     rest["down_s"], cfg["scale_timeout_s"]],
                ],
            ),
            "",
            "Seconds from the PUT until Serve's target and its replicas, all RUNNING, were at the new number.",
        ]
    ramp = report.get("ramp")
    if ramp:
        auto = cfg["autoscaling"]
        deps = list(auto)
        lines += [
            "",
            "## Autoscaling under a load ramp",
            "",
            "- " + "; ".join(
                f"`{n}`: min {a['min_replicas']}, max {a['max_replicas']}, target_ongoing_requests "
                f"{a['target_ongoing_requests']:g}, upscale_delay_s {a['upscale_delay_s']:g}, downscale_delay_s "
                f"{a['downscale_delay_s']:g}, look_back_period_s {a['look_back_period_s']:g}"
                for n, a in auto.items()
            ),
            f"- closed-loop callers {' → '.join(str(n) for n in ramp['levels'])}, {ramp['step_s']:g} s each; replicas "
            "sampled once a second",
            "",
            md_table(
                ("step", "callers", "answers/s", "failed", "p50 ms", "p99 ms")
                + tuple(f"{d} running (max / end)" for d in deps)
                + tuple(f"{d} target (max)" for d in deps),
                [
                    [s["step"], s["callers"], s["answers_per_s"], s["failed"], s["p50_ms"], s["p99_ms"]]
                    + [_pair(s["replicas"].get(d)) for d in deps]
                    + [(s["replicas"].get(d) or {}).get("max_target") for d in deps]
                    for s in ramp["steps"]
                ],
            ),
            "",
            "Seconds into the ramp of the first sample with more than one replica RUNNING: "
            + ", ".join(f"{d} {ramp['first_upscale_s'].get(d)}" for d in deps)
            + "; back to one after the peak: "
            + ", ".join(f"{d} {ramp['back_to_one_s'].get(d)}" for d in deps),
            "",
            f"![replicas and answers per second over the ramp]({report.get('plot', 'autoscale.png')})",
        ]
    lines += ["", f"Original config restored: **{_yes(report.get('restored'))}**"]
    if report.get("timings_s"):
        lines += ["", "Stages (s): " + ", ".join(f"{k} {v}" for k, v in report["timings_s"].items())]
    if report.get("notes"):
        lines += ["", "## Notes", "", *[f"- {n}" for n in report["notes"]]]
    return "\n".join(lines) + "\n"


def _yes(x: object) -> str:
    return "yes" if x else "NO"


def _pair(c: Mapping[str, int] | None) -> str:
    return "–" if not c else f"{c['max_running']} / {c['end_running']}"
