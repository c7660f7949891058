r"""Simulated users: the held-out Last.fm users searching for what they really listen to.

The catalog never saw these users (:func:`ltrr.catalog.lastfm.split_held_out`), so each one is
an unknown user to the running system; it searches under its own stable id ``sim:<hetrec id>``
(not ``lfm:``, which names imported profiles). :func:`build_world` joins their real listening and
tag assignments with the catalog store; :class:`QueryStream` then draws a seeded stream of
:class:`SimQuery` ``(user_id, kind, text, wanted entity id)``.

Each query first draws its **kind** from :class:`QueryMix`, then a user uniformly among the
held-out users who can ask that kind, then the item (so the mix is exact whatever the users hold):

============= ============================================================ =============================
kind          query text                                                   wanted
============= ============================================================ =============================
``name``      an artist the user played, drawn in proportion to the        that artist
              user's plays, spelled exactly as in ``artists.dat``
``typo``      the same, with one realistic misspelling                     that artist
              (:func:`ltrr.sim.typos.misspell`)
``tag``       a tag the user assigned to an artist (``tags.dat`` text),    that artist
              one assignment drawn uniformly; personal labels
              (:data:`~ltrr.catalog.lastfm.STOP_TAGS`) and tags that are
              the artist's own name are skipped
``like``      ``"artists like X"``, X drawn from the user's artists by     the user's own artist Y != X
              plays                                                        with the most co-listeners
                                                                           of X (below)
``track``     the title of a track (the catalog's Spotify tracks of an     that track
              artist the user played, artist drawn by plays, track by
              popularity + 1), cut at " - " or " (" ("Song - Remastered"
              -> "Song")
``podcast``   3 to 6 consecutive words of a podcast's description,         that podcast
              lower-cased (podcast uniform over those with >= 8 words;
              Last.fm has no podcast listening, so any user may ask)
``ambiguous`` one common title word, e.g. ``"love"``, ``"black"``: an      the matching entity the
              artist of the user drawn by plays, then a word uniformly     user's history favours
              among the *ambiguous words* (below) of its name and its      most (below)
              tracks' short titles
============= ============================================================ =============================

**Ambiguous words** (``ambiguous``, share 0 by default): the words of artist names and short track
titles (:func:`title_words`: lower-cased, letters only, at least 3 of them, not a function word
such as "the" or "you") that at least ``ambiguous_min`` (5) distinct catalog artists and tracks
share (:func:`build_world`). The query is the bare word; the **wanted** entity is, among every
artist and track whose title has the word, the one whose artist (the artist itself, or a track's
``artist_id``) the user played most; ties: more of the user's tag assignments on that artist, then
the artist itself before its tracks, then higher popularity, then the smaller entity id.

**Co-listening** (``like``): Y maximises :math:`|U(X) \cap U(Y)|` over the user's other artists,
:math:`U(a)` being the *imported* (not held-out) users who played :math:`a`: the real
co-listening the catalog's own ``similar`` edges are computed from, never the held-out users'
(ties: the user's plays of Y, then the entity id). An X with no co-listened Y is redrawn.

**Drift** (:class:`Drift`, off by default): from query index ``drift.at`` on, the kinds are drawn
from ``drift.mix`` instead; the queries before it are exactly those of the stream without drift.
With ``clones`` (:func:`clone_entities`: ``drift.new_entities`` of the users' artists copied under
a new id and a slightly changed name, for the harness to upsert before query ``drift.at``), every
query from ``drift.at`` on whose artist or wanted entity is a cloned artist uses the clone instead:
its id is wanted, and ``name``, ``typo`` and ``like`` texts spell the clone's name.

Only artists (and tracks, podcasts) that are catalog entities count. Everything is a pure
function of the data, the store, the mix (and drift) and the seed; a kind of share 0 draws
nothing, so the default stream of a seed is the same as before ``ambiguous`` and drift existed.
"""

from __future__ import annotations

import random
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field, replace
from itertools import chain, count
from typing import Any, Iterable, Iterator, Mapping, Sequence

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ltrr.catalog.lastfm import STOP_TAGS, split_held_out, tag_labels
from ltrr.catalog.normalize import artist_entity_id, artist_id_for_key, normalize_name
from ltrr.catalog.readers import LastfmData
from ltrr.catalog.store import CatalogStore
from ltrr.errors import InvalidRequest
from ltrr.sim.typos import can_misspell, misspell
from ltrr.types import Entity

