"""The load tests' pure parts (percentiles, the memory slope, /proc parsing, the open-loop schedule, the
reports), and one short end-to-end run of each script against a fake SearchService on a free loopback port."""

import json
import os
import sqlite3
import subprocess
import sys
import threading
from collections import Counter
from concurrent import futures
from pathlib import Path

import grpc
import pytest

from ltrr import loadtest as lt
from ltrr.v1 import search_pb2 as pb
from ltrr.v1 import search_pb2_grpc as pb_grpc

ROOT = Path(__file__).resolve().parents[2]
MIB = lt.MIB


# -- statistics ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "p, expected",
    [
        # sorted 15 20 35 40 50, h = 4p/100: p=40 -> h=1.6 -> 20 + 0.6 * (35 - 20) = 29
        (40, 29.0),
        (0, 15.0),
        (50, 35.0),  # h = 2
        (90, 46.0),  # h = 3.6 -> 40 + 0.6 * 10
        (100, 50.0),
    ],
)
def test_percentile_interpolates_between_closest_ranks(p, expected):
    assert lt.percentile([50, 15, 40, 20, 35], p) == pytest.approx(expected, abs=1e-12)


def test_percentile_of_one_value_is_that_value():
    assert lt.percentile([7.5], 99) == 7.5


@pytest.mark.parametrize(
    "xs, p, message",
    [([], 50, "`xs` must not be empty"), ([1.0], 101, "`p` must be in [0, 100], got 101"),
     ([1.0], -1, "`p` must be in [0, 100], got -1")],
)
def test_percentile_rejects_bad_input(xs, p, message):
    with pytest.raises(ValueError) as e:
        lt.percentile(xs, p)
    assert str(e.value) == message


def test_latency_summary():
    # 1 2 3 4: p50 h=1.5 -> 2.5; p90 h=2.7 -> 3.7; p99 h=2.97 -> 3.97
    assert lt.latency_summary([4, 1, 3, 2]) == {"n": 4, "p50": 2.5, "p90": 3.7, "p99": 3.97, "max": 4}
    assert lt.latency_summary([]) == {"n": 0, "p50": None, "p90": None, "p99": None, "max": None}


def test_least_squares_slope():
    # t 0 1 2 3, y 1 3 2 6: t_mean 1.5, y_mean 3; sum (t-1.5)(y-3) = 3 + 0 - 0.5 + 4.5 = 7; sum (t-1.5)^2 = 5
    assert lt.ls_slope([0, 1, 2, 3], [1, 3, 2, 6]) == pytest.approx(1.4, abs=1e-12)


@pytest.mark.parametrize(
    "ts, ys, message",
    [
        ([0, 1], [1], "`ts` and `ys` must have the same length, got 2 and 1"),
        ([0], [1], "a slope needs at least 2 points, got 1"),
        ([2, 2], [1, 5], "a slope needs at least 2 distinct `ts`"),
    ],
)
def test_least_squares_slope_rejects_bad_input(ts, ys, message):
    with pytest.raises(ValueError) as e:
        lt.ls_slope(ts, ys)
    assert str(e.value) == message


def test_slope_per_hour_leaves_the_warm_up_out():
    # A drop during warm-up, then +0.5 MiB every 600 s = 3 MiB/h.
    pts = [(0, 500 * MIB), (600, 100 * MIB), (1200, 100.5 * MIB), (1800, 101 * MIB)]
    assert lt.slope_per_hour(pts, after_s=600) == pytest.approx(3.0, abs=1e-9)
    assert lt.slope_per_hour(pts) < 0  # the warm-up's drop dominates a fit over everything
    assert lt.slope_per_hour(pts, after_s=1800) is None  # one point left


def test_rss_summary():
    series = {"ray::ProxyActor [7]": [(0, 100 * MIB), (1800, 103 * MIB), (3600, 102 * MIB)]}
    # after_s=1800: the slope of (1800, 103) and (3600, 102) is -1 MiB per half hour = -2 MiB/h
    assert lt.rss_summary(series, after_s=1800) == {
        "ray::ProxyActor [7]": {
            "samples": 3, "first_t_s": 0, "last_t_s": 3600, "start_mib": 100.0, "end_mib": 102.0,
            "max_mib": 103.0, "growth_mib": 2.0, "slope_mib_per_h": -2.0,
        }
    }


