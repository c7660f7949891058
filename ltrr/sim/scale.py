r"""The pure parts of ``scripts/bench_scale.py`` (issue 10, "Scale: how the cost grows with the catalog").

Nothing here talks to a server; Linux ``/proc`` is read through a ``proc_root`` argument so tests point it at a
fake tree.

* **Sizes** (:func:`parse_sizes`): ``--sizes 58000,250000,1000000``, each within the synthetic generator's bounds.
* **Names and config** (:func:`scale_names`, :func:`scale_config`): each size ``n`` keeps all its state under
  ``var/scale/<n>/`` and its own index names beside the app's:

  ================================ ===================================================================
  ``args.catalog_path``            ``var/scale/<n>/catalog.sqlite`` (the synthetic catalog)
  ``args.events_path``             ``var/scale/<n>/events.sqlite``
  ``args.policy.checkpoint_dir``   ``var/scale/<n>/policy`` (each size starts from the policy's prior)
  ``args.ranking.model_dir``       ``var/scale/<n>/ranker``; never retrained during a run
  ``strategies.lexical...index``   ``ltrr_entities_scale_<n>`` (Meilisearch)
  ``strategies.memory...index``    ``ltrr_queries_scale_<n>`` (Meilisearch)
  ``strategies.vector...``         collection ``ltrr_entities_scale_<n>`` (Milvus), the ``hashing`` embedder
                                   (:class:`ltrr.embedder.HashingEmbedder`), no embedding cache
  ``strategies.graph...cache_dir`` ``var/scale/<n>/graph-cache``
  ================================ ===================================================================

  The first four come from :func:`ltrr.sim.bench_config.bench_config`; everything else is the app's.
* **Growth** (:func:`fit_loglog`, :func:`growth_sentence`): a cost :math:`y` measured at catalog sizes
  :math:`n_i` is fitted as :math:`y \approx e^a n^b` by least squares of :math:`\ln y` on :math:`\ln n`
  (:func:`ltrr.loadtest.ls_slope`); the exponent :math:`b` is the growth (1: linear, 2: quadratic), and the
  strategy with the largest :math:`b` grows fastest.
* **Ceiling** (:func:`crossing`, :func:`linear_crossing`, :func:`ceiling_sentence`): the size at which a fitted
  cost reaches a limit. Memory is fitted as a line, :math:`y \approx a + b n` (least squares; a fixed part, the
  servers and the app's own indexes, plus a cost per entity), so :math:`n^* = (L - a) / b` for :math:`b > 0`: a
  power law through a large fixed part reads it as slow growth and puts the ceiling far too high (2 GiB of
  growth over 58k-250k entities on a 7 GiB base fitted as :math:`n^{0.22}`, a ceiling of 17.5M entities, where
  the line says 1.3M). Latency, whose growth is the question, keeps the power law,
  :math:`n^* = \exp((\ln L - a) / b)`: each strategy's p99 against its deadline (``timeout_ms``); and the
  first size that failed outright.
* **Processes** (:func:`server_pids`, :func:`rss_of`, :func:`ray_totals`, :func:`parse_meminfo`) and the
  report's tables (:func:`ingest_table`, :func:`search_table`, :func:`strategy_latency_table`,
  :func:`render_md`).
"""

from __future__ import annotations

import copy
import math
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from ltrr.appconfig_io import APP_NAME
from ltrr.catalog.synthetic import GENRES, MAX_ENTITIES
from ltrr.errors import InvalidRequest
from ltrr.loadtest import MIB, ProcSample, ls_slope, make_queries, md_table, parse_cmdline, parse_vm_rss, pid_dirs

DEFAULT_SIZES = (58_000, 250_000, 1_000_000)
SCALE_VAR_DIR = "var/scale"
MIN_SIZE = 4
#: What the ranker trainer needs to retrain during a run: never (the run measures cost, not learning).
NO_RETRAIN = {"retrain_after": 1_000_000, "retrain_interval_s": 1e9}
#: The synthetic catalog's genres and tags, the phrases of the non-title queries (:func:`scale_queries`).
TAG_PHRASES: tuple[str, ...] = tuple(dict.fromkeys([*GENRES, *(t for tags in GENRES.values() for t in tags)]))
INGRESS_LABEL = "ServeReplica:ltrr:ingress"


