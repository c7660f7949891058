"""The pure parts of the scale bench (ltrr.sim.scale): sizes, the derived config, growth, ceiling, /proc, tables."""

from __future__ import annotations

import copy
import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest
import yaml

from ltrr.config import AppConfig
from ltrr.errors import ConfigError, InvalidRequest
from ltrr.ingest import index_targets
from ltrr.loadtest import ProcSample
from ltrr.sim import scale as sc
from ltrr.sim.bench_config import app_args

ROOT = Path(__file__).resolve().parents[2]
SERVE_CONFIG = ROOT / "deployments" / "serve_config.yaml"
GIB = 1024**3


# -- sizes -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text, sizes",
    [("58000,250000,1000000", (58_000, 250_000, 1_000_000)), (" 1_000_000 , 58000", (58_000, 1_000_000)), ("4", (4,))],
)
def test_parse_sizes_accepts_counts_and_sorts_them(text, sizes):
    assert sc.parse_sizes(text) == sizes


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "--sizes: must be comma-separated entity counts, e.g. 58000,250000; got ''"),
        ("58000,", "--sizes: must be comma-separated entity counts, e.g. 58000,250000; got '58000,'"),
        ("58k", "--sizes: '58k' is not a whole number of entities"),
        ("-5", "--sizes: '-5' is not a whole number of entities"),
        ("2.5e5", "--sizes: '2.5e5' is not a whole number of entities"),
        ("3", "--sizes: each size must be in [4, 100000000], got 3"),
        ("100000001", "--sizes: each size must be in [4, 100000000], got 100000001"),
        ("250000,58000,250_000", "--sizes: 250000 is given twice"),
    ],
)
def test_parse_sizes_rejects_with_a_message_naming_the_flag(text, message):
    with pytest.raises(InvalidRequest) as ei:
        sc.parse_sizes(text)
    assert str(ei.value) == message and ei.value.field == "--sizes"


