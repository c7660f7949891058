"""Lexical strategy against a real Meilisearch, plus its pure planning logic (no server)."""

from __future__ import annotations

import hashlib
import json
import socket
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import pytest
from pydantic import ValidationError

from ltrr.backends.meili_server import MeiliServer, free_port
from ltrr.errors import BackendTimeout, BackendUnavailable
from ltrr.query_understanding import QueryUnderstanding, Vocabulary
from ltrr.strategies.base import Strategy
from ltrr.strategies.lexical import (
    RANKING_RULES,
    LexicalConfig,
    LexicalStrategy,
    entity_to_doc,
    merge_hits,
    plan_searches,
    soft_filters,
)
from ltrr.types import Entity, ParsedQuery, Query

ROOT = Path(__file__).resolve().parents[2]
E = Entity
CATALOG = [
    E("artist:radiohead", "artist", "Radiohead", genres=("rock",), tags=("alternative", "rock"), popularity=80),
    E("artist:tribute", "artist", "Radiohead Tribute Band", tags=("cover",), popularity=5),
    E("track:creep", "track", "Creep", "Radiohead", genres=("rock",), tags=("alternative",), popularity=90),
    E("track:karma", "track", "Karma Police", "Radiohead", genres=("rock",), tags=("alternative",), popularity=85),
    E("track:yesterday-beatles", "track", "Yesterday", "The Beatles", genres=("rock",), popularity=95),
    E("track:yesterday-cover", "track", "Yesterday", "Lounge Cover Band", genres=("pop",), popularity=20),
    E("track:jungle", "track", "Welcome to the Jungle", "Guns N' Roses", genres=("rock",), popularity=70),
    E("track:junglist", "track", "Jungle Welcome Mix", "DJ Unknown", tags=("jungle",), popularity=60),
    E("track:road", "track", "Road to Nowhere", "Talking Heads", popularity=50),
    E("track:highway", "track", "Highway to Hell", "AC/DC", popularity=50),
    E("track:end", "track", "The End", "The Doors", popularity=50),
    E("playlist:rock", "playlist", "Rock Classics", genres=("rock",), popularity=75),
    E("podcast:crime", "podcast", "Crime Junkie", "audiochuck", genres=("True Crime",), popularity=65),
]
QU = QueryUnderstanding(Vocabulary.from_entities(CATALOG), min_tag_count=1)


def Q(text: str, types: tuple[str, ...] = ()) -> Query:
    return Query(text=text, parsed=QU.parse(text), entity_types=types)


# -- pure logic (no server) -----------------------------------------------------------------
def test_entity_to_doc() -> None:
    d = entity_to_doc(CATALOG[0], max_tags=1)
    assert d["id"] == hashlib.sha1(b"artist:radiohead").hexdigest()  # ':' is not allowed in Meili ids
    assert {k: v for k, v in d.items() if k != "id"} == {
        "entity_id": "artist:radiohead",
        "entity_type": "artist",
        "title": "Radiohead",
        "subtitle": "",
        "tags": ["alternative"],
        "genres": ["rock"],
        "top_labels": ["rock", "alternative"],
        "description": "",
        "popularity": 80.0,
    }
    assert entity_to_doc(CATALOG[2])["top_labels"] == ["rock", "alternative"]
    assert entity_to_doc(E("a:1", "artist", "X", genres=("rock",), tags=("rock",)))["top_labels"] == ["rock"]


def test_soft_filter_respects_confidence_and_hard_types() -> None:
    p = ParsedQuery(
        "rock songs",
        "",
        types=("track",),
        genres=("rock",),
        tags=("rock", "80s"),
        confidence={"type:track": 0.9, "genre:rock": 0.9, "tag:rock": 0.8, "tag:80s": 0.5},
    )
    q = Query("rock songs", p)
    assert soft_filters(q, 0.6) == [
        '(entity_type IN ["track"]) AND (top_labels IN ["rock"])',
        '(entity_type IN ["track"]) AND ((genres IN ["rock"]) OR (tags IN ["rock"]))',
    ]
    assert soft_filters(q, 0.85) == [  # the tag slot (0.8) drops out
        '(entity_type IN ["track"]) AND (top_labels IN ["rock"])',
        '(entity_type IN ["track"]) AND (genres IN ["rock"])',
    ]
    only_types = ParsedQuery("songs", "", types=("track",), confidence={"type:track": 0.9})
    assert soft_filters(Query("songs", only_types), 0.6) == ['entity_type IN ["track"]']
    assert soft_filters(q, 0.95) == []
    hard = Query("rock songs", p, entity_types=("artist",))  # the parsed type contradicts the hard filter
    assert soft_filters(hard, 0.6) == ['top_labels IN ["rock"]', '(genres IN ["rock"]) OR (tags IN ["rock"])']