# -- sizes, names, config ----------------------------------------------------------------------------------
def parse_sizes(text: str) -> tuple[int, ...]:
    """``--sizes``: comma-separated entity counts (``_`` allowed as in ``1_000_000``), each in
    [:data:`MIN_SIZE`, ``MAX_ENTITIES``], none twice; returned in increasing order. Raises
    :class:`~ltrr.errors.InvalidRequest` naming ``--sizes``."""
    items = [s.strip() for s in str(text).split(",")]
    if not any(items) or any(not s for s in items):
        raise InvalidRequest("--sizes", f"must be comma-separated entity counts, e.g. 58000,250000; got {text!r}")
    out: list[int] = []
    for s in items:
        if not re.fullmatch(r"[0-9]+(_[0-9]+)*", s):
            raise InvalidRequest("--sizes", f"{s!r} is not a whole number of entities")
        n = int(s)
        if not MIN_SIZE <= n <= MAX_ENTITIES:
            raise InvalidRequest("--sizes", f"each size must be in [{MIN_SIZE}, {MAX_ENTITIES}], got {n}")
        if n in out:
            raise InvalidRequest("--sizes", f"{n} is given twice")
        out.append(n)
    return tuple(sorted(out))


@dataclass(frozen=True)
class ScaleNames:
    """Where one catalog size keeps its state, and its index names."""

    size: int
    var_dir: str
    catalog_path: str
    entities_index: str
    queries_index: str
    collection: str
    graph_cache: str


def scale_names(n: int, var_root: str = SCALE_VAR_DIR) -> ScaleNames:
    """The state and index names of catalog size ``n`` (module docstring)."""
    if isinstance(n, bool) or not isinstance(n, int) or n < MIN_SIZE:
        raise InvalidRequest("n", f"must be an int >= {MIN_SIZE}, got {n!r}")
    base = f"{var_root.rstrip('/')}/{n}"
    return ScaleNames(
        size=n,
        var_dir=base,
        catalog_path=f"{base}/catalog.sqlite",
        entities_index=f"ltrr_entities_scale_{n}",
        queries_index=f"ltrr_queries_scale_{n}",
        collection=f"ltrr_entities_scale_{n}",
        graph_cache=f"{base}/graph-cache",
    )


def scale_config(serve_cfg: Mapping[str, Any], n: int, *, var_root: str = SCALE_VAR_DIR) -> dict[str, Any]:
    """The Serve config that serves catalog size ``n`` (module docstring), from the app's; the input is not
    changed. Raises :class:`~ltrr.errors.ConfigError` naming the field."""
    from ltrr.sim.bench_config import bench_config, check_app_args

    names = scale_names(n, var_root)
    src = copy.deepcopy(dict(serve_cfg))
    for app in src.get("applications") or []:  # a block shared by a YAML alias is renamed once per strategy
        for spec in ((app.get("args") or {}).get("strategies") or {}).values():
            if isinstance(spec, dict):
                spec["config"] = copy.deepcopy(spec.get("config") or {})
    out = bench_config(src, var_dir=names.var_dir, memory_index=names.queries_index)
    args = next(a for a in out["applications"] if a.get("name") == APP_NAME)["args"]
    strategies = args.get("strategies") or {}
    if "lexical" in strategies:
        strategies["lexical"]["config"]["index"] = names.entities_index
    if "vector" in strategies:
        strategies["vector"]["config"].update(
            collection=names.collection, embedder="hashing", embedder_options={}, embedding_cache=""
        )
    if "graph" in strategies:
        strategies["graph"]["config"]["cache_dir"] = names.graph_cache
    args.setdefault("ranking", {}).update(NO_RETRAIN)
    check_app_args(args, "scale config")
    return out


def scale_queries(titles: Sequence[str], artists: Sequence[str], n: int, seed: int = 0) -> list[str]:
    """``n`` seeded queries over a catalog (:func:`ltrr.loadtest.make_queries`): popular titles (some with a
    typo), ``artists like X``, and the synthetic catalog's genres and tags (:data:`TAG_PHRASES`)."""
    return make_queries(titles, artists, n, seed, semantic=TAG_PHRASES)


