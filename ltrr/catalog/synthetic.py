r"""A synthetic catalog with the real catalog's schema, for load tests up to 10^6+ entities.

Every field of entity ``i`` of a type is a pure function of ``(seed, type, i)``
(splitmix64 hashes, :func:`_hash`), so the generator streams in batches with
O(batch) memory and any entity can be recomputed without the others; the same
seed always yields byte-identical entities, relations and users.

Shares: 25 % artists, 3 % playlists, 2 % podcasts (each at least 1), the rest
tracks. Ids: ``artist:syn00000042``, ``track:syn...``, ``playlist:syn...``,
``podcast:syn...``; users ``syn:u0000042``.

Popularity is Zipf-like: artists, tracks and podcasts each get a pseudo-random
rank permutation :math:`r \in \{1..n\}` and popularity
:math:`100 (1 - \ln r / \ln(n + 1))`, i.e. the log of a Zipf count
:math:`C r^{-1}` rescaled to [0, 100]; a playlist's popularity is the mean of
its tracks'. Tracks pick
their artist with probability :math:`\propto 1/r` (popular artists have more
tracks); playlists draw tracks the same way, preferring their own genre.

Relations: ``performs`` (one per track), ``contains`` (10-50 per playlist),
``similar`` (up to 8 same-genre artists per artist) and ``tagged`` (each
entity's genres and tags). Titles repeat at large ``n``, as in real catalogs.
"""

from __future__ import annotations

import math
import time
from typing import Iterator

import numpy as np
from tqdm import tqdm

from ltrr.catalog.build import CatalogStats, paused_gc
from ltrr.catalog.store import CatalogStore
from ltrr.errors import InvalidRequest
from ltrr.types import Entity, Relation, UserProfile

BATCH = 5000
MAX_ENTITIES = 100_000_000
GENRES = {
    "rock": ("guitar", "alternative", "indie rock", "classic rock", "energetic", "live"),
    "pop": ("catchy", "dance pop", "female vocalists", "upbeat", "radio", "summer"),
    "hip hop": ("rap", "trap", "boom bap", "lyrical", "beats", "urban"),
    "electronic": ("house", "techno", "ambient", "synth", "club", "edm"),
    "jazz": ("bebop", "smooth jazz", "saxophone", "swing", "mellow", "instrumental"),
    "classical": ("piano", "orchestral", "baroque", "opera", "strings", "calm"),
    "metal": ("heavy metal", "thrash metal", "doom", "loud", "riffs", "dark"),
    "folk": ("acoustic", "singer songwriter", "americana", "banjo", "storytelling", "warm"),
    "r&b": ("soul", "neo soul", "smooth", "groove", "romantic", "vocal"),
    "latin": ("reggaeton", "salsa", "bachata", "tropical", "spanish", "party"),
    "country": ("nashville", "bluegrass", "outlaw country", "twang", "roadtrip", "heartbreak"),
    "reggae": ("dub", "ska", "dancehall", "roots", "island", "chill"),
}
PODCAST_CATEGORIES = ("comedy", "news", "true crime", "history", "science", "sports", "business", "health & fitness")
ADJ = (
    "Silver Golden Electric Midnight Velvet Broken Crimson Wild Quiet Neon Hollow Burning Frozen Lonely Lucky "
    "Secret Sweet Bitter Fading Rising Falling Endless Little Northern Southern Paper Glass Iron Blue Scarlet "
    "Crystal Savage Gentle Restless Hidden Empty Distant Bright Dark Sacred Static Cosmic Honey Amber Violet"
).split()
NOUN = (
    "Heart Moon River Fire Shadow Dream Ocean Star Road City Ghost Rain Storm Echo Garden Mirror Machine Wolf "
    "Horizon Signal Summer Winter Island Desert Highway Window Thunder Angel Diamond Forest Harbor Lantern Comet "
    "Canyon Orchard Satellite Parade Circus Kingdom Tide Ember Cathedral Meadow Avalanche Mountain Sparrow Tiger"
).split()
FIRST = (
    "Maya Leo Nina Oscar Ava Jonah Lena Marco Iris Felix Zoe Hugo Clara Theo Ruby Elias Mila Omar Sofia Nico "
    "Ada Luca Nora Ivan Elsa Tariq Yuki Amara Diego Freya"
).split()
LAST = (
    "Rivers Stone Hart Vance Bloom Carter Reyes Lindqvist Okafor Moreau Kim Novak Silva Weber Hayes Quinn Park "
    "Costa Fischer Brennan Ito Mendes Larsen Adler Cruz Dumont Rossi Sato Walsh Kaur"
).split()
VERB = "Dancing Running Falling Waiting Burning Dreaming Chasing Drifting Shining Holding Calling Breaking".split()
MOOD = "Chill Happy Late Night Workout Focus Sunday Morning Road Trip Rainy Day Party Sleep".split()
SUFFIX = ("Mix", "Hits", "Essentials", "Radio", "Anthems", "Classics", "Vibes", "Favourites")
SHOW = ("Show", "Podcast", "Hour", "Hour", "Files", "Talk", "Daily", "Weekly")
CITIES = "Lisbon Berlin Austin Osaka Lagos Toronto Glasgow Bogotá Melbourne Seoul Nashville Marseille".split()
_GENRE_NAMES = tuple(GENRES)
_TYPE_SALT = {"artist": 1, "track": 2, "playlist": 3, "podcast": 4, "user": 5}
_M64 = (1 << 64) - 1


