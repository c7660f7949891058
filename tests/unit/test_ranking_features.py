"""The ranker's features on hand-made candidates (exact values), their logged form, and ranking in the service."""

from __future__ import annotations

import asyncio
import math

import numpy as np
import pytest

from ltrr.eventlog import SQLiteEventLog
from ltrr.fusion import FusedCandidate
from ltrr.ranking import features as F
from ltrr.ranking.base import RankContext, rank
from ltrr.ranking.catboost import LiveRanker
from ltrr.ranking.features import EntityFacts, FactsCache, RankFeaturizer
from ltrr.ranking.rrf import RRFRanker
from ltrr.types import Entity, ParsedQuery, Query, UserProfile
from tests.unit.test_service import NAMES, fake, parse, planner

ENTITIES = {
    "artist:rh": Entity(
        "artist:rh", "artist", "Radiohead", "Artist", genres=("rock",), tags=("Alternative",), popularity=80
    ),
    "track:creep": Entity(
        "track:creep", "track", "Creep", "Radiohead", tags=("grunge",), popularity=60, attrs={"artist_id": "artist:rh"}
    ),
    "artist:muse": Entity("artist:muse", "artist", "Muse", "", tags=("alternative",), popularity=70),
}


def cand(eid: str, ranks: dict[str, int], rrf: float) -> FusedCandidate:
    e = ENTITIES.get(eid) or Entity(eid, "playlist", "Unknown list", "")
    return FusedCandidate(
        eid, e.entity_type, e.title, e.subtitle, rrf, dict(ranks), {s: 1.0 / r for s, r in ranks.items()}
    )


def featurize(text: str, parsed: ParsedQuery, cands, user=None, budgets=None, context=None) -> np.ndarray:
    facts = FactsCache(lambda ids: {i: ENTITIES[i] for i in ids if i in ENTITIES})
    ctx = RankContext(Query(text, parsed), user, context or {"class.name": 1.0}, budgets or {"lexical": 50})
    return RankFeaturizer(facts).extract(ctx, cands)


def col(x: np.ndarray, row: int, name: str) -> float:
    return float(x[row, F.INDEX[name]])


def test_retrieval_entity_and_title_features_exact():
    cands = [cand("artist:rh", {"lexical": 1, "graph": 3}, 0.03), cand("track:creep", {"lexical": 2}, 0.016)]
    x = featurize("Radiohead", ParsedQuery("radiohead", "radiohead"), cands, budgets={"lexical": 50, "graph": 25})
    assert x.shape == (2, F.DIM) and x.dtype == np.float32
    assert (
        col(x, 0, "lexical.rank") == 1
        and col(x, 0, "graph.rank") == 3
        and col(x, 0, "graph.score") == pytest.approx(1 / 3)
    )
    assert math.isnan(col(x, 1, "graph.rank")) and math.isnan(col(x, 1, "graph.score")), "not retrieved is missing"
    assert math.isnan(col(x, 0, "vector.rank"))
    assert col(x, 0, "graph.budget") == 25 and col(x, 1, "graph.budget") == 25 and col(x, 0, "vector.budget") == 0
    assert col(x, 0, "rrf") == pytest.approx(0.03) and col(x, 0, "n_strategies") == 2 and col(x, 1, "n_strategies") == 1
    assert col(x, 0, "type.artist") == 1 and col(x, 0, "type.track") == 0 and col(x, 1, "type.track") == 1
    assert col(x, 0, "popularity") == 80 and col(x, 1, "popularity") == 60
    assert col(x, 0, "title.exact") == 1 and col(x, 1, "title.exact") == 0
    assert col(x, 0, "title.ratio") == 1 and col(x, 1, "title.ratio") == pytest.approx(
        2 * 2 / 14, abs=1e-6
    )  # Indel: LCS "re"
    assert col(x, 1, "subtitle.ratio") == 1 and col(x, 1, "subtitle.token_overlap") == 1
    assert col(x, 0, "title.token_overlap") == 1 and col(x, 1, "title.token_overlap") == 0
    assert col(x, 0, "class.name") == 1 and col(x, 0, "class.seed") == 0
    assert math.isnan(col(x, 0, "seed.ratio")) and math.isnan(col(x, 0, "slot.genre_match")), "no seed, no genre slot"