def parse_ingest_log(text: str, strategy: str) -> tuple[int, float] | None:
    """``(entities sent, seconds)`` from the last ``==> index <strategy>: N entities in S s`` line that
    ``ltrr ingest`` prints (:func:`ltrr.ingest.sync_all`); None when there is none."""
    found = re.findall(rf"^==> index {re.escape(strategy)}: (\d+) entities in ([0-9.]+) s$", text, re.M)
    return (int(found[-1][0]), float(found[-1][1])) if found else None


# -- growth and ceiling ------------------------------------------------------------------------------------
def fit_loglog(points: Mapping[int, float]) -> tuple[float, float] | None:
    """``(a, b)`` of :math:`\\ln y = a + b \\ln n` fitted to the points with ``y > 0``; None with fewer than two
    distinct sizes."""
    kept = sorted((n, y) for n, y in points.items() if y is not None and y > 0 and n > 0)
    if len({n for n, _ in kept}) < 2:
        return None
    xs, ys = [math.log(n) for n, _ in kept], [math.log(y) for _, y in kept]
    b = ls_slope(xs, ys)
    return sum(ys) / len(ys) - b * sum(xs) / len(xs), b


def growth(series: Mapping[str, Mapping[int, float]]) -> dict[str, float | None]:
    """The log-log exponent :math:`b` of each series (:func:`fit_loglog`), None where it cannot be fitted."""
    return {name: (None if (fit := fit_loglog(pts)) is None else fit[1]) for name, pts in series.items()}


def growth_sentence(series: Mapping[str, Mapping[int, float]], what: str) -> str:
    """One sentence naming the series whose ``what`` grows fastest (largest log-log exponent; the first listed
    on a tie), with every other exponent."""
    slopes = {k: b for k, b in growth(series).items() if b is not None}
    if not slopes:
        return f"Fewer than two catalog sizes measured the {what} of any strategy: no growth to compare."
    best = max(slopes, key=lambda k: slopes[k])
    sizes = sorted({n for k in slopes for n, y in series[k].items() if y is not None and y > 0})
    text = (
        f"The {what} grows fastest for **{best}**: as n^{slopes[best]:.2f} (log-log least-squares slope over "
        f"{sizes[0]:,}–{sizes[-1]:,} entities)"
    )
    others = [f"{k} n^{b:.2f}" for k, b in slopes.items() if k != best]
    return text + (f", against {', '.join(others)}." if others else ".")


def crossing(points: Mapping[int, float], limit: float) -> tuple[float, bool] | None:
    """Where ``y`` reaches ``limit``: ``(n, True)`` for the smallest measured ``n`` with ``y >= limit``, else
    ``(n*, False)`` where the log-log fit reaches it (module docstring); None when it cannot be fitted or does
    not grow (``b <= 0``)."""
    hit = [n for n, y in sorted(points.items()) if y is not None and y >= limit]
    if hit:
        return float(hit[0]), True
    fit = fit_loglog(points)
    if fit is None or fit[1] <= 0:
        return None
    a, b = fit
    return math.exp((math.log(limit) - a) / b), False


def linear_crossing(points: Mapping[int, float], limit: float) -> tuple[float, bool, float] | None:
    """Where ``y`` reaches ``limit`` on the least-squares line :math:`y = a + b n`: ``(n, True, b)`` for the smallest
    measured ``n`` with ``y >= limit``, else ``(n*, False, b)``; None with fewer than two sizes or when ``y`` does
    not grow (``b <= 0``). ``b`` is the growth per entity."""
    kept = sorted((n, y) for n, y in points.items() if y is not None and n > 0)
    if len({n for n, _ in kept}) < 2:
        return None
    b = ls_slope([float(n) for n, _ in kept], [y for _, y in kept])
    hit = [n for n, y in kept if y >= limit]
    if hit:
        return float(hit[0]), True, b
    if b <= 0:
        return None
    a = sum(y for _, y in kept) / len(kept) - b * sum(n for n, _ in kept) / len(kept)
    return (limit - a) / b, False, b


