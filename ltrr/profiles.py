r"""Listening profiles learned from each user's own positive feedback.

A user id the imported data does not know (anything but the ``lfm:<hetrec user id>`` profiles of
:mod:`ltrr.catalog.lastfm`, or those an operator upserted) starts anonymous; :class:`ProfileLearner`
gives it a profile from the entities it clicks, plays or favourites, and keeps updating the
profiles that were imported too. Pure logic over the event log and the catalog store (no Ray).

**What one positive event adds.** For a positive feedback event on entity :math:`e` with action
weight :math:`w` (:attr:`ProfileConfig.action_weights`), the artist of :math:`e` is :math:`e`
itself if it is an artist, its ``attrs["artist_id"]`` if it is a track (the link both catalog
builders write, :mod:`ltrr.catalog.assemble` and :mod:`ltrr.catalog.synthetic`), and none for a
playlist or podcast; an artist that is not in the catalog is dropped. Its labels :math:`L_e` are
its ``genres`` and ``tags``, :func:`~ltrr.catalog.normalize.normalize_tag`-ed and deduplicated;
the event spreads :math:`w` evenly over them.

**Weighting: exponentially decayed counts, half-life in the user's own events.** With
:math:`d = 2^{-1/h}` (:math:`h` = :attr:`ProfileConfig.half_life_events`), each of the user's
events updates the raw counts

.. math::

    a_i \leftarrow d\,a_i + w\,[i = \mathrm{artist}(e)], \qquad
    t_l \leftarrow d\,t_l + \frac{w}{|L_e|}\,[l \in L_e],

so after :math:`n` events :math:`a_i = \sum_k w_k\, d^{\,n-k}\,[\mathrm{artist}_k = i]`: an event
:math:`h` of the user's events ago counts half as much as the latest, and new taste shows within
a few dozen clicks. Decay counts the user's own events, not time or other users' traffic. The
profile is the top :data:`~ltrr.validation.MAX_PROFILE_ARTISTS` artists and
:data:`~ltrr.validation.MAX_PROFILE_TAGS` tags by raw count, each list normalised to sum 1 (the
form of the imported profiles). The raw counts keep :data:`STATE_FACTOR` times as many entries, so
an artist just below the cut is not forgotten.

**Imported profiles are updated, not replaced.** A user with a profile but no learner state (an
imported or upserted one) starts from it as :math:`m` = :attr:`ProfileConfig.prior_events`
pseudo-events: :math:`a_i = m\,p_i`, :math:`t_l = m\,q_l` for its normalised weights :math:`p, q`.
The state remembers a hash of the profile it last wrote; if the stored profile differs (an
operator upserted a new one since), the learner starts again from that one.

**Exactly once.** The state of every user and the cursor (meta ``cursor:profiles`` in the catalog
store, :data:`CURSOR_KEY`) are written in one transaction of the catalog store, SQLite or PostgreSQL
(:meth:`~ltrr.catalog.store.CatalogStore.update_users`), which also compare-and-sets the cursor: a
crash before the commit replays the batch from the old cursor, a crash after it finds the cursor
moved, so every positive event is folded in exactly once, and two learners cannot both apply one
batch. Feedback on anonymous searches (empty ``user_id``) is skipped, and so is feedback on an
entity the catalog does not hold.

**Bad events are skipped.** A batch whose fold raises (an entity document of the wrong shape, say)
is bisected down to the events that raise (:func:`ltrr.poison.apply_or_skip`); each of those is
passed by the cursor in its own transaction, counted in :attr:`ProfileLearner.skipped` and logged
once, so one bad event never stops the cursor. Errors of the store itself propagate and are retried.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Mapping

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ltrr.catalog.normalize import normalize_tag
from ltrr.catalog.store import CatalogBase
from ltrr.eventlog import FeedbackEvent
from ltrr.eventlog_base import EventLogBase
from ltrr.poison import SkippedEvents, apply_or_skip
from ltrr.types import Entity, UserProfile
from ltrr.validation import ARTIST_PREFIX, MAX_ID_CHARS, MAX_PROFILE_ARTISTS, MAX_PROFILE_TAGS

#: The learner's cursor name; it lives in the catalog store's meta table under :data:`CURSOR_KEY`
#: (not in the event log, so it commits with the profiles).
CURSOR = "profiles"
CURSOR_KEY = f"cursor:{CURSOR}"
#: The raw state keeps this many times the profile's entries.
STATE_FACTOR = 4
_State = dict[str, Any]


class ProfileConfig(BaseModel):
    """How :class:`ProfileLearner` weighs feedback."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    half_life_events: float = Field(
        25.0, gt=0, allow_inf_nan=False, description="A user's event this many of their events ago counts half."
    )
    prior_events: float = Field(
        25.0,
        ge=0,
        allow_inf_nan=False,
        description="How many events an imported or upserted profile counts as when the learner starts from it.",
    )
    action_weights: dict[str, float] = Field(
        default_factory=lambda: {"click": 1.0, "play": 1.0, "favorite": 2.0},
        description="Weight of one positive event by action; an action not listed weighs 1.",
    )
    batch_size: int = Field(500, ge=1, le=100_000, description="Feedback events read (and committed) per batch.")

    @field_validator("action_weights")
    @classmethod
    def _positive(cls, v: dict[str, float]) -> dict[str, float]:
        for action, w in v.items():
            if not math.isfinite(w) or w <= 0:
                raise ValueError(f"the weight of {action!r} must be a finite number > 0, got {w}")
        return v