def test_statuses_are_counted_in_a_fixed_order():
    got = lt.count_statuses(["UNKNOWN", "OK", "CANCELLED", "OK", "DEADLINE_EXCEEDED"])
    assert list(got.items()) == [
        ("OK", 2), ("RESOURCE_EXHAUSTED", 0), ("DEADLINE_EXCEEDED", 1), ("UNAVAILABLE", 0),
        ("CANCELLED", 1), ("UNKNOWN", 1),
    ]


def test_overload_summary_counts_hangs_and_separates_rejections():
    R = lt.CallRecord
    records = [
        R(0.1, 100.0, "OK"), R(0.2, 200.0, "OK"), R(0.3, 5.0, "RESOURCE_EXHAUSTED"), R(0.4, 3.0, "UNAVAILABLE"),
        R(1.2, 1100.0, "DEADLINE_EXCEEDED"),  # past the 1 s deadline, within the 0.5 s grace: not a hang
        R(1.9, 1600.0, "UNKNOWN"),  # past 1.5 s: a hang
    ]
    s = lt.overload_summary(records, deadline_s=1.0, grace_s=0.5, wall_s=2.0)
    assert s["requests"] == 6
    assert s["by_status"] == {"OK": 2, "RESOURCE_EXHAUSTED": 1, "DEADLINE_EXCEEDED": 1, "UNAVAILABLE": 1,
                              "UNKNOWN": 1}
    assert s["hangs"] == 1 and s["over_deadline"] == 2
    assert s["answered_in_time_share"] == pytest.approx(5 / 6, abs=1e-6)
    assert s["requests_per_s"] == 3.0 and s["ok_per_s"] == 1.0
    assert s["latency_ms"]["ok"] == {"n": 2, "p50": 150.0, "p90": 190.0, "p99": 199.0, "max": 200.0}
    # rejections: 3 and 5 -> p50 4
    assert s["latency_ms"]["rejected"]["n"] == 2 and s["latency_ms"]["rejected"]["p50"] == 4.0
    assert s["latency_ms"]["by_status"]["DEADLINE_EXCEEDED"]["max"] == 1100.0


def test_a_call_that_never_returned_is_a_hang():
    s = lt.overload_summary([lt.CallRecord(0.1, 10.0, "OK")], deadline_s=1.0, grace_s=1.0, wall_s=1.0, unfinished=1)
    assert s["requests"] == 2 and s["hangs"] == 1 and s["answered_in_time_share"] == 0.5
    assert s["by_status"]["UNFINISHED"] == 1 and s["requests_per_s"] == 1.0


def test_window_stats():
    R = lt.CallRecord
    w = lt.window_stats([R(1, 10.0, "OK"), R(2, 30.0, "OK"), R(3, 2.0, "RESOURCE_EXHAUSTED"),
                         R(3, 4.0, "OK", "feedback"), R(4, 9.0, "UNAVAILABLE", "feedback")])
    # OK search latencies 10 30 (the 2 ms rejection left out): p50 20, p99 h=0.99 -> 10 + 0.99 * 20 = 29.8
    assert w == {"searches": 3, "p50_ms": 20.0, "p99_ms": 29.8, "search_errors": {"RESOURCE_EXHAUSTED": 1},
                 "feedback": 2, "feedback_errors": {"UNAVAILABLE": 1}}
    assert lt.window_stats([])["p50_ms"] is None


