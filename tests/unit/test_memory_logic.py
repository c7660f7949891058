"""Pure logic of the memory strategy (and the shared Meilisearch helpers): exact values, no server."""

from __future__ import annotations

import hashlib
import math
from typing import Any

import pytest

from ltrr.errors import InvalidRequest
from ltrr.strategies._meili import and_filters, doc_id, filter_in, or_filters, quote, validate_search
from ltrr.strategies.memory import (
    Click,
    ClickEdit,
    MemoryConfig,
    MemoryStrategy,
    aggregate,
    click_edits,
    hit_value,
    predict_queries,
    predicted_docs,
    search_params,
)
from ltrr.types import Entity, ParsedQuery, Query


# -- predict_queries ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("entity", "expected"),
    [
        (
            Entity("track:1", "track", "Creep", "Radiohead", tags=("alternative", "rock"), popularity=80),
            [("creep", 0.9), ("creep radiohead", 0.72), ("creep alternative", 0.45)],
        ),
        (Entity("artist:1", "artist", "Radiohead", genres=("rock",)), [("radiohead", 0.5), ("radiohead rock", 0.25)]),
        (
            Entity(
                "podcast:1",
                "podcast",
                "Crime Junkie",
                genres=("True Crime",),
                popularity=100,
                attrs={"publisher": "audiochuck"},
            ),
            [("crime junkie", 1.0), ("crime junkie audiochuck", 0.8), ("crime junkie true crime", 0.5)],
        ),
        (Entity("playlist:1", "playlist", "Pop Hits!", popularity=150), [("pop hits", 1.0)]),  # popularity clipped
        (
            Entity("artist:2", "artist", "Lady Gaga", "Artist · pop, dance", tags=("pop",), popularity=100),
            [("lady gaga", 1.0), ("lady gaga pop", 0.5)],  # descriptive subtitle skipped
        ),
        (Entity("track:2", "track", "!!!", "Band", popularity=-5), [("band", 0.4)]),  # empty title dropped
        (Entity("track:3", "track", "Hello", "!", tags=("?",)), [("hello", 0.5)]),  # "hello !" == "hello": dropped
    ],
    ids=["track", "artist-genre", "podcast-publisher", "playlist", "artist-label", "empty-title", "dedupe"],
)
def test_predict_queries(entity: Entity, expected: list[tuple[str, float]]) -> None:
    assert predict_queries(entity) == expected


def test_predicted_docs_ids_and_fields() -> None:
    e = Entity("track:1", "track", "Creep", "Radiohead", popularity=0)
    docs = predicted_docs(e)
    assert [d["query"] for d in docs] == ["creep", "creep radiohead"]
    assert docs[0] == {
        "id": hashlib.sha1(b"predicted\x1fcreep\x1ftrack:1").hexdigest(),
        "query": "creep",
        "entity_id": "track:1",
        "entity_type": "track",
        "title": "Creep",
        "subtitle": "Radiohead",
        "score": 0.5,
        "clicks": 0.0,
        "source": "predicted",
    }


# -- aggregation ------------------------------------------------------------------------
def h(eid: str, r: float, score: float = 0.0, clicks: float = 0.0) -> dict[str, Any]:
    return {
        "entity_id": eid,
        "entity_type": "track",
        "title": eid.upper(),
        "subtitle": "",
        "_rankingScore": r,
        "score": score,
        "clicks": clicks,
    }


HITS = [h("a", 1.0, score=0.9), h("b", 0.5, clicks=3), h("a", 0.5, score=0.5), h("c", 0.9, clicks=math.e - 1)]


def test_hit_value() -> None:
    assert hit_value(HITS[0]) == pytest.approx(0.9)
    assert hit_value(HITS[1]) == pytest.approx(0.25 * math.log(4))
    assert hit_value(HITS[3]) == pytest.approx(0.81)
    assert hit_value(HITS[1], exponent=1.0) == pytest.approx(0.5 * math.log(4))
    assert hit_value({"_rankingScore": 0.7}) == 0.0  # no prior, no clicks
    assert hit_value({"_rankingScore": 1.0, "clicks": -3.0}) == 0.0  # negative clicks clipped


def test_aggregate_sums_per_entity_and_ranks() -> None:
    out = aggregate(HITS, k=10)
    assert [(c.entity_id, c.rank) for c in out] == [("a", 1), ("c", 2), ("b", 3)]
    assert [c.score for c in out] == pytest.approx([0.9 + 0.125, 0.81, 0.25 * math.log(4)])
    assert out[0].title == "A" and out[0].entity_type == "track"


def test_aggregate_exponent_one() -> None:
    out = aggregate(HITS, k=10, exponent=1.0)
    assert [c.entity_id for c in out] == ["a", "c", "b"]
    assert [c.score for c in out] == pytest.approx([1.15, 0.9, 0.5 * math.log(4)])