def human_count(n: float) -> str:
    """``1.2M``, ``580k``, ``950``."""
    if n >= 1e6:
        return f"{n / 1e6:.1f}M"
    return f"{n / 1e3:.0f}k" if n >= 1e3 else f"{n:.0f}"


def ceiling_sentence(
    server_rss: Mapping[int, float],
    mem_total: float,
    p99: Mapping[str, Mapping[int, float]],
    deadlines_ms: Mapping[str, float],
    failed: Mapping[int, str] | None = None,
) -> str:
    """The machine's ceiling from the measurements: ``server_rss`` (bytes, Meilisearch + Milvus + Ray, per size)
    against ``mem_total`` (bytes), each strategy's ``p99`` (ms, per size) against its deadline, and the sizes
    that ``failed`` (with why). The ceiling is the smallest of the three."""
    parts: list[str] = []
    limits: list[tuple[float, str]] = []
    gib = mem_total / (1024 * MIB)
    full_at = [n for n, y in sorted(server_rss.items()) if y is not None and y >= mem_total]
    mem = linear_crossing(server_rss, mem_total)
    if full_at:
        parts.append(
            f"Memory: the servers' RSS already fills this machine's {gib:.1f} GiB at {full_at[0]:,.0f} entities."
        )
        limits.append((float(full_at[0]), "memory"))
    elif mem is not None:
        top = max(server_rss)
        parts.append(
            f"Memory: the servers' RSS (Meilisearch + Milvus + Ray) grows by {mem[2] / 1024:,.1f} KiB per entity "
            f"(a least-squares line over the sizes), {server_rss[top] / (1024 * MIB):.1f} GiB at {top:,} entities; "
            f"at that rate it fills this machine's {gib:.1f} GiB at about {human_count(mem[0])} entities."
        )
        limits.append((mem[0], "memory"))
    else:
        parts.append("Memory: the servers' RSS does not grow across these sizes, so it sets no ceiling here.")
    lat = [(c, s) for s in p99 if s in deadlines_ms and (c := crossing(p99[s], deadlines_ms[s])) is not None]
    if lat:
        (n_lat, measured), s = min(lat, key=lambda cs: cs[0][0])
        where = f"already at {n_lat:,.0f}" if measured else f"at about {human_count(n_lat)}"
        parts.append(
            f"Latency: {s}'s p99 (all four forced, 1 caller) reaches its {deadlines_ms[s]:g} ms deadline {where} "
            "entities, the first strategy to (more callers reach it sooner)."
        )
        limits.append((n_lat, f"{s} latency"))
    else:
        parts.append("Latency: no strategy's p99 grows towards its deadline across these sizes.")
    if failed:
        parts.append("Failed: " + "; ".join(f"{n:,} ({why})" for n, why in sorted(failed.items())) + ".")
        limits.append((float(min(failed)), "a failed size"))
    if limits:
        n, why = min(limits)
        parts.append(f"**Ceiling of this machine: about {human_count(n)} entities** (set by {why}).")
    else:
        parts.append("**No ceiling within reach of these measurements.**")
    return " ".join(parts)


# -- /proc -------------------------------------------------------------------------------------------------
def _meili_port(argv: Sequence[str]) -> int | None:
    addr = next((argv[i + 1] for i, a in enumerate(argv[:-1]) if a == "--http-addr"), "localhost:7700")
    port = addr.rpartition(":")[2]
    return int(port) if port.isdigit() else None


def server_pids(proc_root: str | os.PathLike[str] = "/proc", *, meili_port: int = 7700) -> dict[str, list[int]]:
    """The pids of the servers the strategies use: ``meilisearch`` (an executable of that name listening on
    ``meili_port``: ``--http-addr host:port``, default 7700) and ``milvus`` (``milvus run standalone``)."""
    out: dict[str, list[int]] = {"meilisearch": [], "milvus": []}
    for d in sorted(pid_dirs(proc_root), key=lambda d: int(d.name)):
        try:
            argv = parse_cmdline((d / "cmdline").read_bytes())
        except OSError:
            continue
        exe = os.path.basename(argv[0]) if argv else ""
        if exe == "meilisearch" and _meili_port(argv) == meili_port:
            out["meilisearch"].append(int(d.name))
        elif exe == "milvus" and argv[1:3] == ["run", "standalone"]:
            out["milvus"].append(int(d.name))
    return out