def test_typo_sizes_must_be_ordered() -> None:
    assert LexicalConfig(min_word_size_one_typo=4, min_word_size_two_typos=4).min_word_size_two_typos == 4
    with pytest.raises(ValidationError, match="min_word_size_two_typos"):
        LexicalConfig(min_word_size_one_typo=6, min_word_size_two_typos=5)


def test_plan_single_search_without_slots() -> None:
    plan = plan_searches(Q("radiohaed", ("artist",)), 7, LexicalConfig(index="idx"))
    assert plan == [
        {
            "indexUid": "idx",
            "limit": 7,
            "showRankingScore": True,
            "attributesToRetrieve": ["entity_id", "entity_type", "title", "subtitle"],
            "matchingStrategy": "frequency",
            "q": "radiohaed",
            "filter": 'entity_type IN ["artist"]',
        }
    ]


def test_plan_filtered_then_unfiltered() -> None:
    filtered, unfiltered = plan_searches(Q("Radiohead songs"), 5, LexicalConfig())
    assert (filtered["q"], filtered["filter"]) == ("radiohead", 'entity_type IN ["track"]')
    assert unfiltered["q"] == "radiohead songs" and "filter" not in unfiltered
    strict, broad, _ = plan_searches(Q("rock songs"), 5, LexicalConfig())
    assert strict["q"] == broad["q"] == ""  # everything consumed: most popular rock tracks
    assert strict["filter"] == '(entity_type IN ["track"]) AND (top_labels IN ["rock"])'
    seed, _ = plan_searches(Q("artists like radiohead"), 5, LexicalConfig())
    assert (seed["q"], seed["filter"]) == ("radiohead", 'entity_type IN ["artist"]')
    (only,) = plan_searches(Q("radiohead songs"), 5, LexicalConfig(use_query_filters=False))
    assert only["q"] == "radiohead"


def _hit(eid: str, score: float) -> dict[str, object]:
    return {"entity_id": eid, "entity_type": "track", "title": eid, "subtitle": "", "_rankingScore": score}


def test_merge_known_item_first_then_filtered_tiers_then_fill() -> None:
    strict = [_hit("s1", 1.0)]
    broad = [_hit("f1", 1.0), _hit("s1", 1.0), _hit("f2", 1.0)]
    unfiltered = [_hit("known", 0.99), _hit("f2", 0.5), _hit("u1", 0.4)]
    out = merge_hits([strict, broad, unfiltered], k=5, known_item_score=0.98)
    assert [(c.entity_id, c.rank, c.score) for c in out] == [
        ("known", 1, 0.99),
        ("s1", 2, 1.0),
        ("f1", 3, 1.0),
        ("f2", 4, 1.0),
        ("u1", 5, 0.4),
    ]
    assert [c.entity_id for c in merge_hits([broad, unfiltered], 2, 1.0)] == ["f1", "s1"]
    assert [c.entity_id for c in merge_hits([unfiltered], 2, 0.98)] == ["known", "f2"]


# -- against a real server --------------------------------------------------------------------
@contextmanager
def catalog_index(server: MeiliServer, index: str, **config: Any) -> Iterator[LexicalStrategy]:
    """A LexicalStrategy on a fresh ``index`` holding CATALOG, dropped afterwards."""
    s = LexicalStrategy(LexicalConfig(url=server.url, api_key=server.api_key, index=index, **config))
    try:
        assert s.upsert(CATALOG) == len(CATALOG)
        yield s
    finally:
        s._client.delete_index(s.config.index)
        s.close()


@pytest.fixture
def lexical(meili_server: MeiliServer, meili_index_prefix: str) -> Iterator[LexicalStrategy]:
    with catalog_index(meili_server, f"{meili_index_prefix}entities") as s:
        yield s


def ids(cands: list) -> list[str]:  # type: ignore[type-arg]
    return [c.entity_id for c in cands]


@pytest.mark.integration
def test_is_a_strategy_and_settings_are_applied(lexical: LexicalStrategy) -> None:
    assert isinstance(lexical, Strategy) and lexical.name == "lexical"
    settings = lexical._client.get_settings(lexical.config.index)
    assert settings["rankingRules"] == RANKING_RULES
    assert settings["searchableAttributes"] == ["title", "subtitle", "tags", "genres", "description"]
    assert sorted(settings["filterableAttributes"]) == ["entity_type", "genres", "tags", "top_labels"]
    assert settings["typoTolerance"]["enabled"] is True
    assert settings["typoTolerance"]["minWordSizeForTypos"] == {"oneTypo": 3, "twoTypos": 8}
    lexical.ensure_index()  # idempotent
    assert lexical.count() == len(CATALOG)


