r"""Last.fm HetRec side of the catalog: artists, tags, co-listening and user profiles.

Every Last.fm table is first mapped to integer arrays (:class:`LastfmIndex`)
so that the aggregations below are numpy group-bys instead of Python loops.
Artists are keyed by :func:`~ltrr.catalog.normalize.normalize_name`; several
Last.fm ids with the same key (``"The Killers"`` / ``"Killers"``) are one artist.

Tags: labels are :func:`~ltrr.catalog.normalize.normalize_tag`-ed; personal
labels (:data:`STOP_TAGS`) and slurs (:data:`BLOCKED_SUBSTRINGS`) are dropped.

**Held-out users.** A fixed :data:`HELD_OUT_FRACTION` (20%) of the Last.fm users are kept out
of the catalog so that they can play unknown users in simulations (:mod:`ltrr.sim.users`):
user ``u`` is held out iff

.. math::

    \operatorname{int}_{64}\bigl(\mathrm{sha256}(\texttt{"held-out-v1:"} \Vert u)[0:8]\bigr) / 2^{64}
    < 0.2,

(:func:`is_held_out`; the salt :data:`HELD_OUT_SALT` is arbitrary and fixed, so the split is
the same on every machine and build, and a user's membership does not depend on the others).
:func:`split_held_out` removes their listening and tag-assignment rows before anything is
aggregated, so they have no ``lfm:<id>`` profile and count in no play total, listener count,
co-listening similarity or tag. Artists stay: ``artists.dat`` names every artist any user
played, and an artist only held-out users played is still a catalog entity (with no Last.fm
listening). :data:`HELD_OUT_SPEC` names the split; the build stores it and migrates a catalog
built under another split (:mod:`ltrr.catalog.build`). Real data: 377 of the 1,892 users (1,515 profiles remain).
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from dataclasses import dataclass, field, replace

import numpy as np

from ltrr.catalog.normalize import artist_id_for_key, normalize_name, normalize_tag
from ltrr.catalog.readers import LastfmData
from ltrr.catalog.similarity import cosine_top_k
from ltrr.types import UserProfile

MAX_TAGS = 10
MIN_GLOBAL_TAG = 10
SIMILAR_TOP_K = 20
USER_TOP_ARTISTS = 50
USER_TOP_TAGS = 10
STOP_TAGS = frozenset(
    "seen live|favorites|favourites|favorite|favourite|my favorites|favorite artists|albums i own|check out|"
    "awesome|amazing|love at first listen|<3|cool|fav|favs|best|good".split("|")
)
BLOCKED_SUBSTRINGS = ("faggot", "nigger", "nigga")
#: Share of Last.fm users kept out of the catalog (see the module docstring).
HELD_OUT_FRACTION = 0.2
HELD_OUT_SALT = "held-out-v1"
#: Names the split; stored in the catalog's meta ``catalog:held_out`` by the build.
HELD_OUT_SPEC = f"sha256:{HELD_OUT_SALT}:{HELD_OUT_FRACTION}"


def is_held_out(user_id: int) -> bool:
    """Whether Last.fm user ``user_id`` is held out of the catalog (deterministic, see the module docstring)."""
    if isinstance(user_id, bool) or not isinstance(user_id, (int, np.integer)):
        raise TypeError(f"`user_id` must be a Last.fm user id (int), got {type(user_id).__name__}")
    digest = hashlib.sha256(f"{HELD_OUT_SALT}:{int(user_id)}".encode()).digest()
    return int.from_bytes(digest[:8], "big") < HELD_OUT_FRACTION * 2**64


def held_out_mask(users: np.ndarray) -> np.ndarray:
    """:func:`is_held_out` of every entry of an int array (hashes each distinct id once)."""
    users = np.asarray(users, dtype=np.int64)
    if users.size == 0:
        return np.zeros(users.shape, dtype=bool)
    distinct, inverse = np.unique(users, return_inverse=True)
    held = np.fromiter((is_held_out(int(u)) for u in distinct), dtype=bool, count=len(distinct))
    return held[inverse].reshape(users.shape)


def split_held_out(lfm: LastfmData) -> tuple[LastfmData, LastfmData]:
    """``(imported, held_out)``: the same artists and tags, the listening and tag-assignment rows
    split by :func:`is_held_out` of their user."""
    p_held = held_out_mask(lfm.plays[:, 0]) if len(lfm.plays) else np.zeros(0, dtype=bool)
    t_held = held_out_mask(lfm.tag_assignments[:, 0]) if len(lfm.tag_assignments) else np.zeros(0, dtype=bool)
    imported = replace(lfm, plays=lfm.plays[~p_held], tag_assignments=lfm.tag_assignments[~t_held])
    held = replace(lfm, plays=lfm.plays[p_held], tag_assignments=lfm.tag_assignments[t_held])
    return imported, held


@dataclass
class ArtistAcc:
    """Everything known about one artist key, accumulated over both sources."""

    key: str
    lfm_names: Counter[str] = field(default_factory=Counter)  # spelling -> plays
    sp_names: Counter[str] = field(default_factory=Counter)  # spelling -> tracks
    lfm_ids: list[int] = field(default_factory=list)
    url: str = ""
    listeners: int = 0
    plays: int = 0
    tags: Counter[str] = field(default_factory=Counter)  # label -> assignments
    genres: Counter[str] = field(default_factory=Counter)  # label -> playlist rows
    tracks: list[tuple[int, str]] = field(default_factory=list)  # (popularity, title)
    entity_id: str = ""

    def __post_init__(self) -> None:
        self.entity_id = artist_id_for_key(self.key)

    def title(self) -> str:
        """The Spotify spelling on most tracks, else the Last.fm spelling with most plays."""
        names = self.sp_names or self.lfm_names
        return min(names, key=lambda n: (-names[n], n))


@dataclass(frozen=True)
class LastfmIndex:
    """The Last.fm tables as integer arrays over artist keys and tag labels.

    ``keys[k]``: artist key ``k``; ``labels[l]``: tag label ``l``.
    ``play_*``: one entry per listening row, shape ``(n_plays,)``;
    ``tag_*``: one entry per kept tag assignment, shape ``(n_assignments,)``.
    """

    keys: list[str]
    labels: list[str]
    play_user: np.ndarray
    play_key: np.ndarray
    play_weight: np.ndarray
    tag_user: np.ndarray
    tag_key: np.ndarray
    tag_label: np.ndarray


def tag_labels(lfm: LastfmData) -> dict[int, str]:
    """Normalised label of each Last.fm tag id; personal or offensive labels map to ``""``."""
    out: dict[int, str] = {}
    for tid, tag in lfm.tags.items():
        label = normalize_tag(tag)
        bad = label in STOP_TAGS or any(w in label for w in BLOCKED_SUBSTRINGS)
        out[tid] = "" if bad else label
    return out


def _lookup(ids: np.ndarray, table: np.ndarray) -> np.ndarray:
    """``table[ids]``, and -1 for ids outside the table."""
    out = np.full(len(ids), -1, dtype=np.int64)
    ok = (ids >= 0) & (ids < len(table))
    out[ok] = table[ids[ok]]
    return out


def index_lastfm(lfm: LastfmData) -> LastfmIndex:
    """Map artist ids to artist keys and tag ids to labels (unknown ids are dropped)."""
    keys: list[str] = []
    key_pos: dict[str, int] = {}
    max_id = max(lfm.artist_names, default=0)
    key_of_id = np.full(max_id + 1, -1, dtype=np.int64)
    for aid in sorted(lfm.artist_names):
        key = normalize_name(lfm.artist_names[aid])
        if key:
            key_of_id[aid] = key_pos.setdefault(key, len(key_pos))
            if key_of_id[aid] == len(keys):
                keys.append(key)
    labels: list[str] = []
    label_pos: dict[str, int] = {}
    label_of_tid = np.full(max(lfm.tags, default=0) + 1, -1, dtype=np.int64)
    for tid, label in sorted(tag_labels(lfm).items()):
        if label:
            label_of_tid[tid] = label_pos.setdefault(label, len(label_pos))
            if label_of_tid[tid] == len(labels):
                labels.append(label)
    p = lfm.plays.reshape(-1, 3)
    p_key = _lookup(p[:, 1], key_of_id)
    ok = p_key >= 0
    t = lfm.tag_assignments.reshape(-1, 3)
    t_key, t_label = _lookup(t[:, 1], key_of_id), _lookup(t[:, 2], label_of_tid)
    tok = (t_key >= 0) & (t_label >= 0)
    return LastfmIndex(keys, labels, p[ok, 0], p_key[ok], p[ok, 2], t[tok, 0], t_key[tok], t_label[tok])


def _pair_counts(a: np.ndarray, b: np.ndarray, weights: np.ndarray | None = None) -> tuple[np.ndarray, ...]:
    """Group by ``(a, b)``: return unique ``a``, ``b`` and the summed weights (or counts), sorted by (a, b)."""
    if len(a) == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty
    width = int(b.max()) + 1
    codes, inverse = np.unique(a.astype(np.int64) * width + b, return_inverse=True)
    sums = np.bincount(inverse, weights=weights) if weights is not None else np.bincount(inverse)
    return codes // width, codes % width, sums


def lastfm_artists(lfm: LastfmData, idx: LastfmIndex) -> dict[str, ArtistAcc]:
    """One :class:`ArtistAcc` per Last.fm artist key: spellings, plays, listeners, tag counts."""
    artists = {k: ArtistAcc(k) for k in idx.keys}
    pos = {k: i for i, k in enumerate(idx.keys)}
    n_keys = len(idx.keys)
    plays_by_id: Counter[int] = Counter()
    ids = lfm.plays[:, 1].tolist() if len(lfm.plays) else []
    for aid, w in zip(ids, lfm.plays[:, 2].tolist() if ids else [], strict=True):
        plays_by_id[aid] += w
    for aid in sorted(lfm.artist_names):
        key = normalize_name(lfm.artist_names[aid])
        if key in artists:
            art = artists[key]
            art.lfm_ids.append(aid)
            art.url = art.url or lfm.artist_urls.get(aid, "")
            art.lfm_names[lfm.artist_names[aid]] += plays_by_id.get(aid, 0)
    plays = np.bincount(idx.play_key, weights=idx.play_weight, minlength=n_keys)
    listen_keys, _, _ = _pair_counts(idx.play_key, idx.play_user)
    listeners = np.bincount(listen_keys, minlength=n_keys)
    for k, art in artists.items():
        art.plays = int(plays[pos[k]])
        art.listeners = int(listeners[pos[k]])
    t_keys, t_labels, t_counts = _pair_counts(idx.tag_key, idx.tag_label)
    for k, lab, n in zip(t_keys.tolist(), t_labels.tolist(), t_counts.tolist(), strict=True):
        artists[idx.keys[k]].tags[idx.labels[lab]] = int(n)
    return artists


def top_tags(art: ArtistAcc, global_counts: Counter[str]) -> list[str]:
    """The artist's top :data:`MAX_TAGS` tags.

    Ranked by assignments to this artist, then by assignments overall, then
    alphabetically. A tag assigned once is kept only if it is common overall
    (>= :data:`MIN_GLOBAL_TAG` assignments), which drops one-off jokes; a tag
    that is just the artist's own name is dropped.
    """
    ok = [
        t
        for t, n in art.tags.items()
        if (n >= 2 or global_counts[t] >= MIN_GLOBAL_TAG) and normalize_name(t) != art.key
    ]
    ok.sort(key=lambda t: (-art.tags[t], -global_counts[t], t))
    return ok[:MAX_TAGS]


def similar_artists(idx: LastfmIndex, keys: list[str]) -> list[list[tuple[str, float]]]:
    """For each of ``keys``, its top :data:`SIMILAR_TOP_K` co-listened keys among ``keys``.

    Uses :func:`~ltrr.catalog.similarity.cosine_top_k` over all users' plays.
    """
    pos = {k: i for i, k in enumerate(idx.keys)}
    remap = np.full(len(idx.keys), -1, dtype=np.int64)
    for i, k in enumerate(keys):
        if k in pos:
            remap[pos[k]] = i
    rows = remap[idx.play_key] if len(idx.play_key) else idx.play_key
    ok = rows >= 0
    nbrs = cosine_top_k(rows[ok], idx.play_user[ok], idx.play_weight[ok].astype(np.float64), len(keys), SIMILAR_TOP_K)
    return [[(keys[j], s) for j, s in row] for row in nbrs]


def _normalised(weights: dict[str, float], limit: int) -> tuple[tuple[str, float], ...]:
    top = sorted(weights.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]
    total = sum(w for _, w in top)
    return tuple((k, round(w / total, 6)) for k, w in top) if total > 0 else ()


def user_profiles(
    idx: LastfmIndex, artists: dict[str, ArtistAcc], artist_tags: dict[str, tuple[str, ...]]
) -> list[UserProfile]:
    r"""One profile per Last.fm user who played one of ``artist_tags``' keys (the kept artists).

    ``top_artists``: the user's top :data:`USER_TOP_ARTISTS` kept artists by
    plays. ``top_tags``: top :data:`USER_TOP_TAGS` labels by the user's own tag
    assignments or, for users who never tagged, by
    :math:`\sum_a \mathrm{share}_a \, n_{at} / \sum_{t'} n_{at'}` over the
    artists' kept tags. Each list's weights are normalised to sum to 1.
    """
    users, keys, plays = _pair_counts(idx.play_user, idx.play_key, idx.play_weight.astype(np.float64))
    by_user: dict[int, dict[str, float]] = defaultdict(dict)
    for u, k, w in zip(users.tolist(), keys.tolist(), plays.tolist(), strict=True):
        key = idx.keys[k]
        if key in artist_tags:
            by_user[u][artists[key].entity_id] = w
    t_users, t_labels, t_counts = _pair_counts(idx.tag_user, idx.tag_label)
    own: dict[int, dict[str, float]] = defaultdict(dict)
    for u, lab, n in zip(t_users.tolist(), t_labels.tolist(), t_counts.tolist(), strict=True):
        own[u][idx.labels[lab]] = float(n)
    by_id = {artists[k].entity_id: (artists[k], tags) for k, tags in artist_tags.items()}
    out: list[UserProfile] = []
    for user in sorted(by_user):
        top_artists = _normalised(by_user[user], USER_TOP_ARTISTS)
        tags = dict(own.get(user, {}))
        if not tags:  # never tagged anything: infer from the artists they play
            for eid, share in top_artists:
                art, labels = by_id[eid]
                total = sum(art.tags[t] for t in labels)
                for label in labels:
                    tags[label] = tags.get(label, 0.0) + share * art.tags[label] / total
        out.append(UserProfile(f"lfm:{user}", top_artists, _normalised(tags, USER_TOP_TAGS)))
    return out