def rss_of(pids: Sequence[int], proc_root: str | os.PathLike[str] = "/proc") -> int | None:
    """The summed ``VmRSS`` (bytes) of ``pids``; None when none of them can be read."""
    total, seen = 0, False
    for pid in pids:
        try:
            rss = parse_vm_rss((Path(proc_root) / str(pid) / "status").read_text(encoding="utf-8", errors="replace"))
        except OSError:
            continue
        if rss is not None:
            total, seen = total + rss, True
    return total if seen else None


def ray_totals(sample: Mapping[int, ProcSample]) -> tuple[int, int]:
    """``(every Ray process, the ltrr ingress replicas)``: summed RSS in bytes of a
    :func:`ltrr.loadtest.scan_processes` scan."""
    return sum(p.rss for p in sample.values()), sum(p.rss for p in sample.values() if INGRESS_LABEL in p.label)


def parse_meminfo(text: str) -> dict[str, int]:
    """``/proc/meminfo`` in bytes, e.g. ``{"MemTotal": ..., "MemAvailable": ...}`` (``kB`` lines only)."""
    out = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if len(parts) == 2 and parts[1] == "kB" and parts[0].isdigit():
            out[key.strip()] = int(parts[0]) * 1024
    return out


# -- records and tables ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class IngestRow:
    """One strategy's ingest at one size: ``seconds`` and ``sent`` as ``ltrr ingest`` reports its sync (the
    strategy built, every entity sent, the index refreshed), ``wall_s`` the whole process, ``peak_rss_mib``
    its peak RSS, and the servers' peak RSS meanwhile; ``status`` is ``ok`` or what went wrong."""

    size: int
    strategy: str
    seconds: float | None
    peak_rss_mib: float | None
    wall_s: float | None = None
    sent: int | None = None
    meili_peak_mib: float | None = None
    milvus_peak_mib: float | None = None
    status: str = "ok"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> IngestRow:
        return cls(**dict(d))


def reusable_ingests(saved: Mapping[str, Any], size: int) -> dict[str, tuple[IngestRow, str]]:
    """The ingests of an earlier run's ``ingest.json`` (``saved``) that ``--reuse`` may keep, by strategy: each
    strategy's ``ok`` row of ``size`` with the date it was measured. A record holds one row per strategy as
    soon as that strategy's ingest ended ``ok`` (:func:`ingest_record`), so a run stopped at its third strategy
    leaves the first two reusable. Older records have one ``date`` for all their rows."""
    out: dict[str, tuple[IngestRow, str]] = {}
    for d in saved.get("rows", ()):
        row = IngestRow.from_dict({k: v for k, v in d.items() if k != "date"})
        if row.status == "ok" and row.size == size:
            out[row.strategy] = (row, str(d.get("date") or saved.get("date") or "an earlier run"))
    return out


def ingest_record(rows: Mapping[str, tuple[IngestRow, str]], order: Sequence[str]) -> dict[str, Any]:
    """``ingest.json``: the rows in ``rows`` (by strategy, each with its date; only ``ok`` ingests are kept) in
    ``order``."""
    return {"rows": [{**rows[n][0].to_dict(), "date": rows[n][1]} for n in order if n in rows]}


@dataclass(frozen=True)
class SearchRow:
    """One size's searches at 1 caller: p50/p99 (ms) with all four strategies forced and with the policy
    deciding, the answers marked degraded and the calls that failed, and the RSS (MiB) of each server while the
    searches ran (the largest sample)."""

    size: int
    searches: int
    all_p50_ms: float | None
    all_p99_ms: float | None
    policy_p50_ms: float | None
    policy_p99_ms: float | None
    meili_mib: float | None
    milvus_mib: float | None
    ray_mib: float | None
    ingress_mib: float | None = None
    all_degraded: int = 0
    policy_degraded: int = 0
    errors: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SearchRow:
        return cls(**dict(d))


def _f(x: float | None, digits: int) -> str | None:
    return None if x is None else f"{x:,.{digits}f}"