def test_aggregate_top_k_and_ties_keep_meili_order() -> None:
    hits = [h("x", 0.5, score=1.0), h("y", 1.0, score=0.25), h("z", 0.1, score=1.0)]
    out = aggregate(hits, k=2)
    assert [(c.entity_id, c.score) for c in out] == [("x", 0.25), ("y", 0.25)]
    assert aggregate([], k=5) == []


def test_click_beats_weak_predicted_matches() -> None:
    """Three clicks on a near-exact remembered query beat a prior-1 title matched at r=0.8."""
    assert hit_value(h("x", 0.95, clicks=3)) > hit_value(h("y", 0.8, score=1.0))


# -- search params and validation -------------------------------------------------------------
def q(text: str, types: tuple[str, ...] = ()) -> Query:
    return Query(text=text, parsed=ParsedQuery(text=text, residual=text), entity_types=types)


@pytest.mark.parametrize(("k", "limit"), [(1, 50), (10, 50), (20, 100), (500, 1000)])
def test_search_params_limit(k: int, limit: int) -> None:
    p = search_params(q("Best  Sad-Songs"), k, MemoryConfig())
    assert p["limit"] == limit and p["q"] == "best sad songs" and "filter" not in p


def test_search_params_type_filter() -> None:
    p = search_params(q("x", ("track", "artist")), 5, MemoryConfig())
    assert p["filter"] == 'entity_type IN ["track", "artist"]'


@pytest.mark.parametrize(
    ("k", "types", "message"),
    [
        (0, (), "k: must be an integer in [1, 1000], got 0"),
        (1001, (), "k: must be an integer in [1, 1000], got 1001"),
        (True, (), "k: must be an integer in [1, 1000], got True"),
        (5, ("album",), "entity_types: unknown entity type 'album'; valid: artist, track, playlist, podcast"),
    ],
)
def test_validate_search(k: Any, types: tuple[str, ...], message: str) -> None:
    with pytest.raises(InvalidRequest) as ei:
        validate_search(q("x", types), k)
    assert str(ei.value) == message


@pytest.mark.parametrize(
    ("event", "message"),
    [
        (("?!", "track:1", 1.0), "events[0].query_text: must contain a word, got '?!'"),
        (("sad", "", 1.0), "events[0].entity_id: must be a non-empty string, got ''"),
        (("sad", "track:1", 0.0), "events[0].weight: must be a finite number > 0, got 0.0"),
        (("sad", "track:1", float("nan")), "events[0].weight: must be a finite number > 0, got nan"),
        (("sad", "track:1", -1), "events[0].weight: must be a finite number > 0, got -1"),
    ],
)
def test_record_validates_before_any_call(event: tuple[Any, Any, Any], message: str) -> None:
    # Port 9 (discard) is never a Meilisearch: reaching the server would raise BackendUnavailable instead.
    mem = MemoryStrategy(MemoryConfig(url="http://127.0.0.1:9", timeout_s=0.2))
    with pytest.raises(InvalidRequest) as ei:
        mem.record(*event)
    assert str(ei.value) == message
    mem.close()


@pytest.mark.parametrize(
    ("events", "message"),
    [
        ([("sad", "track:1", 1.0, 0)], "events[0].seq: must be an integer >= 1 or None, got 0"),
        ([("sad", "track:1", 1.0, 2.0)], "events[0].seq: must be an integer >= 1 or None, got 2.0"),
        ([("sad", "track:1", 1.0, True)], "events[0].seq: must be an integer >= 1 or None, got True"),
        (
            [Click("sad", "t:1", 1.0, 1), ("sad", "t:1")],
            "events[1]: must be (query_text, entity_id, weight[, seq]), got ('sad', 't:1')",
        ),
        ([["sad", "t:1", 1.0]], "events[0]: must be (query_text, entity_id, weight[, seq]), got ['sad', 't:1', 1.0]"),
        (
            [Click("sad", "t:1", 1.0, 1), Click("??", "t:1", 1.0, 2)],
            "events[1].query_text: must contain a word, got '??'",
        ),
    ],
)
def test_record_many_validates_every_event_before_any_call(events: list[Any], message: str) -> None:
    mem = MemoryStrategy(MemoryConfig(url="http://127.0.0.1:9", timeout_s=0.2))
    with pytest.raises(InvalidRequest) as ei:
        mem.record_many(events)
    assert str(ei.value) == message
    mem.close()