# -- /proc -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "argv, label",
    [
        (["ray::ServeReplica:ltrr:ingress"], "ray::ServeReplica:ltrr:ingress"),
        (["ray::ServeReplica:ltrr:ingress.handle_request"], "ray::ServeReplica:ltrr:ingress"),
        (["ray::ServeController.run_control_loop"], "ray::ServeController"),
        (["ray::ProxyActor", "", "  "], "ray::ProxyActor"),
        (["ray::IDLE                 "], "ray::IDLE"),
        (["/venv/lib/python3.11/site-packages/ray/core/src/ray/raylet/raylet", "--node_ip_address=1"], "raylet"),
        (["/venv/ray/core/src/ray/gcs/gcs_server", "--gcs_server_port=1"], "gcs_server"),
        (["/venv/bin/python", "-u", "/venv/ray/dashboard/dashboard.py", "--host=1"], "ray-dashboard"),
        (["/venv/bin/python", "-u", "/venv/ray/_private/log_monitor.py"], "ray-log-monitor"),
        (["/venv/bin/python", "scripts/overload.py", "--match", "ray::ProxyActor"], None),
        (["/usr/bin/raylet-helper"], None),
        ([], None),
    ],
)
def test_process_label(argv, label):
    assert lt.process_label(argv) == label


def fake_proc(root: Path, pid: int | str, cmdline: bytes | None, status: str | None) -> None:
    d = root / str(pid)
    d.mkdir(parents=True)
    if cmdline is not None:
        (d / "cmdline").write_bytes(cmdline)
    if status is not None:
        (d / "status").write_text(status)


def status(kb: int | None) -> str:
    rss = f"VmRSS:\t  {kb} kB\n" if kb is not None else ""
    return "Name:\tpython\nState:\tS (sleeping)\n" + rss + "Threads:\t4\n"


@pytest.fixture
def proc(tmp_path):
    root = tmp_path / "proc"
    fake_proc(root, 101, b"ray::ServeReplica:ltrr:ingress\0\0\0\0", status(2048))
    fake_proc(root, 102, b"ray::ServeController.run_control_loop\0", status(1000))
    fake_proc(root, 103, b"/v/ray/core/src/ray/raylet/raylet\0--raylet_socket_name=/tmp/s\0", status(512))
    fake_proc(root, 104, b"/v/ray/core/src/ray/gcs/gcs_server\0--gcs_server_port=6379\0", status(300))
    fake_proc(root, 105, b"/v/bin/python\0-u\0/v/ray/dashboard/dashboard.py\0", status(100))
    fake_proc(root, 106, b"/usr/bin/python3\0app.py\0", status(9999))  # not Ray
    fake_proc(root, 107, b"ray::ProxyActor\0", status(None))  # a zombie: no VmRSS
    fake_proc(root, 108, b"ray::ServeReplica:ltrr:vector\0", None)  # exited while read
    fake_proc(root, 109, b"ray::ProxyActor                \0", status(4096))
    fake_proc(root, "self", b"ray::ProxyActor\0", status(1))  # not a pid
    (root / "stat").write_text("cpu  100 5 50 800 40 3 2 0 0 0\ncpu0 50 2 25 400 20 1 1 0 0 0\n")
    return root


def test_scan_processes_reads_labels_and_rss_from_a_proc_tree(proc):
    assert lt.rss_by_key(lt.scan_processes(proc)) == {
        "gcs_server [104]": 300 * 1024,
        "ray-dashboard [105]": 100 * 1024,
        "ray::ProxyActor [109]": 4096 * 1024,
        "ray::ServeController [102]": 1000 * 1024,
        "ray::ServeReplica:ltrr:ingress [101]": 2048 * 1024,
        "raylet [103]": 512 * 1024,
    }


def test_rss_by_key_keeps_only_the_matching_labels(proc):
    got = lt.rss_by_key(lt.scan_processes(proc), ("ray::ProxyActor", "ray::ServeReplica:ltrr:ingress"))
    assert got == {"ray::ProxyActor [109]": 4096 * 1024, "ray::ServeReplica:ltrr:ingress [101]": 2048 * 1024}


def test_a_missing_proc_root_scans_to_nothing(tmp_path):
    assert lt.scan_processes(tmp_path / "nope") == {}