#: The query kinds, in the order the stream draws them (a new kind goes last: the draw of the
#: others is unchanged while its share is 0).
KINDS: tuple[str, ...] = ("name", "typo", "tag", "like", "track", "podcast", "ambiguous")
USER_PREFIX = "sim:"
MAX_QUERIES = 1_000_000
#: How many distinct artists and tracks must share a title word for it to be an ``ambiguous`` query.
AMBIGUOUS_MIN_ENTITIES = 5
MAX_CLONES = 1000
_MAX_TRIES = 1000
_TITLE_CUT = re.compile(r"\s+(?:-\s|\()")
_ALPHA = re.compile(r"^[^\W\d_]+$")
_EDGE_PUNCT = "\"'`.,;:!?()[]{}<>«»“”‘’¡¿-–—/&*#…"
#: Function words (of 3+ letters) that are never an ``ambiguous`` query, however many titles share them.
FUNCTION_WORDS = frozenset(
    "the and you your for with this that are was were not all but from what when who how why can "
    "get got let out now just its his her hers she him they them their our ours any into onto "
    "off too yes where there then than been have has had will would could should about which these "
    "those feat featuring remix mix edit version remastered "
    "que los las del con por una para".split()
)
#: Suffixes of a clone's name (:func:`clone_entities`), tried in this order from a seeded start.
CLONE_SUFFIXES: tuple[str, ...] = ("II", "Collective", "Revival", "Project", "Ensemble", "Reborn")
#: :func:`clone_entities` draws its ``n`` artists among the ``CLONE_POOL * n`` the most users played.
CLONE_POOL = 4


class QueryMix(BaseModel):
    """Share of each query kind (weights, normalised to sum 1; 0 turns a kind off)."""

    model_config = ConfigDict(extra="forbid")

    name: float = Field(0.25, ge=0.0, description="Known-item search by the artist's exact name.")
    typo: float = Field(0.15, ge=0.0, description="The artist's name with one realistic misspelling.")
    tag: float = Field(0.15, ge=0.0, description="A tag the user gave an artist -> that artist.")
    like: float = Field(0.15, ge=0.0, description="'artists like X' -> the user's most co-listened artist with X.")
    track: float = Field(0.2, ge=0.0, description="A track title of an artist the user plays.")
    podcast: float = Field(0.1, ge=0.0, description="Words from a podcast's description.")
    ambiguous: float = Field(
        0.0, ge=0.0, description="One title word many entities share -> the one the user's history favours (off)."
    )

    @model_validator(mode="after")
    def _some(self) -> QueryMix:
        if sum(self.weights().values()) <= 0:
            raise ValueError("at least one kind must have a weight > 0")
        return self

    def weights(self) -> dict[str, float]:
        return {k: float(getattr(self, k)) for k in KINDS}

    @classmethod
    def parse(cls, text: str) -> QueryMix:
        """``"name=0.3,typo=0.1"`` (kinds not named keep their defaults)."""
        values: dict[str, float] = {}
        for part in filter(None, (p.strip() for p in text.split(","))):
            key, sep, val = part.partition("=")
            if not sep:
                raise InvalidRequest("mix", f"entries must be kind=weight, got {part!r}")
            try:
                values[key.strip()] = float(val)
            except ValueError:
                raise InvalidRequest("mix", f"weight of {key.strip()!r} must be a number, got {val!r}") from None
        try:
            return cls(**values)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(x) for x in err["loc"])
            raise InvalidRequest(f"mix.{where}" if where else "mix", err["msg"]) from None


@dataclass(frozen=True)
class SimQuery:
    """One simulated search: who asks, which kind, the text typed, the entity wanted."""

    index: int
    user_id: str
    kind: str
    text: str
    wanted: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "user_id": self.user_id,
            "kind": self.kind,
            "text": self.text,
            "wanted": self.wanted,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SimQuery:
        return cls(int(d["index"]), str(d["user_id"]), str(d["kind"]), str(d["text"]), str(d["wanted"]))