def test_prefix_typo_seed_slots_and_user():
    cands = [
        cand("artist:rh", {"graph": 1}, 0.02),
        cand("artist:muse", {"graph": 2}, 0.01),
        cand("x", {"vector": 1}, 0.01),
    ]
    typed = featurize("radioh", ParsedQuery("radioh", "radioh"), cands)
    assert col(typed, 0, "title.prefix") == 1 and col(typed, 1, "title.prefix") == 0
    assert col(typed, 0, "title.partial_ratio") == 1
    like = ParsedQuery("artists like radiohead", "", types=("artist",), tags=("alternative",), seed="radiohead")
    user = UserProfile("u", top_artists=(("artist:muse", 0.7),), top_tags=(("alternative", 0.5), ("grunge", 0.2)))
    x = featurize("artists like radiohead", like, cands, user=user)
    assert col(x, 0, "seed.is_title") == 1 and col(x, 1, "seed.is_title") == 0 and col(x, 0, "seed.ratio") == 1
    assert math.isnan(col(x, 0, "residual.ratio")), "an empty residual matches nothing"
    assert col(x, 0, "slot.type_match") == 1 and col(x, 2, "slot.type_match") == 0  # the playlist
    assert col(x, 0, "slot.tag_match") == 1 and col(x, 1, "slot.tag_match") == 1 and col(x, 2, "slot.tag_match") == 0
    assert col(x, 0, "user.known") == 1 and col(x, 1, "user.artist_weight") == pytest.approx(0.7)
    assert col(x, 0, "user.artist_weight") == 0 and col(x, 0, "user.tag_overlap") == pytest.approx(0.5)
    assert math.isnan(col(x, 2, "subtitle.ratio")), "no subtitle is missing, not a mismatch"
    anon = featurize("artists like radiohead", like, cands)
    assert col(anon, 1, "user.known") == 0 and col(anon, 1, "user.artist_weight") == 0


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("Radiohead", ParsedQuery("radiohead", "radiohead")),  # the residual is the whole query: copied
        ("radiohead rock", ParsedQuery("radiohead rock", "radiohead", genres=("rock",))),  # scored on its own
    ],
)
def test_fuzzy_columns_match_rapidfuzz_pair_by_pair(text, parsed):
    """Texts are scored once per search (an artist's title is its tracks' subtitle) and the residual's
    columns are copied when it is the whole query: each cell still equals rapidfuzz on its own pair."""
    from rapidfuzz import fuzz, utils

    cands = [
        cand("artist:rh", {"lexical": 1}, 0.03),
        cand("track:creep", {"lexical": 2}, 0.02),
        cand("artist:muse", {"vector": 1}, 0.01),
        cand("x", {"vector": 2}, 0.01),
    ]
    x = featurize(text, parsed, cands)
    q, residual = utils.default_process(text), utils.default_process(parsed.residual)
    for i, c in enumerate(cands):
        title, subtitle = utils.default_process(c.title), utils.default_process(c.subtitle)
        for m in ("ratio", "token_set_ratio", "partial_ratio"):
            scorer = getattr(fuzz, m)
            assert col(x, i, f"title.{m}") == pytest.approx(scorer(q, title) / 100, abs=1e-6), (c.entity_id, m)
            if subtitle:
                assert col(x, i, f"subtitle.{m}") == pytest.approx(scorer(q, subtitle) / 100, abs=1e-6)
            else:
                assert math.isnan(col(x, i, f"subtitle.{m}"))
        for m in ("ratio", "token_set_ratio"):
            want = getattr(fuzz, m)(residual, title) / 100
            assert col(x, i, f"residual.{m}") == pytest.approx(want, abs=1e-6), (c.entity_id, m)


def test_a_track_credits_its_artist_in_the_users_history():
    user = UserProfile("u", top_artists=(("artist:rh", 0.9),))
    x = featurize("creep", ParsedQuery("creep", "creep"), [cand("track:creep", {"lexical": 1}, 0.02)], user=user)
    assert col(x, 0, "user.artist_weight") == pytest.approx(0.9)


def test_pack_roundtrips_exactly_and_refuses_another_schema():
    cands = [cand("artist:rh", {"lexical": 1}, 0.03), cand("track:creep", {"graph": 2}, 0.016)]
    x = featurize("radiohead", ParsedQuery("radiohead", "radiohead"), cands)
    doc = F.pack(["artist:rh", "track:creep"], x)
    ids, y = F.unpack(doc)
    assert ids == ["artist:rh", "track:creep"]
    np.testing.assert_array_equal(y, x)  # NaN where NaN, bit-exact float32 elsewhere
    with pytest.raises(F.SchemaMismatch, match="schema 0"):
        F.unpack({**doc, "schema": 0})
    with pytest.raises(ValueError, match="x must be"):
        F.pack(["one"], x)


def test_facts_are_read_once_and_forgotten_on_upsert():
    reads = []

    def get_many(ids):
        reads.append(list(ids))
        return {i: ENTITIES[i] for i in ids if i in ENTITIES}

    cache = FactsCache(get_many, size=2)
    assert cache(["artist:rh", "nope"])["artist:rh"].popularity == 80
    cache(["artist:rh"])
    assert reads == [["artist:rh", "nope"], []] or reads == [["artist:rh", "nope"]]
    cache.forget(["artist:rh"])
    cache(["artist:rh"])
    assert reads[-1] == ["artist:rh"]
    cache(["artist:muse", "track:creep"])
    assert len(cache._facts) == 2, "bounded"
    assert EntityFacts.of(ENTITIES["track:creep"]).artist == "artist:rh"


class Reverse:
    version = "reverse-1"

    def score(self, x, candidates):
        return -x[:, F.INDEX["rrf"]]