def _hash(seed: int, salt: int, idx: np.ndarray) -> np.ndarray:
    """splitmix64 of ``(seed, salt, idx)``: uint64 array of ``idx``'s shape."""
    base = (seed * 0x9E3779B97F4A7C15 + salt * 0xD1B54A32D192ED03) & _M64
    x = idx.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15) + np.full(idx.shape, base, dtype=np.uint64)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def _choice(h: np.ndarray, n: int, shift: int) -> list[int]:
    """Bits ``shift..`` of each hash, reduced to ``[0, n)``."""
    return [int(v) for v in (h >> np.uint64(shift)) % np.uint64(n)]


def _pick(h: np.ndarray, words: tuple[str, ...] | list[str], shift: int) -> list[str]:
    return [words[v] for v in _choice(h, len(words), shift)]


def _unit(h: np.ndarray) -> np.ndarray:
    """Map hashes to floats in [0, 1)."""
    return (h >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def _log_uniform_rank(u: np.ndarray, n: int) -> np.ndarray:
    """Ranks in [1, n] with :math:`P(r) \\propto 1/r` (approximately), from uniforms ``u``."""
    return np.minimum(np.floor(np.exp(u * math.log(n + 1))).astype(np.int64), n)


class _Plan:
    """Counts, rank permutations and the pure per-index functions of one synthetic catalog."""

    def __init__(self, n: int, seed: int) -> None:
        self.seed = seed
        self.n = {"artist": max(1, n * 25 // 100), "playlist": max(1, n * 3 // 100), "podcast": max(1, n * 2 // 100)}
        self.n["track"] = n - sum(self.n.values())
        self.rank: dict[str, np.ndarray] = {}
        self.by_rank: dict[str, np.ndarray] = {}
        for t in ("artist", "track"):
            perm = np.random.default_rng([seed, _TYPE_SALT[t]]).permutation(self.n[t]).astype(np.int64)
            self.rank[t] = perm + 1  # rank of index i
            self.by_rank[t] = np.argsort(perm)  # index of rank r (0-based)
        self.n_users = min(10_000, max(1, n // 100))

    def h(self, kind: str, idx: np.ndarray, salt: int = 0) -> np.ndarray:
        return _hash(self.seed, _TYPE_SALT[kind] * 1000 + salt, idx)

    def popularity(self, kind: str, idx: np.ndarray) -> np.ndarray:
        n = self.n[kind]
        rank = self.rank[kind][idx] if kind in self.rank else (idx % n) + 1
        return np.round(100.0 * (1.0 - np.log(rank) / math.log(n + 1)), 4)

    def artist_genre(self, idx: np.ndarray) -> np.ndarray:
        return idx % len(GENRES)

    def artist_titles(self, idx: np.ndarray) -> list[str]:
        h = self.h("artist", idx)
        fmt, adj, noun = _choice(h, 4, 0), _pick(h, ADJ, 4), _pick(h, NOUN, 12)
        first, last = _pick(h, FIRST, 20), _pick(h, LAST, 28)
        out = []
        for f, a, no, fi, la in zip(fmt, adj, noun, first, last, strict=True):
            out.append((f"{fi} {la}", f"The {a} {no}s", f"{a} {no}", f"{fi} & the {no}s")[f])
        return out

    def artist_tags(self, idx: np.ndarray) -> list[list[str]]:
        """1-5 distinct tags from the artist's genre pool (2-5 hashed picks, duplicates dropped)."""
        out = []
        for i, hk in zip(idx.tolist(), self.h("artist", idx, 2).tolist(), strict=True):
            pool = GENRES[_GENRE_NAMES[i % len(GENRES)]]
            out.append(list(dict.fromkeys(pool[(hk >> (4 * j)) % 6] for j in range(2 + hk % 4))))
        return out

    def track_artist(self, idx: np.ndarray) -> np.ndarray:
        ranks = _log_uniform_rank(_unit(self.h("track", idx, 1)), self.n["artist"])
        return self.by_rank["artist"][ranks - 1]


def _artists(plan: _Plan, idx: np.ndarray) -> tuple[list[Entity], list[Relation]]:
    titles, pops, genre = plan.artist_titles(idx), plan.popularity("artist", idx), plan.artist_genre(idx)
    all_tags = plan.artist_tags(idx)
    h = plan.h("artist", idx, 3)
    n_art, n_genres = plan.n["artist"], len(GENRES)
    ents, rels = [], []
    for k, i in enumerate(idx.tolist()):
        g = _GENRE_NAMES[int(genre[k])]
        hk = int(h[k])
        tags = all_tags[k]
        eid = f"artist:syn{i:08d}"
        listeners = int(10 ** (pops[k] / 20))
        city = CITIES[(hk >> 40) % len(CITIES)]
        ents.append(
            Entity(
                eid,
                "artist",
                titles[k],
                subtitle="Artist · " + ", ".join([g, *tags[:2]]),
                genres=(g,),
                tags=tuple(tags),
                description=f"{titles[k]} is a {g} act from {city}.",
                popularity=float(pops[k]),
                sources=("synthetic",),
                attrs={"listeners": str(listeners)},
            )
        )
        labels = [g, *tags]
        rels += [
            Relation(eid, f"tag:{t}", "tagged", float(60 - 10 * j - (hk >> (8 + j)) % 5)) for j, t in enumerate(labels)
        ]
        same = (n_art - 1 - i % n_genres) // n_genres + 1  # artists sharing genre g
        cands = ((hk >> (6 * j)) % same * n_genres + i % n_genres for j in range(10))
        nbrs = [j for j in dict.fromkeys(cands) if j != i][:8]
        for r, j in enumerate(nbrs):
            rels.append(Relation(eid, f"artist:syn{j:08d}", "similar", round(0.9 - 0.08 * r - (hk >> r) % 7 / 100, 4)))
    return ents, rels


def _tracks(plan: _Plan, idx: np.ndarray) -> tuple[list[Entity], list[Relation]]:
    artist = plan.track_artist(idx)
    a_titles, genre, a_tags = plan.artist_titles(artist), plan.artist_genre(artist), plan.artist_tags(artist)
    h = plan.h("track", idx)
    adj, noun, noun2, verb = _pick(h, ADJ, 0), _pick(h, NOUN, 8), _pick(h, NOUN, 16), _pick(h, VERB, 24)
    fmt = _choice(h, 4, 32)
    pops = plan.popularity("track", idx)
    ents, rels = [], []
    for k, i in enumerate(idx.tolist()):
        title = (f"{adj[k]} {noun[k]}", f"{verb[k]} {noun[k]}", f"{noun[k]} of the {noun2[k]}", f"{adj[k]} {noun2[k]}")
        album = f"{adj[k]} {noun2[k]}s"
        year = 1960 + int(h[k] >> np.uint64(40)) % 65
        g = _GENRE_NAMES[int(genre[k])]
        eid, aid = f"track:syn{i:08d}", f"artist:syn{int(artist[k]):08d}"
        ents.append(
            Entity(
                eid,
                "track",
                title[fmt[k]],
                subtitle=a_titles[k],
                genres=(g,),
                tags=tuple(a_tags[k]),
                description=f"From the album {album} ({year}).",
                popularity=float(pops[k]),
                sources=("synthetic",),
                attrs={"artist_id": aid, "album": album, "release_year": str(year)},
            )
        )
        rels += [Relation(aid, eid, "performs", 1.0), Relation(eid, f"tag:{g}", "tagged", 1.0)]
    return ents, rels


def _playlists(plan: _Plan, idx: np.ndarray) -> tuple[list[Entity], list[Relation]]:
    n_tr, n_genres, cand = plan.n["track"], len(GENRES), 8 * len(GENRES)
    h = plan.h("playlist", idx)
    mood, suffix = _pick(h, MOOD, 8), _pick(h, SUFFIX, 16)
    ents, rels = [], []
    for k, i in enumerate(idx.tolist()):
        g = _GENRE_NAMES[i % n_genres]
        length = min(n_tr, 10 + int(h[k] >> np.uint64(24)) % 41)
        u = _unit(plan.h("playlist", np.arange(cand, dtype=np.int64) + i * cand, 1))
        tracks = plan.by_rank["track"][_log_uniform_rank(u, n_tr) - 1]
        same = plan.artist_genre(plan.track_artist(tracks)) == i % n_genres
        chosen = list(dict.fromkeys([*tracks[same].tolist(), *tracks[~same].tolist()]))[:length]
        pop = round(float(plan.popularity("track", np.asarray(chosen, dtype=np.int64)).mean()), 4) if chosen else 0.0
        eid = f"playlist:syn{i:08d}"
        ents.append(
            Entity(
                eid,
                "playlist",
                f"{mood[k]} {g.title()} {suffix[k]}",
                subtitle=f"Playlist · {g}",
                genres=(g,),
                description=f"{len(chosen)} {g} tracks.",
                popularity=pop,
                sources=("synthetic",),
                attrs={"tracks": str(len(chosen)), "genre": g},
            )
        )
        rels.append(Relation(eid, f"tag:{g}", "tagged", float(len(chosen))))
        rels += [Relation(eid, f"track:syn{t:08d}", "contains", 1.0) for t in chosen]
    return ents, rels


def _podcasts(plan: _Plan, idx: np.ndarray) -> tuple[list[Entity], list[Relation]]:
    h = plan.h("podcast", idx)
    noun, show, first, last = _pick(h, NOUN, 0), _pick(h, SHOW, 8), _pick(h, FIRST, 16), _pick(h, LAST, 24)
    n = plan.n["podcast"]
    ents, rels = [], []
    for k, i in enumerate(idx.tolist()):
        cat = PODCAST_CATEGORIES[int(h[k] >> np.uint64(32)) % len(PODCAST_CATEGORIES)]
        rank = (i * 7919) % n + 1
        eid = f"podcast:syn{i:08d}"
        ents.append(
            Entity(
                eid,
                "podcast",
                f"The {noun[k]} {show[k]}" if i % 2 else f"{first[k]}'s {cat.title()} {show[k]}",
                subtitle=f"{last[k]} Media",
                genres=(cat,),
                description=f"A {cat} podcast hosted by {first[k]} {last[k]}.",
                popularity=round(100.0 * (1.0 - math.log(rank) / math.log(n + 1)), 4),
                sources=("synthetic",),
                attrs={"publisher": f"{last[k]} Media", "episodes": str(1 + int(h[k] >> np.uint64(40)) % 900)},
            )
        )
        rels.append(Relation(eid, f"tag:{cat}", "tagged", 1.0))
    return ents, rels


def _users(plan: _Plan, idx: np.ndarray) -> list[UserProfile]:
    out = []
    for i in idx.tolist():
        u = _unit(plan.h("user", np.arange(30, dtype=np.int64) + i * 30))
        arts = plan.by_rank["artist"][_log_uniform_rank(u, plan.n["artist"]) - 1]
        arts = np.asarray(list(dict.fromkeys(arts.tolist()))[: 10 + i % 21], dtype=np.int64)
        w = 1.0 / np.arange(1, len(arts) + 1)
        w = np.round(w / w.sum(), 6)
        tags: dict[str, float] = {}
        for a, wa in zip(arts.tolist(), w.tolist(), strict=True):
            g = _GENRE_NAMES[a % len(GENRES)]
            tags[g] = tags.get(g, 0.0) + wa
        best = sorted(tags.items(), key=lambda tv: (-tv[1], tv[0]))[:10]
        total = sum(v for _, v in best)
        top_tags = [(t, round(v / total, 6)) for t, v in best]
        top = tuple((f"artist:syn{a:08d}", float(x)) for a, x in zip(arts.tolist(), w.tolist(), strict=True))
        out.append(UserProfile(f"syn:u{i:07d}", top, tuple(top_tags)))
    return out


def _batches(n: int) -> Iterator[np.ndarray]:
    for lo in range(0, n, BATCH):
        yield np.arange(lo, min(n, lo + BATCH), dtype=np.int64)


def generate_synthetic(store: CatalogStore, n_entities: int, *, seed: int = 0, progress: bool = True) -> CatalogStats:
    """Generate and upsert a synthetic catalog of exactly ``n_entities`` entities.

    Streams in batches of :data:`BATCH` entities (with their relations), then
    writes ``min(10_000, n_entities // 100)`` (at least 1) user profiles.
    """
    if not isinstance(store, CatalogStore):
        raise InvalidRequest("store", f"must be a CatalogStore, got {type(store).__name__}")
    if isinstance(n_entities, bool) or not isinstance(n_entities, int) or not 4 <= n_entities <= MAX_ENTITIES:
        raise InvalidRequest("n_entities", f"must be an int in [4, {MAX_ENTITIES}], got {n_entities!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise InvalidRequest("seed", f"must be an int >= 0, got {seed!r}")
    started = time.perf_counter()
    plan = _Plan(n_entities, seed)
    makers = {"artist": _artists, "track": _tracks, "playlist": _playlists, "podcast": _podcasts}
    changed = rel_changed = n_rel = 0
    by_kind: dict[str, int] = {}
    with paused_gc(), tqdm(total=n_entities, desc="synthetic", unit="ent", disable=not progress, leave=False) as bar:
        for kind, make in makers.items():
            for idx in _batches(plan.n[kind]):
                ents, rels = make(plan, idx)
                changed += store.upsert_entities(ents)
                rel_changed += store.upsert_relations(rels)
                n_rel += len(rels)
                for r in rels:
                    by_kind[r.kind] = by_kind.get(r.kind, 0) + 1
                bar.update(len(ents))
        n_users = 0
        for idx in _batches(plan.n_users):
            n_users += store.upsert_users(_users(plan, idx))
    return CatalogStats(
        artists=plan.n["artist"],
        tracks=plan.n["track"],
        playlists=plan.n["playlist"],
        podcasts=plan.n["podcast"],
        relations=n_rel,
        users=n_users,
        changed=changed,
        relations_changed=rel_changed,
        seconds=round(time.perf_counter() - started, 3),
        relations_by_kind=dict(sorted(by_kind.items())),
    )