@dataclass(frozen=True)
class SimUser:
    """One held-out user: its catalog artists ``(entity id, Last.fm spelling, plays)`` by plays,
    descending, and its tag assignments ``(tag text, artist entity id)``."""

    lastfm_id: int
    artists: tuple[tuple[str, str, int], ...]
    tags: tuple[tuple[str, str], ...]

    @property
    def user_id(self) -> str:
        return f"{USER_PREFIX}{self.lastfm_id}"


@dataclass(frozen=True)
class SimWorld:
    """What the stream draws from: the users, the catalog's tracks per artist
    ``(entity id, title, popularity)``, the podcasts ``(entity id, description words)``, and the
    imported users who played each artist entity (for co-listening), and the ambiguous words: each
    word to the artists and tracks whose title has it, ``(entity id, artist entity id, popularity)``
    by entity id (an artist's artist id is its own; module docstring)."""

    users: tuple[SimUser, ...]
    tracks: Mapping[str, tuple[tuple[str, str, float], ...]]
    podcasts: tuple[tuple[str, tuple[str, ...]], ...]
    listeners: Mapping[str, frozenset[int]] = field(repr=False)
    ambiguous: Mapping[str, tuple[tuple[str, str, float], ...]] = field(default_factory=dict, repr=False)

    def ambiguous_words(self) -> dict[str, tuple[str, ...]]:
        """Each artist entity id to the ambiguous words of its name and its tracks' titles, sorted."""
        out: dict[str, set[str]] = defaultdict(set)
        for word, matches in self.ambiguous.items():
            for _, artist, _ in matches:
                if artist:
                    out[artist].add(word)
        return {a: tuple(sorted(ws)) for a, ws in out.items()}

    def favoured(self, user: SimUser, word: str) -> str | None:
        """The entity among those whose title has ``word`` that ``user``'s history favours most: most
        plays of its artist, then most tag assignments on it, then the artist before its tracks, then
        popularity, then the smaller id (None if the user neither played nor tagged any of their artists)."""
        plays = {eid: p for eid, _, p in user.artists}
        tags = Counter(eid for _, eid in user.tags)
        best = min(
            self.ambiguous.get(word, ()),
            key=lambda m: (-plays.get(m[1], 0), -tags[m[1]], m[0] != m[1], -m[2], m[0]),
            default=None,
        )
        if best is None or (plays.get(best[1], 0) <= 0 and tags[best[1]] == 0):
            return None
        return best[0]

    def co_listened(self, user: SimUser, x: str) -> str | None:
        """The user's artist Y != ``x`` with most imported co-listeners of ``x`` (None if none has any)."""
        ux = self.listeners.get(x, frozenset())
        best: tuple[int, int, str] | None = None
        for eid, _, plays in user.artists:
            if eid == x:
                continue
            n = len(ux & self.listeners.get(eid, frozenset()))
            if n > 0 and (best is None or (n, plays) > best[:2] or ((n, plays) == best[:2] and eid < best[2])):
                best = (n, plays, eid)
        return best[2] if best else None


def short_title(title: str) -> str:
    """What a user types for a track title: the part before " - " or " (" (if any is left)."""
    head = _TITLE_CUT.split(title, maxsplit=1)[0].strip()
    return head or title.strip()


def title_words(title: str) -> tuple[str, ...]:
    """The words of ``title`` an ``ambiguous`` query may be: split on spaces, edge punctuation
    stripped, lower-cased, letters only, at least 3 of them, not in :data:`FUNCTION_WORDS`
    (each once, in order): ``"Back in Black"`` -> ``("back", "black")``."""
    out: list[str] = []
    for raw in title.split():
        w = raw.strip(_EDGE_PUNCT).lower()
        if len(w) >= 3 and _ALPHA.match(w) and w not in FUNCTION_WORDS and w not in out:
            out.append(w)
    return tuple(out)


def _ambiguous_index(entities: Iterable[Entity], min_entities: int) -> dict[str, tuple[tuple[str, str, float], ...]]:
    matches: dict[str, list[tuple[str, str, float]]] = defaultdict(list)
    for e in sorted(entities, key=lambda e: e.entity_id):
        if e.entity_type == "artist":
            words, artist = title_words(e.title), e.entity_id
        elif e.entity_type == "track":
            words, artist = title_words(short_title(e.title)), str(e.attrs.get("artist_id", ""))
        else:
            continue
        for w in words:
            matches[w].append((e.entity_id, artist, float(e.popularity)))
    return {w: tuple(ms) for w, ms in sorted(matches.items()) if len(ms) >= min_entities}