@dataclass(frozen=True)
class RawProfile:
    """One user's decayed counts (see the module docstring): ``artists[i]`` = :math:`a_i`,
    ``tags[l]`` = :math:`t_l`; ``events`` folded so far; ``written`` the hash of the profile
    the learner last wrote for this user."""

    artists: dict[str, float] = field(default_factory=dict)
    tags: dict[str, float] = field(default_factory=dict)
    events: int = 0
    written: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"artists": dict(self.artists), "tags": dict(self.tags), "events": self.events, "written": self.written}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RawProfile:
        return cls(
            artists={str(k): float(v) for k, v in (d.get("artists") or {}).items()},
            tags={str(k): float(v) for k, v in (d.get("tags") or {}).items()},
            events=int(d.get("events", 0)),
            written=str(d.get("written", "")),
        )

    @classmethod
    def seeded(cls, profile: UserProfile | None, prior_events: float) -> RawProfile:
        """Start from ``profile`` as ``prior_events`` pseudo-events (empty when there is none)."""
        if profile is None:
            return cls()
        m = prior_events
        return cls(
            artists={a: m * w for a, w in profile.top_artists if m * w > 0},
            tags={t: m * w for t, w in profile.top_tags if m * w > 0},
        )


def profile_hash(profile: UserProfile) -> str:
    blob = json.dumps(profile.to_dict(), sort_keys=True, ensure_ascii=False)
    return hashlib.sha1(blob.encode("utf-8")).hexdigest()


def entity_labels(entity: Entity) -> tuple[str, ...]:
    """The entity's genres then tags, normalised, deduplicated, each 1-128 characters."""
    labels = (normalize_tag(x) for x in (*entity.genres, *entity.tags))
    return tuple(dict.fromkeys(x for x in labels if x and len(x) <= MAX_ID_CHARS))


def entity_artist(entity: Entity) -> str:
    """The artist a click on ``entity`` credits: itself, a track's ``attrs["artist_id"]``, or ``""``."""
    if entity.entity_type == "artist":
        return entity.entity_id
    if entity.entity_type == "track":
        aid = str(entity.attrs.get("artist_id", ""))
        return aid if aid.startswith(ARTIST_PREFIX) else ""
    return ""


def _top(counts: dict[str, float], n: int) -> dict[str, float]:
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:n])


def _normalised(counts: dict[str, float], n: int) -> tuple[tuple[str, float], ...]:
    top = _top(counts, n)
    total = sum(top.values())
    return tuple((k, w / total) for k, w in top.items()) if total > 0 else ()


def fold(raw: RawProfile, clicks: list[tuple[str, tuple[str, ...], float]], decay: float) -> RawProfile:
    """Fold ``clicks`` = ``[(artist id or "", labels, weight), ...]`` (oldest first) into ``raw``:
    the update of the module docstring, then keep the top :data:`STATE_FACTOR` x profile size."""
    artists, tags = dict(raw.artists), dict(raw.tags)
    for artist, labels, w in clicks:
        for counts in (artists, tags):
            for k in counts:
                counts[k] *= decay
        if artist:
            artists[artist] = artists.get(artist, 0.0) + w
        for label in labels:
            tags[label] = tags.get(label, 0.0) + w / len(labels)
    return RawProfile(
        _top(artists, STATE_FACTOR * MAX_PROFILE_ARTISTS),
        _top(tags, STATE_FACTOR * MAX_PROFILE_TAGS),
        raw.events + len(clicks),
        raw.written,
    )


def to_profile(user_id: str, raw: RawProfile) -> UserProfile:
    """The top artists and tags of ``raw``, each list normalised to sum 1."""
    return UserProfile(user_id, _normalised(raw.artists, MAX_PROFILE_ARTISTS), _normalised(raw.tags, MAX_PROFILE_TAGS))


