"""Typed records shared by every component.

All records are frozen dataclasses that round-trip through ``to_dict`` /
``from_dict`` (plain JSON-able dicts), so they cross process boundaries
(Ray, SQLite, gRPC) without pickling surprises.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Mapping

ENTITY_TYPES: tuple[str, ...] = ("artist", "track", "playlist", "podcast")


def _tuple(values: Any) -> tuple[str, ...]:
    if values is None:
        return ()
    if isinstance(values, str):
        return (values,)
    return tuple(str(v) for v in values)


@dataclass(frozen=True)
class Entity:
    """One catalog entity: an artist, track, playlist or podcast.

    ``entity_id`` is stable across rebuilds (``"<type>:<source key>"``).
    ``popularity`` is normalised to [0, 100]. ``attrs`` holds small extra
    facts (album, release year, publisher, ...) as strings.
    """

    entity_id: str
    entity_type: str
    title: str
    subtitle: str = ""
    genres: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    description: str = ""
    popularity: float = 0.0
    sources: tuple[str, ...] = ()
    attrs: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "genres", _tuple(self.genres))
        object.__setattr__(self, "tags", _tuple(self.tags))
        object.__setattr__(self, "sources", _tuple(self.sources))
        object.__setattr__(self, "attrs", dict(self.attrs or {}))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["genres"] = list(self.genres)
        d["tags"] = list(self.tags)
        d["sources"] = list(self.sources)
        d["attrs"] = dict(self.attrs)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Entity:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def content_hash(self) -> str:
        """A hash of every field: an upsert with the same hash is a no-op."""
        blob = json.dumps(self.to_dict(), sort_keys=True, ensure_ascii=False)
        return hashlib.sha1(blob.encode("utf-8")).hexdigest()

    def text(self) -> str:
        """The text that describes this entity, for embedding and query generation."""
        parts = [self.title]
        if self.subtitle:
            parts.append(self.subtitle)
        parts.append(self.entity_type)
        if self.genres:
            parts.append(", ".join(self.genres))
        if self.tags:
            parts.append(", ".join(self.tags[:8]))
        if self.description:
            parts.append(self.description[:300])
        return ". ".join(parts)


@dataclass(frozen=True)
class Relation:
    """A weighted, typed edge between two catalog nodes.

    ``src``/``dst`` are entity ids or tag node ids (``"tag:<name>"``).
    ``kind`` is one of ``similar`` (artist-artist co-listening), ``tagged``
    (entity-tag), ``performs`` (artist-track), ``contains`` (playlist-track).
    """

    src: str
    dst: str
    kind: str
    weight: float = 1.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Relation:
        return cls(**d)


@dataclass(frozen=True)
class UserProfile:
    """A listening-history summary of one user: top artists and tags with weights."""

    user_id: str
    top_artists: tuple[tuple[str, float], ...] = ()
    top_tags: tuple[tuple[str, float], ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "top_artists", tuple((str(a), float(w)) for a, w in self.top_artists))
        object.__setattr__(self, "top_tags", tuple((str(t), float(w)) for t, w in self.top_tags))

    def to_dict(self) -> dict[str, Any]:
        return {
            "user_id": self.user_id,
            "top_artists": [list(x) for x in self.top_artists],
            "top_tags": [list(x) for x in self.top_tags],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> UserProfile:
        return cls(
            user_id=d["user_id"],
            top_artists=tuple(tuple(x) for x in d.get("top_artists", ())),  # type: ignore[misc]
            top_tags=tuple(tuple(x) for x in d.get("top_tags", ())),  # type: ignore[misc]
        )


@dataclass(frozen=True)
class ParsedQuery:
    """What query understanding found in the raw text.

    ``text`` is the normalised query; ``residual`` is the text left once the
    recognised slot words are removed (what the lexical engine should match).
    ``types``/``genres``/``tags`` are structured filters, each with a confidence
    in [0, 1] in ``confidence``. ``seed`` is the entity phrase of a
    "like X" / "similar to X" query, ``""`` if none. ``personal`` is True for
    context-driven queries ("for me", "my mix") that should use the user's history.
    """

    text: str
    residual: str
    types: tuple[str, ...] = ()
    genres: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    seed: str = ""
    personal: bool = False
    confidence: Mapping[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("types", "genres", "tags"):
            d[k] = list(d[k])
        d["confidence"] = dict(self.confidence)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ParsedQuery:
        return cls(
            text=d["text"],
            residual=d["residual"],
            types=tuple(d.get("types", ())),
            genres=tuple(d.get("genres", ())),
            tags=tuple(d.get("tags", ())),
            seed=d.get("seed", ""),
            personal=bool(d.get("personal", False)),
            confidence=dict(d.get("confidence", {})),
        )


@dataclass(frozen=True)
class Query:
    """A validated search request as the strategies see it.

    ``entity_types`` restricts results (empty: all types). ``parsed`` is the
    query-understanding output, computed once by the ingress.
    """

    text: str
    parsed: ParsedQuery
    user_id: str = ""
    entity_types: tuple[str, ...] = ()
    context: Mapping[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "parsed": self.parsed.to_dict(),
            "user_id": self.user_id,
            "entity_types": list(self.entity_types),
            "context": dict(self.context),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Query:
        return cls(
            text=d["text"],
            parsed=ParsedQuery.from_dict(d["parsed"]),
            user_id=d.get("user_id", ""),
            entity_types=tuple(d.get("entity_types", ())),
            context=dict(d.get("context", {})),
        )


@dataclass(frozen=True)
class Candidate:
    """One retrieved entity, as one strategy ranked it (``rank`` is 1-based)."""

    entity_id: str
    entity_type: str
    title: str
    subtitle: str
    score: float
    rank: int

    def to_dict(self) -> dict[str, Any]:
        # Hand-written: on the hot path (every candidate of every call), and asdict's deep copy
        # cost ~4 ms per search of four 50-candidate calls.
        return {
            "entity_id": self.entity_id, "entity_type": self.entity_type, "title": self.title,
            "subtitle": self.subtitle, "score": self.score, "rank": self.rank,
        }  # fmt: skip

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Candidate:
        return cls(**d)