def _artist_ids(lfm: LastfmData) -> dict[int, str]:
    out: dict[int, str] = {}
    for aid, name in lfm.artist_names.items():
        key = normalize_name(name)
        if key:
            out[aid] = artist_id_for_key(key)
    return out


def build_world(
    lfm: LastfmData,
    store: CatalogStore,
    population: str = "held_out",
    *,
    ambiguous_min: int = AMBIGUOUS_MIN_ENTITIES,
) -> SimWorld:
    """The held-out users of ``lfm`` (the full data, split here) joined with the catalog ``store``.

    ``population="imported"`` draws the users whose listening *is* in the catalog instead: what
    `scripts/fit_prior.py` fits the policy's prior on, so the held-out users stay unseen.
    ``ambiguous_min``: how many distinct artists and tracks must share a title word for it to be an
    ``ambiguous`` query (module docstring)."""
    if population not in ("held_out", "imported"):
        raise InvalidRequest("population", f"must be 'held_out' or 'imported', got {population!r}")
    if isinstance(ambiguous_min, bool) or not isinstance(ambiguous_min, int) or not 2 <= ambiguous_min <= 1000:
        raise InvalidRequest("ambiguous_min", f"must be an int in [2, 1000], got {ambiguous_min!r}")
    imported, held = split_held_out(lfm)
    if population == "imported":
        held = imported
    eid_of = _artist_ids(lfm)
    entities = [e for _, batch in store.entities_since(0, batch_size=5000) for e in batch]
    in_catalog = {e.entity_id for e in entities if e.entity_type == "artist"}
    tracks: dict[str, list[tuple[str, str, float]]] = defaultdict(list)
    podcasts: list[tuple[str, tuple[str, ...]]] = []
    for e in sorted(entities, key=lambda e: e.entity_id):
        if e.entity_type == "track" and e.attrs.get("artist_id") and e.title:
            tracks[e.attrs["artist_id"]].append((e.entity_id, e.title, float(e.popularity)))
        elif e.entity_type == "podcast":
            words = tuple(w for w in e.description.split() if _ALPHA.match(w))
            if len(words) >= 8:
                podcasts.append((e.entity_id, words))
    listeners: dict[str, set[int]] = defaultdict(set)
    for u, a, _ in imported.plays.tolist():
        if a in eid_of:
            listeners[eid_of[a]].add(u)
    plays: dict[int, dict[str, tuple[str, int]]] = defaultdict(dict)
    for u, a, w in held.plays.tolist():
        eid = eid_of.get(a)
        if eid in in_catalog:
            name, old = plays[u].get(eid, (lfm.artist_names[a], 0))
            plays[u][eid] = (name, old + w)  # two Last.fm ids of one artist: the first spelling, summed plays
    labels = tag_labels(lfm)
    tags: dict[int, list[tuple[str, str]]] = defaultdict(list)
    for u, a, t in held.tag_assignments.tolist():
        eid, label = eid_of.get(a), labels.get(t, "")
        if (
            eid in in_catalog
            and label
            and label not in STOP_TAGS
            and normalize_name(label) != normalize_name(lfm.artist_names[a])
        ):
            tags[u].append((lfm.tags[t].strip(), eid))
    users = []
    for u in sorted(set(plays) | set(tags)):
        arts = sorted(((e, n, p) for e, (n, p) in plays[u].items()), key=lambda r: (-r[2], r[0]))
        users.append(SimUser(u, tuple(arts), tuple(tags[u])))
    return SimWorld(
        tuple(users),
        {a: tuple(ts) for a, ts in tracks.items()},
        tuple(podcasts),
        {a: frozenset(us) for a, us in listeners.items()},
        _ambiguous_index(entities, ambiguous_min),
    )