class ProfileLearner:
    """Folds positive feedback after its cursor into the searching user's profile (module docstring).

    ``events`` is the event log (its ``positive_actions`` decide what counts), ``store`` the catalog
    store that holds the profiles the ingress reads on every search (no cache, so the next search
    sees a step's profiles). ``skipped`` counts the events that failed to fold (stage ``profiles``).
    """

    def __init__(
        self,
        events: EventLogBase,
        store: CatalogBase,
        config: ProfileConfig | Mapping[str, Any] | None = None,
        *,
        skipped: SkippedEvents | None = None,
    ) -> None:
        if not isinstance(events, EventLogBase):
            raise TypeError(f"`events` must be a SQLiteEventLog or PostgresEventLog, got {type(events).__name__}")
        if not isinstance(store, CatalogBase):
            raise TypeError(f"`store` must be a CatalogStore or PgCatalogStore, got {type(store).__name__}")
        self.events = events
        self.store = store
        self.config = config if isinstance(config, ProfileConfig) else ProfileConfig.model_validate(dict(config or {}))
        self.decay = 2.0 ** (-1.0 / self.config.half_life_events)
        self.skipped = skipped if skipped is not None else SkippedEvents()

    def cursor(self) -> int:
        """The feedback ``seq`` up to which events have been folded in."""
        return int(self.store.get_meta(CURSOR_KEY, "0") or 0)

    def step(self) -> int:
        """Fold every positive event after the cursor, a batch per transaction; return how many were folded."""
        folded = 0
        while True:
            cursor = self.cursor()
            rows = self.events.positives_since(cursor, self.config.batch_size)
            if not rows:
                return folded
            n = self._apply_or_skip(cursor, rows)
            if n is not None:  # None: another learner moved the cursor first; go on from where it got to
                folded += n

    def _apply_or_skip(self, cursor: int, rows: list[tuple[int, FeedbackEvent, str]]) -> int | None:
        """:meth:`_apply` of ``rows``, bisected down to the events that raise; each of those is skipped (the
        cursor moves past it alone, compare-and-set like any batch). None: another learner moved the cursor."""

        def start(lo: int) -> int:
            return rows[lo - 1][0] if lo else cursor

        def skip(i: int, exc: Exception) -> int | None:
            seq, fb, _ = rows[i]
            if not self.store.update_users((), lambda *_: None, cursor_key=CURSOR_KEY, expect=start(i), to=seq):
                return None
            self.skipped.record("profiles", f"feedback {fb.event_id}", seq, exc)
            return 0

        return apply_or_skip(len(rows), lambda lo, hi: self._apply(start(lo), rows[lo:hi]), skip)

    def _apply(self, cursor: int, rows: list[tuple[int, FeedbackEvent, str]]) -> int | None:
        users: dict[str, str] = {}
        for _, fb, _ in rows:
            if fb.request_id not in users:
                search = self.events.search(fb.request_id)
                users[fb.request_id] = search.user_id.strip() if search is not None else ""
        entities = self.store.get_many(sorted({fb.entity_id for _, fb, _ in rows if users[fb.request_id]}))
        track_artists = {entity_artist(e) for e in entities.values() if e.entity_type == "track"} - {""}
        known_artists = {a for a, e in entities.items() if e.entity_type == "artist"}
        known_artists |= set(self.store.get_many(sorted(track_artists - known_artists)))
        weights = self.config.action_weights
        clicks: dict[str, list[tuple[str, tuple[str, ...], float]]] = defaultdict(list)
        for _, fb, _ in rows:  # in seq order, so each user's clicks are oldest first
            uid, entity = users[fb.request_id], entities.get(fb.entity_id)
            if uid and entity is not None:
                artist = entity_artist(entity)
                artist = artist if artist in known_artists else ""
                clicks[uid].append((artist, entity_labels(entity), weights.get(fb.action, 1.0)))

        def update(uid: str, profile: UserProfile | None, state: _State | None) -> tuple[UserProfile, _State]:
            raw = RawProfile.from_dict(state) if state is not None else None
            if raw is None or profile is None or raw.written != profile_hash(profile):
                raw = RawProfile.seeded(profile, self.config.prior_events)
            raw = fold(raw, clicks[uid], self.decay)
            new = to_profile(uid, raw)
            return new, RawProfile(raw.artists, raw.tags, raw.events, profile_hash(new)).to_dict()

        if not self.store.update_users(list(clicks), update, cursor_key=CURSOR_KEY, expect=cursor, to=rows[-1][0]):
            return None
        return sum(len(c) for c in clicks.values())
