"""Turn the parsed data sets into catalog entities, relations and user profiles.

Pure logic (no I/O): :func:`assemble_catalog` takes the records of
:mod:`ltrr.catalog.readers` and returns an :class:`AssembledCatalog`.

Decisions, in one place:

* **Artists** are keyed by :func:`~ltrr.catalog.normalize.normalize_name`; a
  Last.fm artist and a Spotify ``track_artist`` with the same key are one
  entity whose ``sources`` is ``("lastfm", "spotify")``. Variants inside one
  source merge the same way (``"The Killers"`` / ``"Killers"``).
  Title: the Spotify spelling used on most tracks, else the Last.fm spelling
  with most plays.
* **Artist popularity** :math:`= \\max(p_{lfm}, p_{sp})` where
  :math:`p_{lfm} = 100 \\log(1 + n) / \\log(1 + n_{max})` for ``n`` Last.fm
  listeners (distinct users) and :math:`p_{sp}` is the highest Spotify track
  popularity. The max, not the mean, so an artist famous in one source is not
  pulled down by its absence from (or old tracks in) the other.
* **Tags** (Last.fm) are ranked by assignment count; personal labels,
  one-off rare tags and the artist's own name are dropped, top 10 kept
  (:func:`ltrr.catalog.lastfm.top_tags`). **Genres** of an artist are its main Spotify
  playlist genres/subgenres by row count, then its tags that are well-known
  genre names (:data:`GENRE_WORDS`), 6 at most (:func:`top_genres`).
* **Tracks** carry the playlist genres then subgenres (by row count) and the
  artist's top 5 tags. Rows whose title or artist is ``NA`` are dropped.
* **Playlists**: popularity = mean popularity of their tracks.
* **Podcasts** (deduplicated by show id, categories merged as genres):
  charted shows get :math:`50 + 50 (51 - r) / 50` for best chart rank
  :math:`r \\in [1, 50]` (so 51..100); others get
  :math:`50 \\log(1 + e) / \\log(1 + e_{max})` for ``e`` episodes (0..50):
  a chart rank is direct evidence of listening, an episode count only of an
  established show, so every charted show ranks above every uncharted one.
* ``tagged`` edges of an artist, playlist or podcast are exactly its
  ``genres`` and ``tags``; of a track, its ``genres`` only (its inherited
  artist tags are reachable through ``performs``). Weight = how many times the
  label was assigned (Last.fm tag assignments + Spotify playlist rows, or the
  number of podcast sources listing a category).

**Held-out users** (:func:`ltrr.catalog.lastfm.split_held_out`, 20% of the Last.fm users by a
fixed hash of their id) are removed before anything is aggregated: everything below is computed
from the other users' listening and tag assignments only.

**Slices** (``max_artists=N``): the top N Last.fm artists by total plays, the
tracks of those artists, at most ``max(5, N // 20)`` playlists (most kept
tracks first) and ``max(5, N // 40)`` podcasts (most popular first). Entities
in a slice are computed from the full data, so each is byte-identical to its
full-build version; only relations are restricted to the slice.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from ltrr.catalog.lastfm import (
    ArtistAcc,
    index_lastfm,
    lastfm_artists,
    similar_artists,
    split_held_out,
    top_tags,
    user_profiles,
)
from ltrr.catalog.normalize import normalize_name, normalize_tag
from ltrr.catalog.readers import LastfmData, PodcastRow, SongRow
from ltrr.types import Entity, Relation, UserProfile

MAX_GENRES = 6
MIN_GENRE_SHARE = 0.25
TRACK_TAGS = 5
GENRE_WORDS = frozenset(
    "rock|pop|rap|hip hop|r&b|edm|latin|electronic|electronica|dance|metal|heavy metal|jazz|blues|soul|funk|"
    "folk|country|reggae|punk|classical|ambient|indie|alternative|indie rock|indie pop|alternative rock|hard rock|"
    "classic rock|punk rock|pop rock|pop punk|post rock|post punk|progressive rock|progressive metal|psychedelic|"
    "death metal|black metal|thrash metal|power metal|gothic metal|nu metal|metalcore|deathcore|hardcore|"
    "post hardcore|emo|screamo|grunge|britpop|new wave|synthpop|electropop|electro|house|techno|trance|"
    "drum and bass|dubstep|trip hop|downtempo|industrial|experimental|singer songwriter|acoustic|disco|gospel|"
    "reggaeton|k pop|j pop|j rock|soundtrack|instrumental|chillout|lounge|world|salsa|bossa nova|mpb|shoegaze|"
    "idm|ebm|darkwave|garage rock|ska|dancehall|trap|grime|blues rock|avant garde".split("|")
)


@dataclass
class AssembledCatalog:
    """Everything one build writes: entities (in write order), relations, users; and how many
    Last.fm users were held out of it."""

    entities: list[Entity] = field(default_factory=list)
    relations: list[Relation] = field(default_factory=list)
    users: list[UserProfile] = field(default_factory=list)
    held_out_users: int = 0


def _ranked(c: Counter[str], limit: int | None = None) -> list[str]:
    return [k for k, _ in sorted(c.items(), key=lambda kv: (-kv[1], kv[0]))][:limit]


def _year(date: str) -> str:
    return date[:4] if len(date) >= 4 and date[:4].isdigit() else ""


# -- artists -----------------------------------------------------------------


def top_genres(art: ArtistAcc, tags: list[str]) -> list[str]:
    """Spotify genres holding >= :data:`MIN_GENRE_SHARE` of the top genre's rows, then genre-like tags."""
    best = max(art.genres.values(), default=0)
    genres = [g for g in _ranked(art.genres) if art.genres[g] >= MIN_GENRE_SHARE * best]
    genres += [t for t in tags if t in GENRE_WORDS and t not in genres]
    return genres[:MAX_GENRES]