def test_a_real_process_titled_like_a_replica_is_found():
    """A live process whose argv[0] is a Ray title (what /proc/<pid>/cmdline shows after setproctitle): a shell
    that says it runs (so its exec is done: Popen may return mid-exec, with an empty cmdline), then waits."""
    with subprocess.Popen(["ray::ServeReplica:ltrr:ingress", "-c", "echo ready; read x"], executable="/bin/sh",
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) as child:
        try:
            assert child.stdout is not None and child.stdout.readline() == "ready\n"
            got = lt.scan_processes("/proc")
            assert got[child.pid].label == "ray::ServeReplica:ltrr:ingress"
            assert got[child.pid].rss > 0
        finally:
            child.kill()


def test_rss_series_keeps_a_workers_last_non_idle_label():
    P = lt.ProcSample
    s = lt.RssSeries()
    s.add(0, {5: P(5, "ray::IDLE", 10), 6: P(6, "raylet", 20)})
    s.add(30, {5: P(5, "ray::ServeReplica:ltrr:learner", 11), 6: P(6, "raylet", 21)})
    s.add(60, {5: P(5, "ray::IDLE", 12)})
    assert s.series() == {
        "ray::ServeReplica:ltrr:learner [5]": [(0, 10), (30, 11), (60, 12)],
        "raylet [6]": [(0, 20), (30, 21)],
    }


def test_parse_cpu_times(proc):
    # total 100+5+50+800+40+3+2+0 = 1000; busy = 1000 - 800 - 40 = 160
    assert lt.parse_cpu_times((proc / "stat").read_text()) == (160, 1000)
    with pytest.raises(ValueError):
        lt.parse_cpu_times("intr 1 2 3\n")


def test_parse_vm_rss():
    assert lt.parse_vm_rss(status(1234)) == 1234 * 1024
    assert lt.parse_vm_rss(status(None)) is None


# -- open-loop schedule ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "rate, seconds, expected",
    [(4, 1, [0, 0.25, 0.5, 0.75]), (3, 1, [0, 1 / 3, 2 / 3]), (2.5, 1, [0, 0.4, 0.8]), (10, 0, [])],
)
def test_issue_times(rate, seconds, expected):
    assert lt.issue_times(rate, seconds) == pytest.approx(expected, abs=1e-12)


def test_issue_times_do_not_drift():
    times = lt.issue_times(10, 1800)
    assert len(times) == 18_000 and times[-1] == 17_999 / 10


@pytest.mark.parametrize(
    "rate, seconds, message",
    [(0, 1, "`rate_per_s` must be a finite number > 0, got 0"),
     (float("inf"), 1, "`rate_per_s` must be a finite number > 0, got inf"),
     (1, -1, "`duration_s` must be a finite number >= 0, got -1")],
)
def test_issue_times_rejects_bad_input(rate, seconds, message):
    with pytest.raises(ValueError) as e:
        lt.issue_times(rate, seconds)
    assert str(e.value) == message