def load_script(monkeypatch):
    spec = importlib.util.spec_from_file_location("bench_scale_script", ROOT / "scripts" / "bench_scale.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, mod)  # its dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def test_the_script_rejects_bad_sizes_naming_the_flag(capsys, monkeypatch):
    script = load_script(monkeypatch)
    assert script.parse_args([]).size_list == (58_000, 250_000, 1_000_000)
    with pytest.raises(SystemExit) as ei:
        script.parse_args(["--sizes", "58000,1M"])
    assert ei.value.code == 2
    last = capsys.readouterr().err.splitlines()[-1]  # "<prog>: error: ..."
    assert last.split(": ", 1)[1] == "error: --sizes: '1M' is not a whole number of entities"


# -- names and config ------------------------------------------------------------------------------------------
def test_scale_names():
    assert sc.scale_names(250_000) == sc.ScaleNames(
        size=250_000,
        var_dir="var/scale/250000",
        catalog_path="var/scale/250000/catalog.sqlite",
        entities_index="ltrr_entities_scale_250000",
        queries_index="ltrr_queries_scale_250000",
        collection="ltrr_entities_scale_250000",
        graph_cache="var/scale/250000/graph-cache",
    )
    assert sc.scale_names(58_000, "/tmp/s/").var_dir == "/tmp/s/58000"
    with pytest.raises(InvalidRequest, match=r"^n: must be an int >= 4, got 2$"):
        sc.scale_names(2)


def test_scale_config_points_every_path_and_index_at_the_size_and_keeps_the_rest():
    original = yaml.safe_load(SERVE_CONFIG.read_text())
    derived = sc.scale_config(original, 250_000)
    assert original == yaml.safe_load(SERVE_CONFIG.read_text())  # the input is not changed
    args, before = app_args(derived), app_args(original)
    assert (args["catalog_path"], args["events_path"]) == (
        "var/scale/250000/catalog.sqlite",
        "var/scale/250000/events.sqlite",
    )
    assert args["policy"]["checkpoint_dir"] == "var/scale/250000/policy"
    assert args["ranking"]["model_dir"] == "var/scale/250000/ranker"
    assert (args["ranking"]["retrain_after"], args["ranking"]["retrain_interval_s"]) == (1_000_000, 1e9)
    st, st0 = args["strategies"], before["strategies"]
    assert st["lexical"]["config"] == {**st0["lexical"]["config"], "index": "ltrr_entities_scale_250000"}
    assert st["memory"]["config"] == {**st0["memory"]["config"], "index": "ltrr_queries_scale_250000"}
    assert st["vector"]["config"] == {
        **st0["vector"]["config"],
        "collection": "ltrr_entities_scale_250000",
        "embedder": "hashing",
        "embedder_options": {},
        "embedding_cache": "",
    }
    assert st["graph"]["config"] == {**st0["graph"]["config"], "cache_dir": "var/scale/250000/graph-cache"}
    for name in st:  # everything but the config of each strategy is the app's
        assert {k: v for k, v in st[name].items() if k != "config"} == {
            k: v for k, v in st0[name].items() if k != "config"
        }
    changed = {"catalog_path", "events_path", "policy", "ranking", "strategies"}
    assert {k: v for k, v in args.items() if k not in changed} == {k: v for k, v in before.items() if k not in changed}
    assert {k: v for k, v in derived.items() if k != "applications"} == {
        k: v for k, v in original.items() if k != "applications"
    }
    # Validated, every strategy reads the size's catalog and writes its own targets (watermarks), none the app's.
    cfg, normal = AppConfig.model_validate(args), AppConfig.model_validate(before)
    assert cfg.catalog_path.endswith("/var/scale/250000/catalog.sqlite")
    assert cfg.strategy_config("graph").catalog_path == cfg.catalog_path  # type: ignore[attr-defined]
    assert cfg.strategy_config("graph").cache_dir.endswith("/var/scale/250000/graph-cache")  # type: ignore[attr-defined]
    assert set(index_targets(cfg).values()).isdisjoint(index_targets(normal).values())
    assert set(index_targets(cfg).values()).isdisjoint(index_targets(AppConfig.model_validate(
        app_args(sc.scale_config(original, 1_000_000))
    )).values())  # fmt: skip


def test_scale_config_renames_a_config_block_shared_by_a_yaml_alias_once_per_strategy():
    src = yaml.safe_load(
        """
applications:
  - name: ltrr
    import_path: deployments.app:build_app
    args:
      strategies:
        lexical: {config: &meili {url: "http://127.0.0.1:7700", api_key: "kkkkkkkkkkkkkkkk"}}
        memory: {config: *meili}
"""
    )
    assert (
        src["applications"][0]["args"]["strategies"]["lexical"]["config"]
        is (src["applications"][0]["args"]["strategies"]["memory"]["config"])
    )
    st = app_args(sc.scale_config(src, 58_000))["strategies"]
    assert (st["lexical"]["config"]["index"], st["memory"]["config"]["index"]) == (
        "ltrr_entities_scale_58000",
        "ltrr_queries_scale_58000",
    )
    assert "index" not in src["applications"][0]["args"]["strategies"]["lexical"]["config"]


def test_scale_config_names_what_is_wrong():
    with pytest.raises(ConfigError, match=r"^`serve_config` has no application named 'ltrr'$"):
        sc.scale_config({"applications": [{"name": "other"}]}, 58_000)
    with pytest.raises(InvalidRequest, match=r"^n: must be an int >= 4, got True$"):
        sc.scale_config(yaml.safe_load(SERVE_CONFIG.read_text()), True)


def test_scale_queries_are_seeded_and_drawn_from_the_catalog():
    titles, artists = ["Golden River", "Neon Heart", "Quiet Storm"], ["Maya Rivers", "The Iron Wolfs"]
    a = sc.scale_queries(titles, artists, 200, seed=3)
    assert a == sc.scale_queries(titles, artists, 200, seed=3) and a != sc.scale_queries(titles, artists, 200, seed=4)
    for q in a:
        swapped = any(len(q) == len(t) and sorted(q) == sorted(t) for t in titles)  # a title, maybe with a typo
        assert swapped or q in {f"artists like {x}" for x in artists} or q in sc.TAG_PHRASES, q
    assert {"rock", "smooth jazz", "thrash metal"} <= set(sc.TAG_PHRASES)
    assert len(set(sc.TAG_PHRASES)) == len(sc.TAG_PHRASES)


def test_parse_ingest_log_reads_the_last_summary_line_of_the_strategy():
    text = (
        "index lexical:  40%|####      | 2000/5000 [00:01<00:01]\rindex lexical: 100%|##########| 5000/5000\n"
        "INFO ltrr.ingest: index lexical: 5000 entities sent in 1.2 s\n"
        "==> index lexical: 4000 entities in 0.9 s\n"
        "==> index lexical: 5000 entities in 12.25 s\n"
        "ingest done in 13.0 s; catalog has 5000 entities\n"
    )
    assert sc.parse_ingest_log(text, "lexical") == (5000, 12.25)
    assert sc.parse_ingest_log(text, "vector") is None


# -- growth and ceiling ----------------------------------------------------------------------------------------
# Made-up ingest seconds: lexical 0.002 n (b = 1), vector 10^-3.5 n^1.5 (b = 1.5), graph 0.63 n^0.5 (b = 0.5).
# Graph costs most at 1,000 entities, but vector grows fastest.
INGEST = {
    "lexical": {1000: 2.0, 10_000: 20.0, 100_000: 200.0},
    "vector": {1000: 10.0, 10_000: 10**2.5, 100_000: 10**4.0},
    "graph": {1000: 20.0, 10_000: 20.0 * 10**0.5, 100_000: 200.0},
    "memory": {1000: 5.0},  # one size: no slope
}


def test_growth_fits_the_log_log_exponents():
    g = sc.growth(INGEST)
    assert g["lexical"] == pytest.approx(1.0) and g["vector"] == pytest.approx(1.5)
    assert g["graph"] == pytest.approx(0.5) and g["memory"] is None
    a, b = sc.fit_loglog({1000: 10.0, 100_000: 1000.0})  # type: ignore[misc]
    assert (b, math.exp(a)) == (pytest.approx(1.0), pytest.approx(0.01))
    assert sc.fit_loglog({1000: 0.0, 10_000: 3.0}) is None  # a zero cannot be on a log scale


def test_growth_sentence_names_the_steepest_strategy_not_the_slowest():
    assert sc.growth_sentence(INGEST, "ingest time") == (
        "The ingest time grows fastest for **vector**: as n^1.50 (log-log least-squares slope over "
        "1,000–100,000 entities), against lexical n^1.00, graph n^0.50."
    )
    tie = {"a": {10: 1.0, 100: 10.0}, "b": {10: 1.0, 100: 10.0}}
    assert sc.growth_sentence(tie, "cost").startswith("The cost grows fastest for **a**: as n^1.00")
    assert sc.growth_sentence({"lexical": {1000: 3.0}}, "ingest time") == (
        "Fewer than two catalog sizes measured the ingest time of any strategy: no growth to compare."
    )


def test_crossing_is_measured_or_extrapolated_on_the_fit():
    assert sc.crossing({1000: 10.0, 10_000: 500.0, 100_000: 2000.0}, 400.0) == (10_000.0, True)
    n, measured = sc.crossing({1000: 10.0, 100_000: 1000.0}, 10_000.0)  # type: ignore[misc]
    assert (n, measured) == (pytest.approx(1e6), False)  # y = 0.01 n reaches 10^4 at n = 10^6
    assert sc.crossing({1000: 10.0, 100_000: 5.0}, 100.0) is None  # it shrinks
    assert sc.crossing({1000: 10.0}, 100.0) is None


def test_ceiling_sentence_takes_the_smallest_limit():
    # RSS 1 -> 4 GiB over 1k -> 100k on a line: 3 GiB per 99k entities (31.8 KiB each); 8 GiB is 4 GiB more,
    # so 100k + 132k = 232k (a power law through the two points, n^0.30, would have said 1.0M).
    # vector p99 6 -> 60 ms (b = 0.5): its 600 ms deadline is 10x more, 100x the size: 10M.
    text = sc.ceiling_sentence(
        {1000: 1.0 * GIB, 100_000: 4.0 * GIB},
        8.0 * GIB,
        {"vector": {1000: 6.0, 100_000: 60.0}, "lexical": {1000: 5.0, 100_000: 5.0}, "graph": {1000: 1.0}},
        {"vector": 600.0, "lexical": 400.0, "graph": 400.0},
    )
    assert text == (
        "Memory: the servers' RSS (Meilisearch + Milvus + Ray) grows by 31.8 KiB per entity (a least-squares line "
        "over the sizes), 4.0 GiB at 100,000 entities; at that rate it fills this machine's 8.0 GiB at about 232k "
        "entities. Latency: vector's p99 (all four forced, 1 caller) reaches its 600 ms deadline at about 10.0M "
        "entities, the first strategy to (more callers reach it sooner). **Ceiling of this machine: about 232k "
        "entities** (set by memory)."
    )


def test_memory_crossing_is_on_a_line_with_a_fixed_part():
    # this session's 2-core measurements: 6,961 MiB at 58k, 9,566 MiB at 250k; 24,064 MiB of RAM
    n, measured, per = sc.linear_crossing({58_000: 6961.0, 250_000: 9566.0}, 24_064.0)  # type: ignore[misc]
    assert not measured and per == pytest.approx(2605.0 / 192_000)
    assert n == pytest.approx(250_000 + (24_064.0 - 9566.0) / (2605.0 / 192_000))  # about 1.32M
    assert sc.linear_crossing({1000: 5.0, 2000: 9.0, 3000: 20.0}, 8.0)[:2] == (2000.0, True)  # type: ignore[index]
    assert sc.linear_crossing({1000: 5.0, 2000: 4.0}, 8.0) is None  # it shrinks
    assert sc.linear_crossing({1000: 5.0}, 8.0) is None


def test_ceiling_sentence_with_a_measured_crossing_and_a_failed_size():
    text = sc.ceiling_sentence(
        {1000: 4.0 * GIB, 100_000: 4.0 * GIB},
        16.0 * GIB,
        {"vector": {1000: 700.0, 100_000: 900.0}},
        {"vector": 600.0},
        {250_000: "deploy: the scale app did not serve within 1800 s"},
    )
    assert text == (
        "Memory: the servers' RSS does not grow across these sizes, so it sets no ceiling here. Latency: vector's "
        "p99 (all four forced, 1 caller) reaches its 600 ms deadline already at 1,000 entities, the first strategy "
        "to (more callers reach it sooner). Failed: 250,000 (deploy: the scale app did not serve within 1800 s). "
        "**Ceiling of this machine: about 1k entities** (set by vector latency)."
    )
    flat = sc.ceiling_sentence({1000: GIB, 10_000: GIB}, 16.0 * GIB, {"vector": {1000: 9.0, 10_000: 9.0}},
                               {"vector": 600.0})  # fmt: skip
    assert flat.endswith(
        "Latency: no strategy's p99 grows towards its deadline across these sizes. "
        "**No ceiling within reach of these measurements.**"
    )
    full = sc.ceiling_sentence({1000: 20.0 * GIB}, 16.0 * GIB, {}, {})
    assert full.startswith("Memory: the servers' RSS already fills this machine's 16.0 GiB at 1,000 entities.")


def test_human_count():
    assert [sc.human_count(x) for x in (950, 58_000, 1_000_000, 12_345_678)] == ["950", "58k", "1.0M", "12.3M"]


# -- /proc -----------------------------------------------------------------------------------------------------
def fake_proc(root: Path, pid: int | str, cmdline: bytes | None, kb: int | None) -> None:
    d = root / str(pid)
    d.mkdir(parents=True)
    if cmdline is not None:
        (d / "cmdline").write_bytes(cmdline)
    if kb is not None:
        (d / "status").write_text(f"Name:\tx\nVmRSS:\t  {kb} kB\nThreads:\t4\n")


@pytest.fixture
def proc(tmp_path):
    root = tmp_path / "proc"
    fake_proc(
        root, 201, b"/w/var/bin/meilisearch\0--db-path\0/d\0--http-addr\x00127.0.0.1:7700\0--master-key\0k\0", 1000
    )
    fake_proc(root, 202, b"/tmp/bin/meilisearch\0--http-addr\x00127.0.0.1:45001\0", 50)  # a test's own server
    fake_proc(root, 203, b"/w/var/milvus-bin/2.3.5/milvus\0run\0standalone\0", 2000)
    fake_proc(root, 204, b"/usr/bin/python3\0-m\0ltrr.backends.milvus_server\0start\0", 70)
    fake_proc(root, 205, b"/bin/milvus\0run\0mixture\0", 80)
    fake_proc(root, 206, b"/opt/meilisearch\0", 24)  # Meilisearch's default address: localhost:7700
    fake_proc(root, 207, None, None)  # exited while listed
    fake_proc(root, "self", b"/w/var/bin/meilisearch\0", 1)  # not a pid
    return root


def test_server_pids_finds_meilisearch_on_its_port_and_milvus_standalone(proc):
    assert sc.server_pids(proc) == {"meilisearch": [201, 206], "milvus": [203]}
    assert sc.server_pids(proc, meili_port=45001) == {"meilisearch": [202], "milvus": [203]}
    assert sc.server_pids(proc / "nope") == {"meilisearch": [], "milvus": []}


def test_rss_of_sums_the_readable_pids(proc):
    assert sc.rss_of([201, 206, 999], proc) == (1000 + 24) * 1024
    assert sc.rss_of([207, 999], proc) is None
    assert sc.rss_of([], proc) is None


def test_ray_totals_and_meminfo():
    sample = {
        1: ProcSample(1, "ray::ServeReplica:ltrr:ingress", 100),
        2: ProcSample(2, "raylet", 50),
        3: ProcSample(3, "ray::ServeReplica:ltrr:ingress", 25),
        4: ProcSample(4, "ray::ServeReplica:ltrr:vector", 7),
    }
    assert sc.ray_totals(sample) == (182, 125)
    text = "MemTotal:       16384 kB\nMemAvailable:    8192 kB\nHugePages_Total:       0\n"
    assert sc.parse_meminfo(text) == {"MemTotal": 16384 * 1024, "MemAvailable": 8192 * 1024}


# -- records and tables ----------------------------------------------------------------------------------------
ROWS = [
    sc.IngestRow(
        58_000, "lexical", 15.04, 812.3, wall_s=17.46, sent=58_000, meili_peak_mib=1500.4, milvus_peak_mib=300.0
    ),
    sc.IngestRow(1_000_000, "graph", None, 9000.0, wall_s=7200.0, status="killed after 7200 s (--ingest-timeout-s)"),
]
SEARCH = [
    sc.SearchRow(250_000, 300, 41.26, 180.0, 20.04, 95.56, 2048.0, 1024.4, 6000.0, ingress_mib=1500.0, all_degraded=3,
                 policy_degraded=1, errors=2),
    sc.SearchRow(1_000_000, 300, None, None, None, None, None, None, None),
]  # fmt: skip


def test_ingest_table():
    assert sc.ingest_table(ROWS).splitlines() == [
        "| size | strategy | ingest s | peak RSS MiB | process s | entities | Meilisearch peak MiB | Milvus peak MiB "
        "| status |",
        "|---|---|---|---|---|---|---|---|---|",
        "| 58,000 | lexical | 15.0 | 812 | 17.5 | 58,000 | 1,500 | 300 | ok |",
        "| 1,000,000 | graph | – | 9,000 | 7,200.0 | – | – | – | killed after 7200 s (--ingest-timeout-s) |",
    ]


def test_search_table():
    assert sc.search_table(SEARCH).splitlines() == [
        "| size | searches | all four p50 / p99 ms | policy p50 / p99 ms | degraded all four / policy | errors "
        "| RSS Meilisearch MiB | RSS Milvus MiB | RSS Ray MiB | ingress replica MiB |",
        "|---|---|---|---|---|---|---|---|---|---|",
        "| 250,000 | 300 | 41.3 / 180.0 | 20.0 / 95.6 | 3 / 1 | 2 | 2,048 | 1,024 | 6,000 | 1,500 |",
        "| 1,000,000 | 300 | – | – | 0 / 0 | 0 | – | – | – | – |",
    ]


def test_strategy_latency_table():
    latency = {
        250_000: {"lexical": {"p50": 3.21, "p99": 9.0}, "vector": {"p50": 12.0, "p99": 30.56}},
        58_000: {"lexical": {"p50": 2.0, "p99": 4.0}},
    }
    assert sc.strategy_latency_table(latency, ["lexical", "vector"]).splitlines() == [
        "| size | lexical p50 / p99 ms | vector p50 / p99 ms |",
        "|---|---|---|",
        "| 58,000 | 2.0 / 4.0 | – |",
        "| 250,000 | 3.2 / 9.0 | 12.0 / 30.6 |",
    ]


def test_records_round_trip():
    for row in [*ROWS, *SEARCH]:
        assert type(row).from_dict(copy.deepcopy(row.to_dict())) == row


def test_render_md_holds_the_tables_and_sentences():
    report = {
        "command": "scripts/bench_scale.py --sizes 58000",
        "commit": "abc1234",
        "date": "2026-12-02 10:00 UTC",
        "machine": "2 cores, CPU, 15.6 GiB RAM",
        "notes": ["the hashing embedder"],
        "strategies": ["lexical", "vector"],
        "ingest": [r.to_dict() for r in ROWS],
        "search": [r.to_dict() for r in SEARCH],
        "strategy_latency": {"58000": {"lexical": {"p50": 2.0, "p99": 4.0}}},
        "sentences": {"ingest_growth": "GROWS", "search_growth": "SEARCH GROWS", "ceiling": "CEILING"},
        "timings_s": {"58000: generate": 12.34},
        "plot": "scale.png",
        "error": "KeyboardInterrupt: ",
    }
    md = sc.render_md(report)
    lines = md.splitlines()
    assert lines[0] == "# Scale: how the cost grows with the catalog"
    assert "- commit: abc1234; date: 2026-12-02 10:00 UTC" in lines and "- the hashing embedder" in lines
    assert sc.ingest_table(ROWS) in md and sc.search_table(SEARCH) in md
    assert "| 58,000 | 2.0 / 4.0 | – |" in lines
    for s in ("GROWS", "SEARCH GROWS", "CEILING", "**The run stopped early:** KeyboardInterrupt: "):
        assert s in lines
    assert "| 58000: generate | 12.3 |" in lines
    assert lines[-1] == "![ingest time and search p50 against catalog size](scale.png)"
    empty = sc.render_md({"command": "x"})
    assert "No strategy was ingested." in empty and "No size was served." in empty


def test_resummarise_rewrites_the_sentences_of_a_saved_run_without_servers(monkeypatch, tmp_path):
    # tests/data/scale-2026-12-02.json: the 58k/250k run of 2026-12-02 as bench_scale wrote it, whose ceiling
    # sentence came from the power law (17.5M); re-summarised, the line through its RSS gives about 1.3M.
    script = load_script(monkeypatch)
    saved = json.loads((ROOT / "tests" / "data" / "scale-2026-12-02.json").read_text())
    assert "about 17.5M entities" in saved["sentences"]["ceiling"]
    (tmp_path / "scale.json").write_text(json.dumps(saved))
    assert script.main(["--resummarise", "--out", str(tmp_path)]) == 0
    again = json.loads((tmp_path / "scale.json").read_text())
    assert "**Ceiling of this machine: about 1.3M entities** (set by memory)" in again["sentences"]["ceiling"]
    assert {k: v for k, v in again.items() if k not in ("sentences", "notes")} == {
        k: v for k, v in saved.items() if k not in ("sentences", "notes")
    }  # the figures are untouched
    md = (tmp_path / "scale.md").read_text()
    assert "about 1.3M entities" in md and (tmp_path / "scale.png").is_file()


def test_resummarise_without_a_saved_run_says_so(monkeypatch, tmp_path):
    script = load_script(monkeypatch)
    with pytest.raises(SystemExit, match="--resummarise: there is no .*scale.json"):
        script.main(["--resummarise", "--out", str(tmp_path)])


# -- --reuse, per strategy -----------------------------------------------------------------------------------------
class _Cfg:
    def enabled(self) -> dict[str, object]:
        return {s: object() for s in ("lexical", "vector", "graph", "memory")}


def _ingest_run(script, tmp_path, monkeypatch, *, reuse, complete_ones, statuses):
    """``script.ingest`` on size 10 under ``tmp_path`` with the index resets and the ``ltrr ingest`` children stood
    in for: ``complete_ones`` are the strategies whose index is complete, ``statuses`` each child's ending."""
    import types

    ran: list[str] = []

    def run_watched(cmd, log_path, **kw):
        name = cmd[cmd.index("--only") + 1]
        ran.append(name)
        status = statuses.get(name, "ok")
        out = f"==> index {name}: 10 entities in 1.5 s\n" if status == "ok" else ""
        return script.Finished(0 if status == "ok" else None, 2.0, 100 * 1024 * 1024, status, None, out)

    monkeypatch.setattr(script, "run_watched", run_watched)
    monkeypatch.setattr(script, "reset_index", lambda cfg, name: None)
    monkeypatch.setattr(script, "complete", lambda cfg, names: all(n in complete_ones for n in names))
    args = types.SimpleNamespace(reuse=reuse, ingest_timeout_s=60.0, min_free=0, sample_s=1.0)
    r = script.Run(args, {}, None, {}, {"notes": [], "ingest": []})
    names = sc.scale_names(10, var_root=str(tmp_path))
    (tmp_path / "10").mkdir(exist_ok=True)
    try:
        rows = script.ingest(r, names, tmp_path / "cfg.yaml", _Cfg())
    except script.SizeFailed as exc:
        rows = exc
    return ran, rows, r.report["notes"], json.loads((tmp_path / "10" / "ingest.json").read_text())


def test_reuse_goes_on_from_the_first_strategy_a_stopped_run_did_not_finish(tmp_path, monkeypatch):
    script = load_script(monkeypatch)
    ran, failed, _, record = _ingest_run(
        script, tmp_path, monkeypatch, reuse=False, complete_ones=(), statuses={"graph": "exit -15"}
    )
    assert ran == ["lexical", "vector", "graph"] and isinstance(failed, script.SizeFailed)
    assert [row["strategy"] for row in record["rows"]] == ["lexical", "vector"], "written after each ok ingest"
    assert all(row["date"] for row in record["rows"])

    ran, rows, notes, record = _ingest_run(
        script, tmp_path, monkeypatch, reuse=True, complete_ones=("lexical", "vector"), statuses={}
    )
    assert ran == ["graph", "memory"], "the two finished indexes are kept"
    assert [x.strategy for x in rows] == ["lexical", "vector", "graph", "memory"]
    assert all(x.status == "ok" and x.seconds == 1.5 for x in rows)
    assert notes == [f"10: {s}'s ingest figures reused from the run of {record['rows'][i]['date']}"
                     for i, s in enumerate(("lexical", "vector"))]  # fmt: skip
    assert [row["strategy"] for row in record["rows"]] == ["lexical", "vector", "graph", "memory"]


def test_reuse_re_ingests_an_incomplete_index_and_reads_a_record_with_one_date(tmp_path, monkeypatch):
    script = load_script(monkeypatch)
    (tmp_path / "10").mkdir()
    rows = [sc.IngestRow(10, s, 3.0, 50.0).to_dict() for s in ("lexical", "vector", "graph", "memory")]
    rows[3]["status"] = "exit -15"
    (tmp_path / "10" / "ingest.json").write_text(json.dumps({"date": "2026-12-01 10:00 UTC", "rows": rows}))
    assert sorted(sc.reusable_ingests(json.loads((tmp_path / "10" / "ingest.json").read_text()), 10)) == [
        "graph", "lexical", "vector"
    ]  # fmt: skip
    assert sc.reusable_ingests({"rows": rows}, 11) == {}, "another size's rows are not this one's"
    ran, got, notes, record = _ingest_run(
        script, tmp_path, monkeypatch, reuse=True, complete_ones=("lexical", "graph", "memory"), statuses={}
    )
    assert ran == ["vector", "memory"], "vector's index is incomplete; memory's earlier ingest did not end ok"
    assert [x.seconds for x in got] == [3.0, 1.5, 3.0, 1.5]
    assert notes == [
        "10: lexical's ingest figures reused from the run of 2026-12-01 10:00 UTC",
        "10: graph's ingest figures reused from the run of 2026-12-01 10:00 UTC",
    ]
    assert [row["date"] for row in record["rows"]][0::2] == ["2026-12-01 10:00 UTC"] * 2