def _artist_entity(art: ArtistAcc, max_listeners: int, global_tags: Counter[str]) -> Entity:
    tags = top_tags(art, global_tags)
    genres = top_genres(art, tags)
    p_lfm = 100.0 * math.log1p(art.listeners) / math.log1p(max_listeners) if art.listeners else 0.0
    p_sp = float(max((p for p, _ in art.tracks), default=0))
    sources = tuple(s for s, present in (("lastfm", art.lfm_ids), ("spotify", art.sp_names)) if present)
    labels = (tags or genres)[:3]
    top_tracks = [t for _, t in sorted(art.tracks, key=lambda pt: (-pt[0], pt[1]))]
    top_tracks = list(dict.fromkeys(top_tracks))[:3]
    attrs: dict[str, str] = {}
    if art.lfm_ids:
        attrs.update(listeners=str(art.listeners), plays=str(art.plays), lastfm_id=str(art.lfm_ids[0]))
    if art.url:
        attrs["url"] = art.url
    if art.tracks:
        attrs["tracks"] = str(len(art.tracks))
    return Entity(
        entity_id=art.entity_id,
        entity_type="artist",
        title=art.title(),
        subtitle="Artist · " + ", ".join(labels) if labels else "Artist",
        genres=tuple(genres),
        tags=tuple(tags),
        description=("Top tracks: " + ", ".join(top_tracks) + ".") if top_tracks else "",
        popularity=round(max(p_lfm, p_sp), 4),
        sources=sources,
        attrs=attrs,
    )


# -- tracks and playlists -----------------------------------------------------


@dataclass
class _Track:
    row: SongRow
    key: str
    genres: Counter[str] = field(default_factory=Counter)
    subgenres: Counter[str] = field(default_factory=Counter)


@dataclass
class _Playlist:
    row: SongRow
    genres: Counter[str] = field(default_factory=Counter)
    subgenres: Counter[str] = field(default_factory=Counter)
    tracks: dict[str, int] = field(default_factory=dict)  # track id -> popularity, in first-seen order


def _collect_songs(
    songs: list[SongRow], artists: dict[str, ArtistAcc]
) -> tuple[dict[str, _Track], dict[str, _Playlist]]:
    """Group song rows into tracks and playlists; count genre labels per track, artist, playlist.

    A repeated (track, playlist) row is skipped, so it counts once.
    """
    tracks: dict[str, _Track] = {}
    playlists: dict[str, _Playlist] = {}
    seen: set[tuple[str, str]] = set()
    for row in songs:
        if not row.track_id or not row.name or not row.artist:
            continue  # the NA rows: no title, no artist, nothing to search for
        if (row.track_id, row.playlist_id) in seen:
            continue
        seen.add((row.track_id, row.playlist_id))
        key = normalize_name(row.artist)
        if not key:
            continue
        g, sg = normalize_tag(row.genre), normalize_tag(row.subgenre)
        tr = tracks.get(row.track_id)
        art = artists.get(key)
        if art is None:
            art = artists[key] = ArtistAcc(key)
        if tr is None:
            tr = tracks[row.track_id] = _Track(row, key)
            art.sp_names[row.artist] += 1
            art.tracks.append((row.popularity, row.name))
        for counter_t, counter_a, label in ((tr.genres, art.genres, g), (tr.subgenres, art.genres, sg)):
            if label:
                counter_t[label] += 1
                counter_a[label] += 1
        if row.playlist_id:
            pl = playlists.get(row.playlist_id)
            if pl is None:
                pl = playlists[row.playlist_id] = _Playlist(row)
            if g:
                pl.genres[g] += 1
            if sg:
                pl.subgenres[sg] += 1
            pl.tracks.setdefault(row.track_id, row.popularity)
    return tracks, playlists