class Drift(BaseModel):
    """A change of the users mid-stream: from query ``at`` on the kinds follow ``mix``, and
    ``new_entities`` of the wanted artists may be replaced by new clones (module docstring)."""

    model_config = ConfigDict(extra="forbid")

    at: int = Field(ge=1, le=MAX_QUERIES, description="Index of the first query drawn under the drift.")
    mix: QueryMix = Field(description="The query mix from `at` on (e.g. more tag and like).")
    new_entities: int = Field(
        0,
        ge=0,
        le=MAX_CLONES,
        description="How many artists clone_entities replaces by new entities from `at` on (the harness upserts them).",
    )


@dataclass(frozen=True)
class Clone:
    """A new entity standing in for ``original`` (an artist entity id) from the drift on."""

    original: str
    entity: Entity


def clone_entities(world: SimWorld, entities: Iterable[Entity], n: int, *, seed: int = 0) -> tuple[Clone, ...]:
    """``n`` of the world's users' artists, cloned as new entities, for a :class:`Drift`.

    Candidates: the :data:`CLONE_POOL` ``* n`` artist entities of ``entities`` that the most users of
    ``world`` played (ties: the smaller id), so that the clones are asked for; ``n`` of them are
    drawn uniformly without replacement by ``random.Random(seed).sample`` (the candidates in that
    order), then each clone's suffix start. Each clone copies its original but for a new name,
    ``"<title> <suffix>"`` (:data:`CLONE_SUFFIXES`, the first whose id is new from a seeded start),
    its id :func:`~ltrr.catalog.normalize.artist_entity_id` of that name, and ``attrs``: Last.fm's
    ``lastfm_id`` and ``url`` dropped (the clone is not a Last.fm artist), ``cloned_from`` added."""
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise InvalidRequest("seed", f"must be an int, got {seed!r}")
    by_id = {e.entity_id: e for e in entities}
    users_of = Counter(eid for u in world.users for eid, _, _ in u.artists)
    artists = sorted((a for a in users_of if a in by_id and by_id[a].entity_type == "artist"),
                     key=lambda a: (-users_of[a], a))  # fmt: skip
    if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= min(len(artists), MAX_CLONES):
        raise InvalidRequest("n", f"must be an int in [0, {min(len(artists), MAX_CLONES)}], got {n!r}")
    rng = random.Random(seed)
    chosen = rng.sample(artists[: CLONE_POOL * n], n)
    taken = set(by_id)
    out: list[Clone] = []
    for a in chosen:
        e = by_id[a]
        start = rng.randrange(len(CLONE_SUFFIXES))
        suffixes = [CLONE_SUFFIXES[(start + i) % len(CLONE_SUFFIXES)] for i in range(len(CLONE_SUFFIXES))]
        names = chain((f"{e.title} {x}" for x in suffixes), (f"{e.title} {i}" for i in count(2)))
        title = next(t for t in names if artist_entity_id(t) not in taken)
        attrs = {k: v for k, v in e.attrs.items() if k not in ("lastfm_id", "url")} | {"cloned_from": a}
        clone = replace(e, entity_id=artist_entity_id(title), title=title, attrs=attrs)
        taken.add(clone.entity_id)
        out.append(Clone(a, clone))
    return tuple(out)


def _active(mix: QueryMix) -> tuple[list[str], list[float]]:
    """The kinds of ``mix`` with a weight > 0, in :data:`KINDS` order, and their weights."""
    weights = mix.weights()
    kinds = [k for k in KINDS if weights[k] > 0]
    return kinds, [weights[k] for k in kinds]