@pytest.mark.integration
def test_typo_finds_known_item(lexical: LexicalStrategy) -> None:
    out = lexical.search(Q("radiohaed"), 5)
    assert out[0].entity_id == "artist:radiohead"
    assert [c.rank for c in out] == list(range(1, len(out) + 1))
    assert 0.0 < out[0].score <= 1.0


@pytest.mark.integration
def test_typo_in_a_short_word_finds_known_item(
    lexical: LexicalStrategy, meili_server: MeiliServer, meili_index_prefix: str
) -> None:
    assert ids(lexical.search(Q("crep"), 3))[:1] == ["track:creep"]  # one deletion in a 5-letter title
    assert ids(lexical.search(Q("kama"), 3))[:1] == ["track:karma"]
    # Meilisearch's own defaults: one typo only from 5 letters
    defaults = {"min_word_size_one_typo": 5, "min_word_size_two_typos": 9}
    with catalog_index(meili_server, f"{meili_index_prefix}defaults", **defaults) as strict:
        assert strict.search(Q("crep"), 3) == [] and strict.search(Q("kama"), 3) == []
        assert ids(strict.search(Q("creap"), 3))[:1] == ["track:creep"]


@pytest.mark.integration
def test_popularity_breaks_ties(lexical: LexicalStrategy) -> None:
    out = lexical.search(Q("yesterday"), 5)
    assert ids(out)[:2] == ["track:yesterday-beatles", "track:yesterday-cover"]
    assert out[0].score == out[1].score  # same text relevance: only popularity ordered them


@pytest.mark.integration
def test_type_from_query_puts_tracks_first(lexical: LexicalStrategy) -> None:
    out = lexical.search(Q("radiohead songs"), 5)
    assert ids(out)[:2] == ["track:creep", "track:karma"]  # by popularity among equal matches
    assert "artist:radiohead" in ids(out)  # filled in from the unfiltered search
    plain = lexical.search(Q("radiohead"), 5)
    assert plain[0].entity_id == "artist:radiohead"


@pytest.mark.integration
def test_placeholder_for_fully_structured_query(lexical: LexicalStrategy) -> None:
    out = lexical.search(Q("rock songs"), 3)
    assert ids(out) == ["track:yesterday-beatles", "track:creep", "track:karma"]


@pytest.mark.integration
def test_known_item_beats_guessed_tag_filter(lexical: LexicalStrategy) -> None:
    assert QU.parse("welcome to the jungle").tags == ("jungle",)
    out = lexical.search(Q("welcome to the jungle"), 3)
    assert out[0].entity_id == "track:jungle"
    assert "track:junglist" in ids(out)


@pytest.mark.integration
def test_hard_entity_type_filter(lexical: LexicalStrategy) -> None:
    out = lexical.search(Q("radiohead", ("track",)), 10)
    assert ids(out) == ["track:creep", "track:karma"]
    out = lexical.search(Q("radiohead songs", ("artist",)), 10)
    assert {c.entity_type for c in out} == {"artist"}


@pytest.mark.integration
def test_upsert_changed_title_is_searchable(lexical: LexicalStrategy) -> None:
    changed = E("track:creep", "track", "Creep Zqxwv Remaster", "Radiohead", popularity=90)
    assert lexical.upsert([changed]) == 1
    assert ids(lexical.search(Q("zqxwv"), 3)) == ["track:creep"]
    assert lexical.count() == len(CATALOG)  # replaced, not added


@pytest.mark.integration
def test_dropped_index_is_rebuilt_with_settings(lexical: LexicalStrategy) -> None:
    """The ingest path: count() == 0 after the index was dropped, then upsert re-creates it properly."""
    lexical._client.delete_index(lexical.config.index)
    assert lexical.count() == 0
    lexical.upsert(CATALOG)
    assert lexical._client.get_settings(lexical.config.index)["rankingRules"] == RANKING_RULES
    assert ids(lexical.search(Q("yesterday"), 2)) == ["track:yesterday-beatles", "track:yesterday-cover"]