def _track_entity(tr: _Track, art: ArtistAcc, art_tags: list[str]) -> Entity:
    r = tr.row
    genres = _ranked(tr.genres) + [s for s in _ranked(tr.subgenres) if s not in tr.genres]
    year = _year(r.release_date)
    attrs = {"artist_id": art.entity_id, "album": r.album, "album_id": r.album_id, "release_date": r.release_date}
    if year:
        attrs["release_year"] = year
    desc = f"From the album {r.album}" + (f" ({year})" if year else "") + "." if r.album else ""
    return Entity(
        entity_id=f"track:{r.track_id}",
        entity_type="track",
        title=r.name,
        subtitle=r.artist,
        genres=tuple(genres),
        tags=tuple(art_tags[:TRACK_TAGS]),
        description=desc,
        popularity=float(r.popularity),
        sources=("spotify",),
        attrs=attrs,
    )


def _playlist_entity(pid: str, pl: _Playlist, tracks: dict[str, _Track]) -> Entity:
    genres = _ranked(pl.genres) + [s for s in _ranked(pl.subgenres) if s not in pl.genres]
    pops = [p for tid, p in pl.tracks.items() if tid in tracks]
    by_artist = Counter(tracks[tid].row.artist for tid in pl.tracks if tid in tracks)
    top = _ranked(by_artist, 5)
    genre = genres[0] if genres else ""
    desc = f"{len(pops)} tracks" + (" featuring " + ", ".join(top) if top else "") + "."
    return Entity(
        entity_id=f"playlist:{pid}",
        entity_type="playlist",
        title=pl.row.playlist_name or pid,
        subtitle=f"Playlist · {genre}" if genre else "Playlist",
        genres=tuple(genres),
        description=desc,
        popularity=round(sum(pops) / len(pops), 4) if pops else 0.0,
        sources=("spotify",),
        attrs={"tracks": str(len(pops)), "genre": genre, "subgenre": (_ranked(pl.subgenres, 1) or [""])[0]},
    )


# -- podcasts -----------------------------------------------------------------


def _podcast_entities(rows: list[PodcastRow]) -> list[tuple[Entity, Counter[str]]]:
    by_id: dict[str, list[PodcastRow]] = defaultdict(list)
    for r in rows:
        if r.show_id and r.name:
            by_id[r.show_id].append(r)
    max_eps = max((r.episodes for r in rows), default=0)
    out: list[tuple[Entity, Counter[str]]] = []
    for sid, group in by_id.items():
        cats: Counter[str] = Counter()
        seen: set[tuple[str, str]] = set()
        for r in group:
            for c in r.categories:
                label = normalize_tag(c)
                if label and (r.source, label) not in seen:
                    seen.add((r.source, label))
                    cats[label] += 1
        genres = list(dict.fromkeys(normalize_tag(c) for r in group for c in r.categories if normalize_tag(c)))
        first = group[0]
        ranks = [r.chart_rank for r in group if r.chart_rank > 0]
        eps = max(r.episodes for r in group)
        if ranks:
            pop = 50.0 + 50.0 * (51 - min(min(ranks), 50)) / 50.0
        else:
            pop = 50.0 * math.log1p(eps) / math.log1p(max_eps) if max_eps else 0.0
        publisher = next((r.publisher for r in group if r.publisher), "")
        attrs = {"publisher": publisher, "episodes": str(eps)}
        if ranks:
            attrs["chart_rank"] = str(min(ranks))
        for k in ("languages", "explicit"):
            v = next((getattr(r, k) for r in group if getattr(r, k)), "")
            if v:
                attrs[k] = v
        ent = Entity(
            entity_id=f"podcast:{sid}",
            entity_type="podcast",
            title=first.name,
            subtitle=publisher,
            genres=tuple(genres),
            description=next((r.description for r in group if r.description), ""),
            popularity=round(pop, 4),
            sources=tuple(sorted({r.source for r in group})),
            attrs=attrs,
        )
        out.append((ent, cats))
    return out