class QueryStream:
    """A seeded stream of :class:`SimQuery` over a :class:`SimWorld` (module docstring)."""

    def __init__(
        self,
        world: SimWorld,
        mix: QueryMix | None = None,
        *,
        seed: int = 0,
        drift: Drift | None = None,
        clones: Sequence[Clone] = (),
    ) -> None:
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise InvalidRequest("seed", f"must be an int, got {seed!r}")
        if clones and drift is None:
            raise InvalidRequest("clones", "need a drift (they replace their originals from drift.at on)")
        if drift is not None and len(clones) not in (0, drift.new_entities):
            raise InvalidRequest("clones", f"must hold drift.new_entities = {drift.new_entities}, got {len(clones)}")
        self.world = world
        self.mix = mix or QueryMix()
        self.seed = seed
        self.drift = drift
        self.clones = tuple(clones)
        self._renamed = {c.original: (c.entity.entity_id, c.entity.title) for c in self.clones}
        self._ambiguous_words = world.ambiguous_words()
        self.eligible = self._eligible()
        for where, m in (("mix", self.mix), ("drift.mix", drift.mix if drift else None)):
            active = [k for k, w in m.weights().items() if w > 0] if m is not None else []
            empty = [k for k in active if not self.eligible[k]]
            if empty:
                raise InvalidRequest(where, f"no held-out user can ask kind {empty[0]!r}; give it weight 0")

    def _eligible(self) -> dict[str, list[SimUser]]:
        w = self.world
        amb = self._ambiguous_words
        return {
            "ambiguous": [u for u in w.users if any(e in amb for e, _, _ in u.artists)],
            "name": [u for u in w.users if u.artists],
            "typo": [u for u in w.users if any(can_misspell(n) for _, n, _ in u.artists)],
            "tag": [u for u in w.users if u.tags],
            "like": [u for u in w.users if len(u.artists) >= 2],
            "track": [u for u in w.users if any(e in w.tracks for e, _, _ in u.artists)],
            "podcast": list(w.users) if w.podcasts else [],
        }

    def generate(self, n: int) -> list[SimQuery]:
        """The first ``n`` queries (the same for the same world, mix and seed)."""
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_QUERIES:
            raise InvalidRequest("n", f"must be an int in [1, {MAX_QUERIES}], got {n!r}")
        out: list[SimQuery] = []
        for q in self:
            out.append(q)
            if len(out) == n:
                break
        return out

    def __iter__(self) -> Iterator[SimQuery]:
        rng = random.Random(self.seed)
        kinds, weights = _active(self.mix)
        renamed: Mapping[str, tuple[str, str]] = {}
        index = 0
        while True:
            if self.drift is not None and index == self.drift.at:
                kinds, weights = _active(self.drift.mix)
                renamed = self._renamed
            kind = rng.choices(kinds, weights=weights)[0]
            for _ in range(_MAX_TRIES):  # a "like" whose X has no co-listened artist: draw user and X again
                user = rng.choice(self.eligible[kind])
                drawn = self._draw(kind, user, rng, renamed)
                if drawn is not None:
                    break
            else:
                raise InvalidRequest("mix", f"kind {kind!r}: no query found in {_MAX_TRIES} draws; give it weight 0")
            yield SimQuery(index, user.user_id, kind, drawn[0], drawn[1])
            index += 1

    def _draw(
        self, kind: str, user: SimUser, rng: random.Random, renamed: Mapping[str, tuple[str, str]]
    ) -> tuple[str, str] | None:
        """One query ``(text, wanted)`` of ``kind`` by ``user``; ``renamed`` maps cloned artists to
        their clones' ``(id, name)`` (empty before the drift)."""
        w = self.world
        if kind == "tag":
            text, eid = rng.choice(user.tags)
            return text, renamed.get(eid, (eid,))[0]
        if kind == "podcast":
            eid, words = rng.choice(w.podcasts)
            size = rng.randint(3, 6)
            start = rng.randrange(0, len(words) - size + 1)
            return " ".join(words[start : start + size]).lower(), eid
        pool: Sequence[tuple[str, str, int]] = user.artists
        if kind == "typo":
            pool = [a for a in pool if can_misspell(a[1])]
        elif kind == "track":
            pool = [a for a in pool if a[0] in w.tracks]
        elif kind == "ambiguous":
            pool = [a for a in pool if a[0] in self._ambiguous_words]
        eid, name, _ = rng.choices(pool, weights=[max(p, 1) for _, _, p in pool])[0]
        if kind == "ambiguous":
            word = rng.choice(self._ambiguous_words[eid])
            wanted = w.favoured(user, word)
            return (word, renamed.get(wanted, (wanted,))[0]) if wanted else None
        if kind == "track":
            tracks = w.tracks[eid]
            tid, title, _ = rng.choices(tracks, weights=[p + 1.0 for _, _, p in tracks])[0]
            return short_title(title), tid
        new_eid, new_name = renamed.get(eid, (eid, name))
        if kind == "name":
            return new_name, new_eid
        if kind == "typo":
            return misspell(new_name, rng), new_eid
        wanted = w.co_listened(user, eid)  # like
        return (f"artists like {new_name}", renamed.get(wanted, (wanted,))[0]) if wanted else None