def _pair(a: float | None, b: float | None) -> str | None:
    return None if a is None or b is None else f"{a:.1f} / {b:.1f}"


def ingest_table(rows: Sequence[IngestRow]) -> str:
    """The ingest table: one row per size and strategy."""
    return md_table(
        ("size", "strategy", "ingest s", "peak RSS MiB", "process s", "entities", "Meilisearch peak MiB",
         "Milvus peak MiB", "status"),
        [
            [f"{r.size:,}", r.strategy, _f(r.seconds, 1), _f(r.peak_rss_mib, 0), _f(r.wall_s, 1),
             None if r.sent is None else f"{r.sent:,}", _f(r.meili_peak_mib, 0), _f(r.milvus_peak_mib, 0), r.status]
            for r in rows
        ],
    )  # fmt: skip


def search_table(rows: Sequence[SearchRow]) -> str:
    """The search table: one row per size."""
    return md_table(
        ("size", "searches", "all four p50 / p99 ms", "policy p50 / p99 ms", "degraded all four / policy",
         "errors", "RSS Meilisearch MiB", "RSS Milvus MiB", "RSS Ray MiB", "ingress replica MiB"),
        [
            [f"{r.size:,}", r.searches, _pair(r.all_p50_ms, r.all_p99_ms), _pair(r.policy_p50_ms, r.policy_p99_ms),
             f"{r.all_degraded} / {r.policy_degraded}", r.errors, _f(r.meili_mib, 0), _f(r.milvus_mib, 0),
             _f(r.ray_mib, 0), _f(r.ingress_mib, 0)]
            for r in rows
        ],
    )  # fmt: skip


def strategy_latency_table(latency: Mapping[int, Mapping[str, Mapping[str, Any]]], strategies: Sequence[str]) -> str:
    """Each strategy's own call latency (``StrategyCall.latency_ms`` of the all-four searches), p50 / p99 ms per
    size; ``latency[size][strategy]`` holds ``p50`` and ``p99``."""
    rows = []
    for size in sorted(latency):
        cells: list[object] = [f"{size:,}"]
        for s in strategies:
            st = latency[size].get(s) or {}
            cells.append(_pair(st.get("p50"), st.get("p99")))
        rows.append(cells)
    return md_table(("size", *(f"{s} p50 / p99 ms" for s in strategies)), rows)


def render_md(report: Mapping[str, Any]) -> str:
    """The Markdown of a scale report (the dict ``scripts/bench_scale.py`` writes as ``scale.json``)."""
    ingest = [IngestRow.from_dict(d) for d in report.get("ingest", [])]
    search = [SearchRow.from_dict(d) for d in report.get("search", [])]
    latency = {int(k): v for k, v in (report.get("strategy_latency") or {}).items()}
    sentences = report.get("sentences") or {}
    head = [
        "# Scale: how the cost grows with the catalog",
        "",
        f"- command: `{report.get('command', '')}`",
        f"- commit: {report.get('commit', '–')}; date: {report.get('date', '–')}",
        f"- machine: {report.get('machine', '–')}",
        *(f"- {note}" for note in report.get("notes", [])),
        "",
        "## Ingest",
        "",
        ingest_table(ingest) if ingest else "No strategy was ingested.",
        "",
        sentences.get("ingest_growth", ""),
        "",
        "## Search",
        "",
        search_table(search) if search else "No size was served.",
        "",
        "Each strategy's own latency in the all-four searches:",
        "",
        strategy_latency_table(latency, report.get("strategies", [])) if latency else "–",
        "",
        sentences.get("search_growth", ""),
        "",
        "## Ceiling",
        "",
        sentences.get("ceiling", ""),
        "",
    ]
    if report.get("error"):
        head += [f"**The run stopped early:** {report['error']}", ""]
    timings = report.get("timings_s") or {}
    if timings:
        head += ["## Timings", "", md_table(("phase", "s"), [[k, f"{v:,.1f}"] for k, v in timings.items()]), ""]
    if report.get("plot"):
        head += [f"![ingest time and search p50 against catalog size]({report['plot']})", ""]
    return "\n".join(head)
