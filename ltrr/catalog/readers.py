"""Parsers of the raw music data sets in ``data/`` (see ``data/README.md``).

Each reader returns plain typed records and handles the files' quirks:

* Last.fm HetRec 2011: tab-separated with one header line, LF or CRLF line
  endings; ``artists.dat`` is UTF-8 and ``tags.dat`` is **Latin-1**; private-use
  characters at the end of three artist names are stripped.
* TidyTuesday Spotify songs: gzip CSV; the literal ``NA`` (R's missing value)
  in ``track_name`` / ``track_artist`` / ``track_album_name`` becomes ``""``.
* Podcasts: two CSVs (one with CRLF), merged later by show id.

Nothing here decides what an entity is; :mod:`ltrr.catalog.build` does that.
"""

from __future__ import annotations

import csv
import gzip
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from ltrr.catalog.normalize import strip_private_use
from ltrr.errors import ConfigError

LASTFM_DIR = "lastfm-hetrec2011"
SPOTIFY_SONGS = "tidytuesday-spotify-songs-2020/spotify_songs.csv.gz"
PODCAST_CHARTS = "spotify-podcast-charts-2024/podcast_details.csv"
PODCAST_CATEGORIES = "spotify-podcasts-628group4/podcasts.csv"
_NA_FIELDS = ("track_name", "track_artist", "track_album_name")


def _require(path: Path) -> Path:
    if not path.is_file():
        raise ConfigError(f"`data_dir` is missing the data file {path}")
    return path


def read_tsv(path: Path, encoding: str = "utf-8") -> Iterator[list[str]]:
    """Yield the data rows (header skipped) of a tab-separated file; LF or CRLF."""
    text = _require(path).read_bytes().decode(encoding)
    lines = text.split("\n")
    for line in lines[1:]:
        line = line.rstrip("\r")
        if line:
            yield line.split("\t")


def _int_table(path: Path, n_cols: int) -> np.ndarray:
    rows = [r[:n_cols] for r in read_tsv(path, "ascii")]
    if not rows:
        return np.zeros((0, n_cols), dtype=np.int64)
    return np.asarray(rows, dtype=np.int64)


@dataclass(frozen=True)
class LastfmData:
    """The Last.fm HetRec 2011 tables.

    ``plays``: int64 array ``(n, 3)`` of ``(user, artist, weight)``;
    ``tag_assignments``: int64 array ``(m, 3)`` of ``(user, artist, tag)``.
    """

    artist_names: dict[int, str]
    artist_urls: dict[int, str]
    tags: dict[int, str]
    plays: np.ndarray
    tag_assignments: np.ndarray


def read_lastfm(data_dir: Path) -> LastfmData:
    """Read ``artists.dat`` (UTF-8), ``tags.dat`` (Latin-1) and the user tables."""
    base = Path(data_dir) / LASTFM_DIR
    names: dict[int, str] = {}
    urls: dict[int, str] = {}
    for row in read_tsv(base / "artists.dat", "utf-8"):
        name = strip_private_use(row[1]).strip()
        if name:
            names[int(row[0])] = name
            urls[int(row[0])] = row[2] if len(row) > 2 else ""
    tags = {int(r[0]): r[1].strip() for r in read_tsv(base / "tags.dat", "latin-1") if len(r) > 1}
    plays = _int_table(base / "user_artists.dat", 3)
    assigned = _int_table(base / "user_taggedartists.dat", 3)
    return LastfmData(names, urls, tags, plays, assigned)


@dataclass(frozen=True)
class SongRow:
    """One row of ``spotify_songs.csv``: one track in one playlist."""

    track_id: str
    name: str
    artist: str
    popularity: int
    album_id: str
    album: str
    release_date: str
    playlist_id: str
    playlist_name: str
    genre: str
    subgenre: str


def read_spotify_songs(data_dir: Path) -> list[SongRow]:
    """Read the TidyTuesday songs; ``NA`` text fields become ``""``."""
    path = _require(Path(data_dir) / SPOTIFY_SONGS)
    out: list[SongRow] = []
    with gzip.open(path, "rb") as raw, io.TextIOWrapper(raw, encoding="utf-8", newline="") as f:
        for r in csv.DictReader(f):
            for k in _NA_FIELDS:
                if r[k] == "NA":
                    r[k] = ""
            out.append(
                SongRow(
                    track_id=r["track_id"].strip(),
                    name=strip_private_use(r["track_name"]).strip(),
                    artist=strip_private_use(r["track_artist"]).strip(),
                    popularity=int(float(r["track_popularity"] or 0)),
                    album_id=r["track_album_id"].strip(),
                    album=strip_private_use(r["track_album_name"]).strip(),
                    release_date=r["track_album_release_date"].strip(),
                    playlist_id=r["playlist_id"].strip(),
                    playlist_name=strip_private_use(r["playlist_name"]).strip(),
                    genre=r["playlist_genre"].strip(),
                    subgenre=r["playlist_subgenre"].strip(),
                )
            )
    return out


@dataclass(frozen=True)
class PodcastRow:
    """One podcast show as one source lists it.

    ``chart_rank`` is the 1-based position within its chart genre (0: not charted).
    """

    show_id: str
    name: str
    description: str
    publisher: str
    episodes: int
    categories: tuple[str, ...]
    chart_rank: int
    languages: str
    explicit: str
    source: str


def _csv_rows(path: Path) -> Iterator[dict[str, str]]:
    with _require(path).open(encoding="utf-8", newline="") as f:
        yield from csv.DictReader(f)


def _int(text: str) -> int:
    try:
        return int(float(text))
    except ValueError:
        return 0


def read_podcasts(data_dir: Path) -> list[PodcastRow]:
    """Read both podcast files (charts first); rows are not yet deduplicated.

    The charts file lists 50 shows per genre in chart order, so the row's
    position within its genre is its chart rank.
    """
    out: list[PodcastRow] = []
    rank_in_genre: dict[str, int] = {}
    for r in _csv_rows(Path(data_dir) / PODCAST_CHARTS):
        genre = r["genre"].strip()
        rank_in_genre[genre] = rank_in_genre.get(genre, 0) + 1
        langs = r["podcast_languages"].strip("[] ").replace("'", "").replace(" ", "")
        out.append(
            PodcastRow(
                show_id=r["podcast_id"].strip(),
                name=strip_private_use(r["podcast_name"]).strip(),
                description=strip_private_use(r["podcast_description"]).strip(),
                publisher=strip_private_use(r["podcast_publisher"]).strip(),
                episodes=_int(r["podcast_total_episodes"]),
                categories=(genre,) if genre else (),
                chart_rank=rank_in_genre[genre],
                languages=langs,
                explicit=r["podcast_explicit"].strip().lower(),
                source="podcast-charts",
            )
        )
    for r in _csv_rows(Path(data_dir) / PODCAST_CATEGORIES):
        cats = tuple(c for c in (r["Parent_Category"].strip(), r["Category"].strip()) if c and c.lower() != "other")
        out.append(
            PodcastRow(
                show_id=r["ID"].strip(),
                name=strip_private_use(r["Podcast_Name"]).strip(),
                description=strip_private_use(r["Description"]).strip(),
                publisher=strip_private_use(r["Publisher"]).strip(),
                episodes=_int(r["Episode_Count"]),
                categories=cats,
                chart_rank=0,
                languages="",
                explicit="",
                source="podcast-categories",
            )
        )
    return out