# -- exactly once: click edits ------------------------------------------------------------------
def test_click_edits_group_by_document_and_sort_by_seq() -> None:
    edits = click_edits(
        [
            Click("Sad  Song", "t:1", 1.0, 7),
            ("sad song", "t:1", 0.5),  # no seq: added every time
            Click("sad song!", "t:1", 2.0, 3),
            Click("sad song", "t:1", 0.25, 7),  # the same seq twice: summed
            Click("creep", "t:2", 1.0, 4),
            ("creep", "t:3", 3),
        ]
    )
    assert list(edits) == [("sad song", "t:1"), ("creep", "t:2"), ("creep", "t:3")]  # first seen first
    assert edits[("sad song", "t:1")] == ClickEdit(0.5, ((3, 2.0), (7, 1.25)))
    assert edits[("creep", "t:2")] == ClickEdit(0.0, ((4, 1.0),))
    assert edits[("creep", "t:3")] == ClickEdit(3.0, ())
    assert click_edits([]) == {}


@pytest.mark.parametrize(
    ("edit", "before", "after"),
    [
        # a fresh document: c = 0 + 0.5 + 2 + 1.25 = 3.75, last_seq = max(0, 3, 7) = 7
        (ClickEdit(0.5, ((3, 2.0), (7, 1.25))), (0.0, 0), (3.75, 7)),
        # the same batch replayed (last_seq 7): only the seq-less 0.5 is added
        (ClickEdit(0.5, ((3, 2.0), (7, 1.25))), (3.75, 7), (4.25, 7)),
        # half of it applied before (last_seq 3): 10 + 1.25, last_seq 7
        (ClickEdit(0.0, ((3, 2.0), (7, 1.25))), (10.0, 3), (11.25, 7)),
        # a document from before last_seq (reads 0): everything counts
        (ClickEdit(0.0, ((1, 1.0),)), (4.0, 0), (5.0, 1)),
        # a newer seq on the document than the whole batch: nothing counts, last_seq stays
        (ClickEdit(0.0, ((3, 2.0), (7, 1.25))), (1.0, 9), (1.0, 9)),
        (ClickEdit(), (2.0, 5), (2.0, 5)),
    ],
    ids=["fresh", "replayed", "half-applied", "pre-last-seq-doc", "all-older", "empty"],
)
def test_click_edit_apply_by_hand(edit: ClickEdit, before: tuple[float, int], after: tuple[float, int]) -> None:
    assert edit.apply(*before) == after


def test_replaying_a_logged_stream_in_any_batching_counts_each_click_once() -> None:
    """Teaching in seq order, with crashes that replay a batch whole or in part, ends where one pass does."""
    stream = [Click(q, "t:1", w, seq) for seq, (q, w) in enumerate([("a", 1.0), ("a", 0.5), ("a", 2.0), ("a", 1.0)], 1)]
    once = (0.0, 0)
    for c in stream:
        once = click_edits([c])[("a", "t:1")].apply(*once)
    assert once == (4.5, 4)
    state = (0.0, 0)
    for lo, hi in [(0, 2), (0, 2), (0, 1), (1, 4), (2, 4), (0, 4)]:  # crashes replay from old cursors
        state = click_edits(stream[lo:hi])[("a", "t:1")].apply(*state)
    assert state == once


def test_click_edit_context_round_trip() -> None:
    edit = ClickEdit(0.5, ((3, 2.0), (7, 1.25)))
    assert edit.to_context() == {"add": 0.5, "log": [[3, 2.0], [7, 1.25]]}
    assert ClickEdit.from_context(edit.to_context()) == edit


def test_config_is_strict() -> None:
    with pytest.raises(ValueError, match="extra_forbidden"):
        MemoryConfig.model_validate({"indx": "x"})
    with pytest.raises(ValueError, match="index"):
        MemoryConfig(index="bad name!")


# -- shared Meilisearch helpers ------------------------------------------------------------
def test_doc_id_is_sha1_and_meili_safe() -> None:
    assert doc_id("artist:1") == hashlib.sha1(b"artist:1").hexdigest()
    assert doc_id("predicted", "q", "e") == hashlib.sha1(b"predicted\x1fq\x1fe").hexdigest()
    assert all(c in "0123456789abcdef" for c in doc_id("track:weird/id with spaces"))


def test_filter_helpers() -> None:
    assert quote('say "hi" \\ bye') == '"say \\"hi\\" \\\\ bye"'
    assert filter_in("tags", ["rock", "rock", "80s"]) == 'tags IN ["rock", "80s"]'
    assert filter_in("tags", []) == ""
    assert and_filters("a = 1", "", "b = 2") == "(a = 1) AND (b = 2)"
    assert and_filters("", "a = 1") == "a = 1"
    assert or_filters("", "") == ""
    assert or_filters("a = 1", "b = 2") == "(a = 1) OR (b = 2)"