class FakeClock:
    """A clock that moves only when slept on, or when an issue takes time (``cost[i]`` seconds)."""

    def __init__(self, cost: dict[int, float]) -> None:
        self.t = 100.0
        self.cost = cost
        self.sleeps: list[float] = []
        self.issued: list[tuple[int, float, float]] = []  # (i, due, clock at issue)

    def clock(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.sleeps.append(s)
        self.t += s

    def issue(self, i: int, due: float) -> None:
        self.issued.append((i, due, self.t))
        self.t += self.cost.get(i, 0.0)


def test_the_open_loop_counts_late_issues_and_catches_up():
    # 10/s: due at 0, .1, ... .9 after the start. Issue 2 takes .25 s, so the clock reads .45 at issue 3's
    # turn (due .3: .15 late) and at issue 4's (due .4: .05 late); issue 5 (due .5) is on time again.
    fc = FakeClock({2: 0.25})
    stats = lt.run_open_loop(lt.issue_times(10, 1), fc.issue, clock=fc.clock, sleep=fc.sleep, tolerance_s=0.01)
    assert stats.issued == 10 and stats.late == 2 and not stats.stopped_early
    assert stats.max_lateness_s == pytest.approx(0.15, abs=1e-9)
    assert [i for i, _, _ in fc.issued] == list(range(10))
    assert [due - 100.0 for _, due, _ in fc.issued] == pytest.approx([i / 10 for i in range(10)], abs=1e-9)
    assert fc.issued[3][2] - 100.0 == pytest.approx(0.45, abs=1e-9)  # issued late, not skipped
    assert len(fc.sleeps) == 7  # every issue but 0 (due at once), 3 and 4 (already late) slept first


def test_the_open_loop_tolerates_lateness_up_to_the_tolerance():
    fc = FakeClock({2: 0.25})
    stats = lt.run_open_loop(lt.issue_times(10, 1), fc.issue, clock=fc.clock, sleep=fc.sleep, tolerance_s=0.1)
    assert stats.late == 1  # .15 > .1, .05 is not


def test_the_open_loop_stops_when_asked():
    fc = FakeClock({})
    stats = lt.run_open_loop(lt.issue_times(10, 1), fc.issue, clock=fc.clock, sleep=fc.sleep,
                             stop=lambda: len(fc.issued) == 3)
    assert stats.issued == 3 and stats.stopped_early


# -- queries ---------------------------------------------------------------------------------------------------
def test_make_queries_is_seeded_and_falls_back_to_semantic_phrases():
    titles, artists = ["Dance Monkey", "Lady Gaga"], ["Lady Gaga"]
    assert lt.make_queries(titles, artists, 50, seed=3) == lt.make_queries(titles, artists, 50, seed=3)
    assert set(lt.make_queries([], [], 50)) <= set(lt.SEMANTIC_QUERIES)
    assert any(q.startswith("artists like ") for q in lt.make_queries(titles, artists, 50))


def test_make_queries_draws_its_semantic_phrases_from_the_given_ones():
    """scripts/bench.py passes the first eight phrases: its published query mix."""
    titles, artists = ["Dance Monkey", "Lady Gaga"], ["Lady Gaga"]
    assert set(lt.make_queries([], [], 50, semantic=("jazz", "sad songs"))) == {"jazz", "sad songs"}
    mixed = lt.make_queries(titles, artists, 200, seed=1, semantic=lt.SEMANTIC_QUERIES[:2])
    phrases = {q for q in mixed if q in lt.SEMANTIC_QUERIES}
    assert phrases == set(lt.SEMANTIC_QUERIES[:2])
    with pytest.raises(ValueError, match=r"^`semantic` must not be empty$"):
        lt.make_queries(titles, artists, 5, semantic=())


def test_catalog_names_reads_the_most_popular_titles(tmp_path):
    path = tmp_path / "catalog.sqlite"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE entities (entity_id TEXT PRIMARY KEY, entity_type TEXT, doc TEXT, hash TEXT, seq INT)")
    for i, (kind, title, pop) in enumerate([("track", "B", 5.0), ("artist", "A", 9.0), ("artist", "C", 1.0)]):
        db.execute("INSERT INTO entities VALUES (?, ?, ?, '', ?)",
                   (f"e{i}", kind, json.dumps({"title": title, "popularity": pop}), i))
    db.commit()
    db.close()
    assert lt.catalog_names(path, limit=2) == (["A", "B"], ["A"])
    assert lt.catalog_names(tmp_path / "none.sqlite") == ([], [])


def test_catalog_names_reads_an_open_store_as_its_file(tmp_path, pg_dsn):
    """A PostgreSQL store (scripts/multinode.py's and bench_ranker.py's catalog with a DSN) through its API, a
    SQLite one through its file: the same names in the same order, equal popularity in seq order; not closed."""
    from ltrr.catalog.store import CatalogStore
    from ltrr.catalog.store_pg import PgCatalogStore
    from ltrr.types import Entity

    entities = [
        Entity("track:b", "track", "B", popularity=5.0),
        Entity("artist:a", "artist", "A", popularity=9.0),
        Entity("artist:c", "artist", "C", popularity=1.0),
        Entity("artist:d", "artist", "D", popularity=5.0),  # B's popularity, a later seq
        Entity("playlist:e", "playlist", "E", popularity=7.0),
    ]
    sqlite_store, pg_store = CatalogStore(tmp_path / "catalog.sqlite"), PgCatalogStore(pg_dsn)
    for store in (sqlite_store, pg_store):
        assert lt.catalog_names(store) == ([], [])
        assert store.upsert_entities(entities) == 5
    top4 = (["A", "E", "B", "D"], ["A", "D"])
    assert lt.catalog_names(pg_store, limit=4) == top4
    assert lt.catalog_names(sqlite_store, limit=4) == top4
    assert lt.catalog_names(tmp_path / "catalog.sqlite", limit=4) == top4
    assert lt.catalog_names(pg_store) == (["A", "E", "B", "D", "C"], ["A", "D", "C"])
    assert pg_store.count() == sqlite_store.count() == 5  # still open
    pg_store.close()
    sqlite_store.close()


def test_bench_queries_are_the_latency_benchmarks_mix_from_either_backend(tmp_path, pg_dsn):
    """scripts/bench.py's and bench_ranker.py's queries: the seeded mix over the catalog's most popular names,
    the same from a PostgreSQL store as from the SQLite file."""
    from ltrr.catalog.store import CatalogStore
    from ltrr.catalog.store_pg import PgCatalogStore
    from ltrr.types import Entity

    entities = [Entity(f"artist:{i}", "artist", f"Artist {i}", popularity=float(i % 7)) for i in range(40)]
    sqlite_store, pg_store = CatalogStore(tmp_path / "catalog.sqlite"), PgCatalogStore(pg_dsn)
    try:
        for store in (sqlite_store, pg_store):
            store.upsert_entities(entities)
        titles, artists = lt.catalog_names(tmp_path / "catalog.sqlite")
        expected = lt.make_queries(titles, artists, 50, 3, semantic=lt.SEMANTIC_QUERIES[:8])
        assert lt.bench_queries(pg_store, 50, 3) == lt.bench_queries(tmp_path / "catalog.sqlite", 50, 3) == expected
        assert lt.bench_queries(pg_store, 50, 4) != expected, "seeded"
        assert set(expected) - {*titles, *lt.SEMANTIC_QUERIES[:8]}, "not only the plain titles"
    finally:
        sqlite_store.close()
        pg_store.close()


# -- Markdown --------------------------------------------------------------------------------------------------
def test_md_table():
    assert lt.md_table(("a", "b"), [[1, None], ["x", 2.5]]) == "| a | b |\n|---|---|\n| 1 | – |\n| x | 2.5 |"


# -- the scripts, end to end against a fake server -------------------------------------------------------------
class Fake(pb_grpc.SearchServiceServicer):
    """Answers searches with five results, rejecting every third with RESOURCE_EXHAUSTED, and any call without
    the bearer token with UNAUTHENTICATED; counts what it answered."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.searches: Counter[str] = Counter()
        self.feedback: list[pb.FeedbackRequest] = []
        self.timeouts: set[str] = set()

    def _auth(self, context) -> dict[str, str]:
        md = dict(context.invocation_metadata())
        if md.get("authorization") != "Bearer s3cret":
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "no token")
        return md

    def Search(self, request, context):
        md = self._auth(context)
        with self.lock:
            self.timeouts.add(md.get("ltrr-timeout-ms", ""))
            n = sum(self.searches.values()) + 1
            rejected = n % 3 == 0
            self.searches["RESOURCE_EXHAUSTED" if rejected else "OK"] += 1
        if rejected:
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "shed")
        return pb.SearchResponse(request_id=f"r{n}", results=[pb.Result(entity_id=f"e{i}") for i in range(5)])

    def Feedback(self, request, context):
        self._auth(context)
        with self.lock:
            self.feedback.append(request)
        return pb.FeedbackResponse()


@pytest.fixture
def fake():
    f = Fake()
    srv = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    pb_grpc.add_SearchServiceServicer_to_server(f, srv)
    port = srv.add_insecure_port("127.0.0.1:0")
    srv.start()
    yield f, f"127.0.0.1:{port}"
    srv.stop(None)


def run_script(name: str, *args: str, home: Path) -> None:
    env = {**os.environ, "LTRR_TOKEN": "s3cret", "LTRR_HOME": str(home)}
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / name), *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]


def test_overload_reports_every_call_the_server_answered(fake, proc, tmp_path):
    f, target = fake
    out = tmp_path / "ov"
    run_script("overload.py", "--target", target, "--callers", "3", "--seconds", "1.5", "--deadline", "5",
               "--every", "0.5", "--settle", "0", "--catalog", "", "--proc", str(proc), "--no-preflight",
               "--out", str(out), home=tmp_path)
    report = json.loads((out / "overload.json").read_text())
    res = report["results"]
    assert res["by_status"] == {"OK": f.searches["OK"], "RESOURCE_EXHAUSTED": f.searches["RESOURCE_EXHAUSTED"],
                                "DEADLINE_EXCEEDED": 0, "UNAVAILABLE": 0}
    assert res["requests"] == sum(f.searches.values()) > 0 and res["hangs"] == 0
    assert f.timeouts == {"5000"}  # the client's deadline went along
    # the fake /proc's proxy (4 MiB) and ingress (2 MiB) were sampled, and nothing else
    assert {k: v["max_mib"] for k, v in report["rss"].items()} == {
        "ray::ProxyActor [109]": 4.0, "ray::ServeReplica:ltrr:ingress [101]": 2.0}
    assert report["generator"]["cpu_s"] > 0
    assert (out / "overload.png").stat().st_size > 0
    assert f"| OK | {f.searches['OK']} |" in (out / "overload.md").read_text()


def test_soak_issues_the_planned_searches_and_clicks_some(fake, proc, tmp_path):
    f, target = fake
    out, events = tmp_path / "soak", tmp_path / "events.sqlite"
    events.write_bytes(b"x" * 4096)
    Path(f"{events}-wal").write_bytes(b"y" * 1024)
    run_script("soak.py", "--target", target, "--rate", "20", "--minutes", "0.03", "--every", "0.5",
               "--feedback-share", "0.5", "--catalog", "", "--proc", str(proc), "--events", str(events),
               "--out", str(out), home=tmp_path)
    report = json.loads((out / "soak.json").read_text())
    res = report["results"]
    # 20/s for 1.8 s = 36 searches, plus the preflight search the server also saw
    assert report["schedule"]["issued"] == report["schedule"]["planned"] == 36
    assert res["searches"] == 36 == sum(f.searches.values()) - 1
    # the preflight was the server's first search, answered OK (only every third is rejected)
    assert res["search_by_status"]["OK"] == f.searches["OK"] - 1
    assert res["search_by_status"]["RESOURCE_EXHAUSTED"] == f.searches["RESOURCE_EXHAUSTED"] == 12
    assert sum(w["searches"] for w in report["windows"]) == 36  # the windows partition the calls
    assert res["feedback"] == len(f.feedback) > 0 and res["feedback_errors"] == {}
    ids = [r.event_id for r in f.feedback]
    assert len(set(ids)) == len(ids) and all(len(i) == 32 for i in ids)  # client-chosen uuid4 hex
    assert all(r.action == "click" and 1 <= r.position <= 5 and r.entity_id == f"e{r.position - 1}"
               for r in f.feedback)
    assert report["series"]["events_mib"][-1][1:] == [round(4096 / MIB, 3), round(1024 / MIB, 3)]
    assert set(report["rss"]) >= {"ray::ProxyActor [109]", "raylet [103]", "gcs_server [104]"}
    assert report["rss_total"]["end_mib"] == round((2048 + 1000 + 512 + 300 + 100 + 4096) / 1024, 1)
    assert (out / "soak.png").stat().st_size > 0 and "## Windows" in (out / "soak.md").read_text()



def test_periodic_sampler_keeps_results_with_their_time_and_counts_failures() -> None:
    import itertools
    import threading

    from ltrr.loadtest import PeriodicSampler

    done = threading.Event()
    ticks = itertools.count(10.0, 0.5)  # the clock: 10.0, 10.5, 11.0, ... one reading per sample

    class Three(PeriodicSampler):
        calls = 0

        def sample(self) -> dict:
            self.calls += 1
            if self.calls == 2:
                raise RuntimeError("dashboard slow")
            if self.calls >= 4:
                done.set()
            return {"n": self.calls}

    s = Three(t0=10.0, every_s=0.0, clock=lambda: next(ticks))
    s.start()
    assert done.wait(30.0)
    s.halt()
    assert not s.is_alive()
    assert s.errors == 1
    assert s.samples[:3] == [{"t": 0.0, "n": 1}, {"t": 1.0, "n": 3}, {"t": 1.5, "n": 4}]


def test_report_head_states_the_command_machine_and_config() -> None:
    import os
    import re

    from ltrr.loadtest import report_head

    head = report_head(["scripts/x.py", "--short"], {"qps": 10.0})
    assert head["command"] == "scripts/x.py --short"
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC", head["date"])
    assert head["machine"] == f"{os.cpu_count()} cores"
    assert head["config"] == {"qps": 10.0} and head["timings_s"] == {} and head["notes"] == []


def test_lagging_indexes_are_the_ones_not_serving():
    import grpc

    from ltrr.loadtest import lagging_indexes

    class Err(grpc.RpcError):
        def __init__(self, code: grpc.StatusCode) -> None:
            self._code = code

        def code(self) -> grpc.StatusCode:
            return self._code

    answers = {
        "ltrr.index.lexical": "SERVING",
        "ltrr.index.vector": "NOT_SERVING",
        "ltrr.index.graph": Err(grpc.StatusCode.NOT_FOUND),  # no index to wait for
        "ltrr.index.memory": Err(grpc.StatusCode.UNAVAILABLE),
    }

    class Client:
        def health(self, service: str) -> str:
            a = answers[service]
            if isinstance(a, Exception):
                raise a
            return a

    assert lagging_indexes(Client(), ["lexical", "vector", "graph", "memory"]) == ["vector", "memory"]


# -- closed loop ----------------------------------------------------------------------------------------------
def test_closed_loop_runs_every_call_once_with_the_callers_in_flight_together():
    callers, n = 4, 12
    barrier = threading.Barrier(callers, timeout=10)  # breaks unless `callers` calls are in flight at once
    seen: list[int] = []
    lock = threading.Lock()

    def call(i: int) -> None:
        with lock:
            seen.append(i)
        barrier.wait()

    got = lt.closed_loop(call, n, callers)
    assert sorted(seen) == list(range(n))
    assert got["errors"] == {} and got["ok"] == n and got["callers"] == callers and got["n"] == n
    assert got["throughput_rps"] > 0 and got["p50"] <= got["p99"] <= got["max"]


def test_closed_loop_counts_failures_by_name_and_goes_on():
    def call(i: int) -> None:
        if i % 3 == 0:
            raise ValueError(str(i))
        if i == 4:
            raise KeyError(i)

    got = lt.closed_loop(call, 10, 1, error_name=lambda exc: f"bad {type(exc).__name__}")
    assert got["errors"] == {"bad KeyError": 1, "bad ValueError": 4}  # 0, 3, 6, 9; and 4
    assert got["ok"] == 5
    everything_fails = lt.closed_loop(lambda i: 1 / 0, 3, 2)
    assert everything_fails["ok"] == 0 and everything_fails["errors"] == {"ZeroDivisionError": 3}
    assert everything_fails["p50"] is None and everything_fails["throughput_rps"] == 0


@pytest.mark.parametrize("n, callers, message", [(0, 1, "`n` must be >= 1"), (1, 0, "`callers` must be >= 1")])
def test_closed_loop_refuses_an_empty_run(n, callers, message):
    with pytest.raises(ValueError, match=message):
        lt.closed_loop(lambda i: None, n, callers)
