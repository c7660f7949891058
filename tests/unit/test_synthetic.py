"""Synthetic catalog generator: exact counts, schema, relations, determinism, Zipf-like popularity."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from ltrr.catalog.build import catalog_summary
from ltrr.catalog.normalize import normalize_tag
from ltrr.catalog.store import CatalogStore
from ltrr.catalog.synthetic import generate_synthetic
from ltrr.errors import InvalidRequest
from ltrr.types import ENTITY_TYPES, Entity, Relation


def _dump(store: CatalogStore) -> tuple[dict[str, Entity], list[Relation]]:
    ents = {e.entity_id: e for _, b in store.entities_since(0) for e in b}
    return ents, list(store.relations_since(0))


@pytest.fixture(scope="module")
def syn(tmp_path_factory: pytest.TempPathFactory) -> CatalogStore:
    store = CatalogStore(tmp_path_factory.mktemp("syn") / "c.sqlite")
    generate_synthetic(store, 1000, seed=7, progress=False)
    return store


@pytest.mark.parametrize(
    ("n", "counts"),
    [
        (4, (1, 1, 1, 1)),
        (37, (9, 26, 1, 1)),  # 37*25//100 = 9, 37*3//100 = 1, 37*2//100 = 0 -> at least 1, tracks the rest
        (1000, (250, 700, 30, 20)),
    ],
)
def test_counts_are_exact(tmp_path: Path, n: int, counts: tuple[int, int, int, int]) -> None:
    store = CatalogStore(tmp_path / "c.sqlite")
    stats = generate_synthetic(store, n, seed=1, progress=False)
    assert (stats.artists, stats.tracks, stats.playlists, stats.podcasts) == counts
    assert stats.entities == stats.changed == n
    assert catalog_summary(store) == dict(zip(("artist", "track", "playlist", "podcast"), counts, strict=True)) | {
        "total": n
    }
    assert stats.users == max(1, n // 100) == sum(1 for _ in store.users())
    assert stats.relations == len(list(store.relations_since(0))) == stats.relations_changed


def test_schema_and_relation_endpoints(syn: CatalogStore) -> None:
    ents, rels = _dump(syn)
    assert len(ents) == 1000
    for e in ents.values():
        assert e.entity_type in ENTITY_TYPES
        assert e.entity_id == f"{e.entity_type}:syn{int(e.entity_id.split('syn')[1]):08d}"
        assert e.title and e.subtitle and e.genres and e.description
        assert 0.0 <= e.popularity <= 100.0
        assert e.sources == ("synthetic",) and all(isinstance(v, str) for v in e.attrs.values())
    by_kind: dict[str, int] = {}
    for r in rels:
        by_kind[r.kind] = by_kind.get(r.kind, 0) + 1
        assert r.src in ents
        assert r.dst in ents or (r.dst.startswith("tag:") and normalize_tag(r.dst[4:]) == r.dst[4:])
        assert r.weight > 0
    assert set(by_kind) == {"similar", "tagged", "performs", "contains"}
    assert by_kind["performs"] == 700  # one per track
    assert 30 * 10 <= by_kind["contains"] <= 30 * 50
    tagged: dict[str, set[str]] = {}
    for r in rels:
        if r.kind == "tagged":
            tagged.setdefault(r.src, set()).add(r.dst[4:])
    for e in ents.values():
        want = set(e.genres) if e.entity_type == "track" else set(e.genres) | set(e.tags)
        assert tagged[e.entity_id] == want
    for r in rels:
        if r.kind == "similar":  # neighbours share the genre
            assert ents[r.src].genres == ents[r.dst].genres and r.src != r.dst
        if r.kind == "performs":
            assert ents[r.dst].subtitle == ents[r.src].title and ents[r.dst].attrs["artist_id"] == r.src
            assert ents[r.dst].tags == ents[r.src].tags


def test_users_reference_artists(syn: CatalogStore) -> None:
    users = list(syn.users())
    assert len(users) == 10
    ids = {u.user_id for u in users}
    assert ids == {f"syn:u{i:07d}" for i in range(10)}
    for u in users:
        assert 10 <= len(u.top_artists) <= 30
        assert abs(sum(w for _, w in u.top_artists) - 1.0) < 1e-4
        assert all(syn.get(a) is not None for a, _ in u.top_artists)
        assert u.top_tags and abs(sum(w for _, w in u.top_tags) - 1.0) < 1e-4


def test_popularity_is_zipf_like(syn: CatalogStore) -> None:
    # popularity(rank r) = 100 (1 - ln r / ln(n + 1)) over a permutation of ranks 1..n, so exactly
    # floor(sqrt(n + 1)) entities score >= 50 and the top one scores 100.
    ents, _ = _dump(syn)
    for kind, n in (("artist", 250), ("track", 700)):
        pops = sorted((e.popularity for e in ents.values() if e.entity_type == kind), reverse=True)
        assert pops[0] == 100.0
        assert sum(p >= 50.0 for p in pops) == math.isqrt(n + 1)
        assert pops[-1] == round(100 * (1 - math.log(n) / math.log(n + 1)), 4)
    per_artist: dict[str, int] = {}
    for e in ents.values():
        if e.entity_type == "track":
            per_artist[e.attrs["artist_id"]] = per_artist.get(e.attrs["artist_id"], 0) + 1
    top = max(ents.values(), key=lambda e: e.popularity if e.entity_type == "artist" else -1)
    assert per_artist.get(top.entity_id, 0) >= 20  # P(rank 1) = ln 2 / ln 251 ~ 12.5 % of 700 tracks


def test_deterministic_under_seed(tmp_path: Path) -> None:
    a, b, c = (CatalogStore(tmp_path / f"{k}.sqlite") for k in "abc")
    generate_synthetic(a, 300, seed=3, progress=False)
    generate_synthetic(b, 300, seed=3, progress=False)
    generate_synthetic(c, 300, seed=4, progress=False)
    (ea, ra), (eb, rb), (ec, rc) = _dump(a), _dump(b), _dump(c)
    assert len(rc) > 0
    assert {k: e.content_hash() for k, e in ea.items()} == {k: e.content_hash() for k, e in eb.items()}
    assert sorted(ra, key=repr) == sorted(rb, key=repr)
    assert list(a.users()) == list(b.users())
    assert set(ea) == set(ec) and ea != ec  # same ids, other content
    again = generate_synthetic(a, 300, seed=3, progress=False)
    assert (again.changed, again.relations_changed) == (0, 0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_entities": 3}, "n_entities: must be an int in [4, 100000000], got 3"),
        ({"n_entities": True}, "n_entities: must be an int in [4, 100000000], got True"),
        ({"n_entities": 10.0}, "n_entities: must be an int in [4, 100000000], got 10.0"),
        ({"n_entities": 10, "seed": -1}, "seed: must be an int >= 0, got -1"),
        ({"n_entities": 10, "seed": "x"}, "seed: must be an int >= 0, got 'x'"),
    ],
)
def test_invalid_arguments(tmp_path: Path, kwargs: dict[str, object], message: str) -> None:
    store = CatalogStore(tmp_path / "c.sqlite")
    with pytest.raises(InvalidRequest) as err:
        generate_synthetic(store, progress=False, **kwargs)  # type: ignore[arg-type]
    assert str(err.value) == message
    assert store.count() == 0