# -- assembly ------------------------------------------------------------------------


def _tag_edges(src: str, labels: list[str], counts: Counter[str]) -> list[Relation]:
    return [Relation(src, "tag:" + lab, "tagged", float(max(counts.get(lab, 0), 1))) for lab in labels]


def assemble_catalog(
    lfm: LastfmData,
    songs: list[SongRow],
    podcasts: list[PodcastRow],
    max_artists: int | None = None,
) -> AssembledCatalog:
    """Build every entity, relation and user profile (see the module docstring)."""
    lfm, held = split_held_out(lfm)
    idx = index_lastfm(lfm)
    artists = lastfm_artists(lfm, idx)
    lfm_keys = sorted(artists, key=lambda k: (-artists[k].plays, k))
    tracks, playlists = _collect_songs(songs, artists)
    kept = set(artists) if max_artists is None else set(lfm_keys[:max_artists])
    kept_tracks = {tid: t for tid, t in tracks.items() if t.key in kept}
    pl_ids = sorted(playlists, key=lambda p: (-sum(t in kept_tracks for t in playlists[p].tracks), p))
    if max_artists is not None:
        pl_ids = [p for p in pl_ids if any(t in kept_tracks for t in playlists[p].tracks)]
        pl_ids = pl_ids[: max(5, max_artists // 20)]
    pods = sorted(_podcast_entities(podcasts), key=lambda ec: (-ec[0].popularity, ec[0].entity_id))
    if max_artists is not None:
        pods = pods[: max(5, max_artists // 40)]

    held_users = set(held.plays[:, 0].tolist()) | set(held.tag_assignments[:, 0].tolist())
    out = AssembledCatalog(held_out_users=len(held_users))
    max_listeners = max((a.listeners for a in artists.values()), default=1) or 1
    art_keys = sorted(kept, key=lambda k: (-artists[k].plays, k))
    global_tags: Counter[str] = Counter()
    for a in artists.values():
        global_tags.update(a.tags)
    art_entities = {k: _artist_entity(artists[k], max_listeners, global_tags) for k in art_keys}
    art_rank = sorted(art_keys, key=lambda k: (-art_entities[k].popularity, art_entities[k].entity_id))
    for k in art_rank:
        ent = art_entities[k]
        out.entities.append(ent)
        counts = artists[k].tags + artists[k].genres
        out.relations += _tag_edges(ent.entity_id, list(dict.fromkeys(ent.genres + ent.tags)), counts)

    lfm_kept = [k for k in lfm_keys if k in kept]
    for key, nbrs in zip(lfm_kept, similar_artists(idx, lfm_kept), strict=True):
        src = artists[key].entity_id
        out.relations += [Relation(src, artists[k].entity_id, "similar", w) for k, w in nbrs]

    track_order = sorted(kept_tracks, key=lambda t: (-kept_tracks[t].row.popularity, t))
    for tid in track_order:
        tr = kept_tracks[tid]
        art = artists[tr.key]
        ent = _track_entity(tr, art, list(art_entities[tr.key].tags) if tr.key in art_entities else [])
        out.entities.append(ent)
        out.relations.append(Relation(art.entity_id, ent.entity_id, "performs", 1.0))
        out.relations += _tag_edges(ent.entity_id, list(ent.genres), tr.genres + tr.subgenres)

    pl_entities = [(p, _playlist_entity(p, playlists[p], tracks)) for p in pl_ids]
    for pid, ent in sorted(pl_entities, key=lambda pe: (-pe[1].popularity, pe[1].entity_id)):
        pl = playlists[pid]
        out.entities.append(ent)
        out.relations += _tag_edges(ent.entity_id, list(ent.genres), pl.genres + pl.subgenres)
        out.relations += [Relation(ent.entity_id, f"track:{t}", "contains", 1.0) for t in pl.tracks if t in kept_tracks]

    for ent, cats in pods:
        out.entities.append(ent)
        out.relations += _tag_edges(ent.entity_id, list(ent.genres), cats)

    out.users = user_profiles(idx, artists, {k: e.tags for k, e in art_entities.items()})
    return out
