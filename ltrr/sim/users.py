r"""Simulated users: the held-out Last.fm users searching for what they really listen to.

The catalog never saw these users (:func:`ltrr.catalog.lastfm.split_held_out`), so each one is
an unknown user to the running system; it searches under its own stable id ``sim:<hetrec id>``
(not ``lfm:``, which names imported profiles). :func:`build_world` joins their real listening and
tag assignments with the catalog store; :class:`QueryStream` then draws a seeded stream of
:class:`SimQuery` ``(user_id, kind, text, wanted entity id)``.

Each query first draws its **kind** from :class:`QueryMix`, then a user uniformly among the
held-out users who can ask that kind, then the item (so the mix is exact whatever the users hold):

=========== ============================================================ =============================
kind        query text                                                   wanted
=========== ============================================================ =============================
``name``    an artist the user played, drawn in proportion to the        that artist
            user's plays, spelled exactly as in ``artists.dat``
``typo``    the same, with one realistic misspelling                     that artist
            (:func:`ltrr.sim.typos.misspell`)
``tag``     a tag the user assigned to an artist (``tags.dat`` text), one that artist
            assignment drawn uniformly; personal labels
            (:data:`~ltrr.catalog.lastfm.STOP_TAGS`) and tags that are the
            artist's own name are skipped
``like``    ``"artists like X"``, X drawn from the user's artists by     the user's own artist Y != X
            plays                                                        with the most co-listeners
                                                                         of X (below)
``track``   the title of a track (the catalog's Spotify tracks of an     that track
            artist the user played, artist drawn by plays, track by
            popularity + 1), cut at " - " or " (" ("Song - Remastered"
            -> "Song")
``podcast`` 3 to 6 consecutive words of a podcast's description,        that podcast
            lower-cased (podcast uniform over those with >= 8 words;
            Last.fm has no podcast listening, so any user may ask)
=========== ============================================================ =============================

**Co-listening** (``like``): Y maximises :math:`|U(X) \cap U(Y)|` over the user's other artists,
:math:`U(a)` being the *imported* (not held-out) users who played :math:`a`: the real
co-listening the catalog's own ``similar`` edges are computed from, never the held-out users'
(ties: the user's plays of Y, then the entity id). An X with no co-listened Y is redrawn.

Only artists (and tracks, podcasts) that are catalog entities count. Everything is a pure
function of the data, the store, the mix and the seed.
"""

from __future__ import annotations

import random
import re
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping, Sequence

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ltrr.catalog.lastfm import STOP_TAGS, split_held_out, tag_labels
from ltrr.catalog.normalize import artist_id_for_key, normalize_name
from ltrr.catalog.readers import LastfmData
from ltrr.catalog.store import CatalogStore
from ltrr.errors import InvalidRequest
from ltrr.sim.typos import can_misspell, misspell

KINDS: tuple[str, ...] = ("name", "typo", "tag", "like", "track", "podcast")
USER_PREFIX = "sim:"
MAX_QUERIES = 1_000_000
_MAX_TRIES = 1000
_TITLE_CUT = re.compile(r"\s+(?:-\s|\()")
_ALPHA = re.compile(r"^[^\W\d_]+$")


class QueryMix(BaseModel):
    """Share of each query kind (weights, normalised to sum 1; 0 turns a kind off)."""

    model_config = ConfigDict(extra="forbid")

    name: float = Field(0.25, ge=0.0, description="Known-item search by the artist's exact name.")
    typo: float = Field(0.15, ge=0.0, description="The artist's name with one realistic misspelling.")
    tag: float = Field(0.15, ge=0.0, description="A tag the user gave an artist -> that artist.")
    like: float = Field(0.15, ge=0.0, description="'artists like X' -> the user's most co-listened artist with X.")
    track: float = Field(0.2, ge=0.0, description="A track title of an artist the user plays.")
    podcast: float = Field(0.1, ge=0.0, description="Words from a podcast's description.")

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
    imported users who played each artist entity (for co-listening)."""

    users: tuple[SimUser, ...]
    tracks: Mapping[str, tuple[tuple[str, str, float], ...]]
    podcasts: tuple[tuple[str, tuple[str, ...]], ...]
    listeners: Mapping[str, frozenset[int]] = field(repr=False)

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


def _artist_ids(lfm: LastfmData) -> dict[int, str]:
    out: dict[int, str] = {}
    for aid, name in lfm.artist_names.items():
        key = normalize_name(name)
        if key:
            out[aid] = artist_id_for_key(key)
    return out


def build_world(lfm: LastfmData, store: CatalogStore, population: str = "held_out") -> SimWorld:
    """The held-out users of ``lfm`` (the full data, split here) joined with the catalog ``store``.

    ``population="imported"`` draws the users whose listening *is* in the catalog instead: what
    `scripts/fit_prior.py` fits the policy's prior on, so the held-out users stay unseen."""
    if population not in ("held_out", "imported"):
        raise InvalidRequest("population", f"must be 'held_out' or 'imported', got {population!r}")
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
    )


class QueryStream:
    """A seeded stream of :class:`SimQuery` over a :class:`SimWorld` (module docstring)."""

    def __init__(self, world: SimWorld, mix: QueryMix | None = None, *, seed: int = 0) -> None:
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise InvalidRequest("seed", f"must be an int, got {seed!r}")
        self.world = world
        self.mix = mix or QueryMix()
        self.seed = seed
        self.eligible = self._eligible()
        active = [k for k, w in self.mix.weights().items() if w > 0]
        empty = [k for k in active if not self.eligible[k]]
        if empty:
            raise InvalidRequest("mix", f"no held-out user can ask kind {empty[0]!r}; give it weight 0")

    def _eligible(self) -> dict[str, list[SimUser]]:
        w = self.world
        return {
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
        weights = self.mix.weights()
        kinds = [k for k in KINDS if weights[k] > 0]
        index = 0
        while True:
            kind = rng.choices(kinds, weights=[weights[k] for k in kinds])[0]
            for _ in range(_MAX_TRIES):  # a "like" whose X has no co-listened artist: draw user and X again
                user = rng.choice(self.eligible[kind])
                drawn = self._draw(kind, user, rng)
                if drawn is not None:
                    break
            else:
                raise InvalidRequest("mix", f"kind {kind!r}: no query found in {_MAX_TRIES} draws; give it weight 0")
            yield SimQuery(index, user.user_id, kind, drawn[0], drawn[1])
            index += 1

    def _draw(self, kind: str, user: SimUser, rng: random.Random) -> tuple[str, str] | None:
        w = self.world
        if kind == "tag":
            return rng.choice(user.tags)
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
        eid, name, _ = rng.choices(pool, weights=[max(p, 1) for _, _, p in pool])[0]
        if kind == "name":
            return name, eid
        if kind == "typo":
            return misspell(name, rng), eid
        if kind == "like":
            wanted = w.co_listened(user, eid)
            return (f"artists like {name}", wanted) if wanted else None
        tracks = w.tracks[eid]
        tid, title, _ = rng.choices(tracks, weights=[p + 1.0 for _, _, p in tracks])[0]
        return short_title(title), tid