@pytest.mark.integration
def test_stopped_server_raises_backend_unavailable(own_meili_server: MeiliServer) -> None:
    s = LexicalStrategy(LexicalConfig(url=own_meili_server.url, api_key=own_meili_server.api_key))
    s.upsert(CATALOG[:3])
    own_meili_server.stop()
    with pytest.raises(BackendUnavailable, match=r"unreachable \(\[Errno 111\] Connection refused\)"):
        s.search(Q("radiohead"), 3)
    with pytest.raises(BackendUnavailable):
        s.upsert(CATALOG[:1])
    own_meili_server.start()  # same port and data: back in business
    assert ids(s.search(Q("radiohead"), 1)) == ["artist:radiohead"]
    s.close()


@pytest.mark.integration
def test_wrong_key_and_missing_index_are_backend_errors(meili_server: MeiliServer, meili_index_prefix: str) -> None:
    bad = LexicalStrategy(LexicalConfig(url=meili_server.url, api_key="wrong-key", index=f"{meili_index_prefix}x"))
    with pytest.raises(BackendUnavailable, match="HTTP 403"):
        bad.search(Q("x"), 1)
    missing = LexicalStrategy(
        LexicalConfig(url=meili_server.url, api_key=meili_server.api_key, index=f"{meili_index_prefix}missing")
    )
    with pytest.raises(BackendUnavailable, match="index_not_found"):
        missing.search(Q("x"), 1)
    assert missing.count() == 0


def test_silent_server_raises_backend_timeout() -> None:
    """A server that accepts connections but never answers: the deadline turns into BackendTimeout."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    port = sock.getsockname()[1]
    try:
        s = LexicalStrategy(LexicalConfig(url=f"http://127.0.0.1:{port}", timeout_s=0.3))
        with pytest.raises(BackendTimeout, match="did not answer within 0.3 s"):
            s.search(Q("radiohead"), 3)
        s.close()
    finally:
        sock.close()


@pytest.mark.integration
def test_server_cli_start_status_stop(meili_binary: Path, tmp_path: Path) -> None:
    """The CLI runs a background server with a pidfile (binary symlinked here, not re-downloaded)."""
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "meilisearch").symlink_to(meili_binary)
    port = free_port()
    args = ["--var-dir", str(tmp_path), "--port", str(port), "--key", "cli-test-master-key-0123456789"]

    def cli(cmd: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "ltrr.backends.meili_server", cmd, *args],
            capture_output=True, text=True, timeout=120, cwd=ROOT,
        )  # fmt: skip

    started = cli("start")
    try:
        assert started.returncode == 0, started.stderr
        pid = json.loads(started.stdout)["pid"]
        assert (tmp_path / "meili" / "meilisearch.pid").read_text().strip() == str(pid)
        status = cli("status")
        assert status.returncode == 0
        assert json.loads(status.stdout) == {
            "running": True,
            "pid": pid,
            "url": f"http://127.0.0.1:{port}",
            "healthy": True,
        }
        assert json.loads(cli("start").stdout)["pid"] == pid  # already running: no second server
    finally:
        stopped = cli("stop")
    assert stopped.stdout.strip() == "stopped"
    assert cli("status").returncode == 1
    assert cli("stop").stdout.strip() == "not running"
    assert not (tmp_path / "meili" / "meilisearch.pid").exists()


@pytest.mark.integration
def test_ensure_index_is_a_no_op_when_settings_match(lexical: LexicalStrategy) -> None:
    before = lexical._client.request("GET", "tasks?limit=1")["results"][0]["uid"]
    lexical.ensure_index()
    LexicalStrategy(lexical.config).ensure_index()  # a second replica starting up
    assert lexical._client.request("GET", "tasks?limit=1")["results"][0]["uid"] == before


def test_searches_carry_the_default_search_key_never_the_master_key(
    meili_server: MeiliServer, lexical: LexicalStrategy
) -> None:
    from ltrr.strategies._meili import MeiliClient

    client = MeiliClient(meili_server.url, meili_server.api_key)
    key = client.search_key()
    assert key and key != meili_server.api_key
    described = client.request("GET", f"keys/{key}")
    assert (described["actions"], described["indexes"]) == (["search"], ["*"])
    # That key cannot write: a leaked search key does not let anyone change an index.
    writer = MeiliClient(meili_server.url, key)
    with pytest.raises(BackendUnavailable, match="HTTP 403"):
        writer.request("POST", f"indexes/{lexical.config.index}/documents", [{"id": "x"}])
    # A strategy whose api_key is wrong still searches with a right search key: searches send only it.
    searching = LexicalStrategy(
        LexicalConfig(url=meili_server.url, api_key="wrong-key", search_api_key=key, index=lexical.config.index)
    )
    assert searching.search(Q("radiohead"), 3)[0].entity_id == "artist:radiohead"