def test_rank_orders_by_score_with_deterministic_ties():
    cands = [cand("b", {"lexical": 1}, 0.5), cand("a", {"lexical": 2}, 0.5), cand("c", {"lexical": 3}, 0.1)]
    x = featurize("q", ParsedQuery("q", "q"), cands)
    assert rank(RRFRanker(60), x, cands, None) == [1, 0, 2], "equal RRF: entity id decides"
    assert rank(Reverse(), x, cands, 2) == [2, 1]
    assert cands[2].score == pytest.approx(-0.1), "each candidate carries the ranker's score"


class FakeRegistry:
    """Pure logic of the hot swap: which version the pointer names, and what loading it gives."""

    def __init__(self):
        self.version = None

    def current_version(self):
        return self.version

    def load(self, version):
        raise OSError("model.cbm: truncated")


def test_live_ranker_falls_back_to_rrf_when_a_model_cannot_load():
    reg = FakeRegistry()
    live = LiveRanker(reg, RRFRanker(30))
    assert live.refresh() is False and live.version == "rrf-c30"
    reg.version = "catboost-000001"
    assert live.refresh() is True and live.version == "rrf-c30" and "truncated" in live.status()["error"]
    assert live.refresh() is False, "a version is tried once"


@pytest.fixture
def service(tmp_path):
    from ltrr.fanout import Fanout
    from ltrr.service import SearchService

    callers = {"lexical": fake(["a", "b", "c"]), "vector": fake(["b", "d"]), "graph": fake([]), "memory": fake([])}
    events = SQLiteEventLog(tmp_path / "ev.sqlite")
    svc = SearchService(
        Fanout(callers, {n: 1.0 for n in NAMES}), parse, events, {n: 5 for n in NAMES}, planner(),
        ranker=Reverse(), log_top=10,
    )  # fmt: skip
    yield svc
    events.close()


def test_the_service_ranks_with_its_ranker_explains_and_logs_the_rows(service):
    from ltrr.validation import validate_search

    p = validate_search(query="q", k=2, explain=True, strategies=NAMES, known_strategies=NAMES)
    out = asyncio.run(service.search(p))
    # RRF: b = 1/62 + 1/61 > a = 1/61 > d = 1/62 > c = 1/63; Reverse puts the lowest first
    assert [r.entity_id for r in out.results] == ["c", "d"] and out.ranker_version == "reverse-1"
    assert out.features["c"]["lexical.rank"] == 3 and "vector.rank" not in out.features["c"]
    assert out.features["c"]["model.score"] == pytest.approx(-1 / 63)
    assert out.features["c"]["rrf"] == pytest.approx(1 / 63) and out.features["c"]["type.artist"] == 1
    logged = service.events.search(out.request_id)
    assert logged.ranker_version == "reverse-1" and logged.shown == ("c", "d")
    ids, x = F.unpack(logged.ranking)
    assert ids == ["c", "d", "a", "b"], "every candidate up to log_top, in served order"
    assert x[0, F.INDEX["rrf"]] == pytest.approx(1 / 63)


def test_an_entity_type_filter_holds_after_ranking(service):
    from ltrr.validation import validate_search

    p = validate_search(query="q", k=5, entity_types=["track"], strategies=NAMES, known_strategies=NAMES)
    out = asyncio.run(service.search(p))
    assert out.results == [], "the fakes return artists only"


class Broken:
    version = "broken-1"

    def score(self, x, candidates):
        raise RuntimeError("model file vanished")


def test_a_failing_ranker_degrades_to_rrf_instead_of_failing_the_search(service, caplog):
    from ltrr.validation import validate_search

    service._ranker = lambda: Broken()
    out = asyncio.run(service.search(validate_search(query="q", k=3, strategies=NAMES, known_strategies=NAMES)))
    assert [r.entity_id for r in out.results] == ["b", "a", "d"] and out.ranker_version == "rrf-c60"
    assert service.events.search(out.request_id).ranker_version == "rrf-c60"
    assert "broken-1 failed" in caplog.text


def test_shared_subtitles_are_matched_once_and_mapped_back_to_every_row():
    from rapidfuzz import fuzz

    cands = [cand("track:creep", {"lexical": 1}, 0.03), cand("artist:muse", {"lexical": 2}, 0.02)]
    cands.append(FusedCandidate("track:2", "track", "Nude", "Radiohead", 0.01, {"lexical": 3}, {"lexical": 0.3}))
    x = featurize("radiohead creep", ParsedQuery("radiohead creep", "radiohead creep"), cands)
    for row, sub in ((0, "radiohead"), (2, "radiohead")):
        assert col(x, row, "subtitle.token_set_ratio") == pytest.approx(
            fuzz.token_set_ratio("radiohead creep", sub) / 100
        )
    assert math.isnan(col(x, 1, "subtitle.ratio")), "Muse has no subtitle"
    assert col(x, 2, "title.ratio") == pytest.approx(fuzz.ratio("radiohead creep", "nude") / 100, abs=1e-6)
