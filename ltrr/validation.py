"""Validation of public requests. Every rule names the field it checks.

These functions are the only place request input is checked; the strategies
and the math below them trust their inputs.

**Characters.** Three rules hold for every string field of every request:

1. **NUL** (``"\\x00"``) is refused outright (``INVALID_ARGUMENT``, "must not contain NUL (\\x00)"):
   it is never text, and C-string backends would cut the value at it.
2. **Free text that is searched** (``SearchRequest.query``, ``context`` values) has every other
   control character (Unicode category ``Cc``: U+0001-U+001F, U+007F-U+009F; tab and newline
   included) replaced by a space, then whitespace runs collapsed to one space and the ends trimmed:
   ``"sad\\tsongs\\n"`` is the query ``"sad songs"``.
3. **Identifiers and keys** (``user_id``, ``context`` keys, the feedback ids, ``entity_id``, ``attrs``
   keys) refuse every control character: an id is compared as sent, so rewriting one would
   silently make two ids one. Ids are only trimmed of surrounding whitespace, as before.

Entity text (title, subtitle, description, genres, tags, ``attrs`` values) is stored as sent, NUL
refused, within the bounds of :mod:`ltrr.constants` (``MAX_ENTITY_*``). A query must also keep a
word once normalised the way the query memory and query understanding normalise it
(:func:`ltrr.query_understanding.normalize_text`): ``"!!!"`` or ``"\\u200b"`` is refused, since nothing
could be retrieved or learned for it. An error message quotes at most 64 characters of the value
it refuses (:func:`_show`).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Container, Iterable, Mapping, Sequence

from ltrr import constants as C
from ltrr.catalog.normalize import normalize_tag
from ltrr.errors import InvalidRequest
from ltrr.query_understanding import normalize_text
from ltrr.types import ENTITY_TYPES, Entity, UserProfile

FEEDBACK_ACTIONS: tuple[str, ...] = ("click", "play", "favorite", "skip")
#: The actions that say the user found what they wanted (the default of the event log and the policy).
POSITIVE_ACTIONS: tuple[str, ...] = ("click", "play", "favorite")
MAX_ID_CHARS = 128
NUL_RULE = "must not contain NUL (\\x00)"
#: Control characters (Unicode ``Cc``) other than NUL, which is refused before this is used.
_CONTROLS = re.compile("[\x01-\x1f\x7f-\x9f]")
#: An error message quotes at most this many characters of the value it refuses.
SHOWN_CHARS = 64


def _show(value: object) -> str:
    """``repr(value)``, of at most :data:`SHOWN_CHARS` characters of a string (then its length).

    A message quoting a whole megabyte of input would exceed gRPC's 16 KiB limit on a status
    message, and the client would get ``RESOURCE_EXHAUSTED`` instead of ``INVALID_ARGUMENT``.
    """
    if isinstance(value, str) and len(value) > SHOWN_CHARS:
        return f"{value[:SHOWN_CHARS]!r}... ({len(value)} characters)"
    return repr(value)


def _clean_text(field: str, value: str, what: str = "") -> str:
    """Free text as it is searched (rule 2 of the module docstring); NUL refused (``what`` starts the message)."""
    if "\x00" in value:
        raise InvalidRequest(field, f"{what}{NUL_RULE}")
    return " ".join(_CONTROLS.sub(" ", value).split())


def _plain(field: str, value: str, what: str = "") -> None:
    """An identifier or key: NUL and every other control character refused (rule 3)."""
    if "\x00" in value:
        raise InvalidRequest(field, f"{what}{NUL_RULE}")
    if _CONTROLS.search(value):
        raise InvalidRequest(field, f"{what}must not contain control characters, got {_show(value)}")


def _bounded(field: str, value: str, limit: int) -> None:
    """Stored text: NUL refused, at most ``limit`` characters."""
    if "\x00" in value:
        raise InvalidRequest(field, NUL_RULE)
    if len(value) > limit:
        raise InvalidRequest(field, f"must be at most {limit} characters, got {len(value)}")


@dataclass(frozen=True)
class SearchParams:
    """A validated ``SearchRequest``."""

    query: str
    user_id: str
    k: int
    entity_types: tuple[str, ...]
    context: Mapping[str, str]
    strategies: tuple[str, ...]
    explain: bool
    budgets: Mapping[str, int] = field(default_factory=dict)


def _dedupe(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(values))


def validate_search(
    *,
    query: str,
    user_id: str = "",
    k: int = 0,
    entity_types: Iterable[str] = (),
    context: Mapping[str, str] | None = None,
    strategies: Iterable[str] = (),
    explain: bool = False,
    known_strategies: Iterable[str] = (),
    budgets: Mapping[str, int] | None = None,
    ladder: Sequence[int] = (),
) -> SearchParams:
    """Check a search request; raise :class:`InvalidRequest` naming the field.

    ``query``: NUL refused; every other control character becomes a space, whitespace runs collapse
    to one space, the ends are trimmed (the module docstring's rules); then it must be 1-256
    characters (:data:`~ltrr.constants.MAX_QUERY_CHARS`) and keep a word (a letter, digit, ``&`` or
    ``+``) under :func:`~ltrr.query_understanding.normalize_text`, so ``"!!!"`` is refused.
    ``user_id``: trimmed, no control characters, at most 128 characters. ``context``: at most 32
    entries; keys 1-64 characters without control characters; values cleaned like the query, then at
    most 256 characters. ``k``, ``entity_types``, ``strategies`` and ``budgets`` as their messages say.
    """
    text = _clean_text("query", query or "")
    if not text:
        raise InvalidRequest("query", "must not be empty")
    if len(text) > C.MAX_QUERY_CHARS:
        raise InvalidRequest("query", f"must be at most {C.MAX_QUERY_CHARS} characters, got {len(text)}")
    if not normalize_text(text):
        raise InvalidRequest("query", f"must contain a word (a letter, digit, '&' or '+'), got {_show(text)}")
    user_id = (user_id or "").strip()
    _plain("user_id", user_id)
    if len(user_id) > C.MAX_USER_ID_CHARS:
        raise InvalidRequest("user_id", f"must be at most {C.MAX_USER_ID_CHARS} characters, got {len(user_id)}")
    k = int(k or 0)
    if k == 0:
        k = C.DEFAULT_K
    if not 1 <= k <= C.MAX_K:
        raise InvalidRequest("k", f"must be in [1, {C.MAX_K}] (0 means {C.DEFAULT_K}), got {k}")
    types = _dedupe(t.strip().lower() for t in entity_types)
    for t in types:
        if t not in ENTITY_TYPES:
            raise InvalidRequest("entity_types", f"unknown entity type {_show(t)}; valid: {', '.join(ENTITY_TYPES)}")
    raw = dict(context or {})
    if len(raw) > C.MAX_CONTEXT_ENTRIES:
        raise InvalidRequest("context", f"must have at most {C.MAX_CONTEXT_ENTRIES} entries, got {len(raw)}")
    ctx: dict[str, str] = {}
    for key, value in raw.items():
        if not key or len(key) > C.MAX_CONTEXT_KEY_CHARS:
            raise InvalidRequest("context", f"keys must be 1-{C.MAX_CONTEXT_KEY_CHARS} characters, got {len(key)}")
        _plain("context", key, "keys ")
        value = _clean_text("context", value, f"value of {key!r} ")
        if len(value) > C.MAX_CONTEXT_VALUE_CHARS:
            raise InvalidRequest(
                "context", f"value of {key!r} must be at most {C.MAX_CONTEXT_VALUE_CHARS} characters, got {len(value)}"
            )
        ctx[key] = value
    known = tuple(known_strategies)
    forced = _dedupe(s.strip().lower() for s in strategies)
    for s in forced:
        if s not in known:
            raise InvalidRequest("strategies", f"unknown strategy {_show(s)}; valid: {', '.join(known)}")
    plan = _budgets(budgets or {}, known, tuple(ladder))
    return SearchParams(text, user_id, k, types, ctx, forced, bool(explain), plan)


def _budgets(budgets: Mapping[str, int], known: tuple[str, ...], ladder: tuple[int, ...]) -> dict[str, int]:
    """A forced per-strategy plan: known names, every k on ``ladder`` (when given), at least one called."""
    if not budgets:
        return {}
    plan: dict[str, int] = {}
    for name, k in budgets.items():
        s = name.strip().lower()
        if s not in known:
            raise InvalidRequest("budgets", f"unknown strategy {_show(name)}; valid: {', '.join(known)}")
        k = int(k)
        if ladder and k not in ladder:
            raise InvalidRequest(f"budgets[{s}]", f"must be on the budget ladder {list(ladder)}, got {k}")
        if not 0 <= k <= C.MAX_STRATEGY_K:
            raise InvalidRequest(f"budgets[{s}]", f"must be in [0, {C.MAX_STRATEGY_K}], got {k}")
        plan[s] = k
    if not any(plan.values()):
        raise InvalidRequest("budgets", "must give at least one strategy a budget above 0")
    return {s: plan.get(s, 0) for s in known}


@dataclass(frozen=True)
class FeedbackParams:
    """A validated ``FeedbackRequest``."""

    request_id: str
    event_id: str
    entity_id: str
    action: str
    position: int


def _required_id(field: str, value: str) -> str:
    value = (value or "").strip()
    if not value:
        raise InvalidRequest(field, "is required")
    _plain(field, value)
    if len(value) > MAX_ID_CHARS:
        raise InvalidRequest(field, f"must be at most {MAX_ID_CHARS} characters, got {len(value)}")
    return value


def validate_feedback(
    *, request_id: str, event_id: str, entity_id: str, action: str, position: int = 0
) -> FeedbackParams:
    """Check a feedback request; raise :class:`InvalidRequest` naming the field.

    The three ids are required, trimmed, without control characters, at most 128 characters.
    """
    rid = _required_id("request_id", request_id)
    eid = _required_id("event_id", event_id)
    ent = _required_id("entity_id", entity_id)
    act = (action or "").strip().lower()
    if act not in FEEDBACK_ACTIONS:
        raise InvalidRequest("action", f"unknown action {_show(action)}; valid: {', '.join(FEEDBACK_ACTIONS)}")
    position = int(position)
    if not 0 <= position <= C.MAX_K:
        raise InvalidRequest("position", f"must be in [0, {C.MAX_K}], got {position}")
    return FeedbackParams(rid, eid, ent, act, position)


def validate_entity(
    *,
    entity_id: str,
    entity_type: str,
    title: str,
    popularity: float = 0.0,
    index: int = 0,
    subtitle: str = "",
    description: str = "",
    genres: Sequence[object] = (),
    tags: Sequence[object] = (),
    attrs: Mapping[object, object] | None = None,
) -> None:
    """Check one streamed entity of ``UpsertEntities`` (``index`` is its 0-based position).

    Errors name the field as ``entities[<index>].<field>``. ``entity_id``: required, no control
    characters, at most 128 characters, starting ``"<entity_type>:"``. ``entity_type``: one of
    :data:`~ltrr.types.ENTITY_TYPES`. NUL is refused in every text field, and each is bounded
    (:mod:`ltrr.constants`): ``title`` required and at most 512 characters, ``subtitle`` at most 512,
    ``description`` at most 8192; ``genres`` and ``tags`` at most 64 strings each, every one at most
    128 characters (``entities[3].tags[5]``); ``attrs`` at most 64 entries, keys 1-64 characters
    without control characters, values strings of at most 1024. ``popularity`` in [0, 100] (NaN is
    not).
    """
    where = f"entities[{index}]"
    if not (entity_id or "").strip():
        raise InvalidRequest(f"{where}.entity_id", "is required")
    _plain(f"{where}.entity_id", entity_id)
    if len(entity_id) > MAX_ID_CHARS:
        raise InvalidRequest(f"{where}.entity_id", f"must be at most {MAX_ID_CHARS} characters, got {len(entity_id)}")
    if entity_type not in ENTITY_TYPES:
        raise InvalidRequest(
            f"{where}.entity_type", f"unknown entity type {_show(entity_type)}; valid: {', '.join(ENTITY_TYPES)}"
        )
    if not entity_id.startswith(f"{entity_type}:"):
        raise InvalidRequest(f"{where}.entity_id", f"must start with '{entity_type}:', got {entity_id!r}")
    if not (title or "").strip():
        raise InvalidRequest(f"{where}.title", "is required")
    _bounded(f"{where}.title", title, C.MAX_ENTITY_TITLE_CHARS)
    _bounded(f"{where}.subtitle", subtitle, C.MAX_ENTITY_SUBTITLE_CHARS)
    _bounded(f"{where}.description", description, C.MAX_ENTITY_DESCRIPTION_CHARS)
    for name, labels in (("genres", genres), ("tags", tags)):
        if len(labels) > C.MAX_ENTITY_LABELS:
            n = len(labels)
            raise InvalidRequest(f"{where}.{name}", f"must have at most {C.MAX_ENTITY_LABELS} entries, got {n}")
        for j, label in enumerate(labels):
            if not isinstance(label, str):
                raise InvalidRequest(f"{where}.{name}[{j}]", f"must be a string, got {type(label).__name__}")
            _bounded(f"{where}.{name}[{j}]", label, C.MAX_ENTITY_LABEL_CHARS)
    attrs = attrs or {}
    if len(attrs) > C.MAX_ENTITY_ATTRS:
        raise InvalidRequest(f"{where}.attrs", f"must have at most {C.MAX_ENTITY_ATTRS} entries, got {len(attrs)}")
    for key, value in attrs.items():
        if not isinstance(key, str) or not key or len(key) > C.MAX_ENTITY_ATTR_KEY_CHARS:
            got = len(key) if isinstance(key, str) else type(key).__name__
            raise InvalidRequest(
                f"{where}.attrs", f"keys must be 1-{C.MAX_ENTITY_ATTR_KEY_CHARS} characters, got {got}"
            )
        _plain(f"{where}.attrs", key, "keys ")
        if not isinstance(value, str):
            raise InvalidRequest(f"{where}.attrs", f"value of {key!r} must be a string, got {type(value).__name__}")
        if "\x00" in value:
            raise InvalidRequest(f"{where}.attrs", f"value of {key!r} {NUL_RULE}")
        if len(value) > C.MAX_ENTITY_ATTR_VALUE_CHARS:
            raise InvalidRequest(
                f"{where}.attrs",
                f"value of {key!r} must be at most {C.MAX_ENTITY_ATTR_VALUE_CHARS} characters, got {len(value)}",
            )
    if not 0.0 <= popularity <= 100.0:
        raise InvalidRequest(f"{where}.popularity", f"must be in [0, 100], got {popularity}")


def _labels(value: object) -> tuple[object, ...]:
    """A wire list of labels as a tuple (a lone string is one label, as :class:`Entity` reads it)."""
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    return tuple(value) if isinstance(value, Iterable) else (value,)


def entity_from_fields(index: int, **fields: object) -> Entity:
    """Validate (:func:`validate_entity`) and build an :class:`Entity` from wire fields."""
    attrs = fields.get("attrs")
    validate_entity(
        entity_id=str(fields.get("entity_id", "")),
        entity_type=str(fields.get("entity_type", "")),
        title=str(fields.get("title", "")),
        subtitle=str(fields.get("subtitle", "") or ""),
        description=str(fields.get("description", "") or ""),
        genres=_labels(fields.get("genres")),
        tags=_labels(fields.get("tags")),
        attrs=dict(attrs) if isinstance(attrs, Mapping) else None,
        popularity=float(fields.get("popularity", 0.0) or 0.0),  # type: ignore[arg-type]
        index=index,
    )
    return Entity.from_dict(fields)


#: The most artists and tags one profile holds (``UpsertUsers``, ``ltrr users import`` and learned profiles).
MAX_PROFILE_ARTISTS = 50
MAX_PROFILE_TAGS = 20
#: The artist entity-id prefix every ``top_artists`` name must carry.
ARTIST_PREFIX = "artist:"


def _weighted_names(
    where: str, pairs: object, *, limit: int, tag: bool, known: Container[str] | None
) -> tuple[tuple[str, float], ...]:
    """Check ``(name, weight)`` pairs; merge duplicates (summing weights); normalise the weights to sum 1.

    Sorted by weight descending, then name. Tag labels are :func:`normalize_tag`-ed (so ``"Hip-Hop"`` and
    ``"hip hop"`` are one label); artist names are entity ids, kept as sent (trimmed).
    """
    items = list(pairs) if isinstance(pairs, Iterable) and not isinstance(pairs, (str, bytes, Mapping)) else None
    if items is None:
        raise InvalidRequest(where, f"must be a list of (name, weight) pairs, got {type(pairs).__name__}")
    if len(items) > limit:
        raise InvalidRequest(where, f"must have at most {limit} entries, got {len(items)}")
    merged: dict[str, float] = {}
    for i, item in enumerate(items):
        at = f"{where}[{i}]"
        if isinstance(item, (str, bytes)) or not isinstance(item, Sequence) or len(item) != 2:
            raise InvalidRequest(at, "must be a (name, weight) pair")
        name, weight = item
        if not isinstance(name, str):
            raise InvalidRequest(f"{at}.name", f"must be a string, got {type(name).__name__}")
        name = normalize_tag(name) if tag else name.strip()
        if not name:
            raise InvalidRequest(f"{at}.name", "is required")
        if len(name) > MAX_ID_CHARS:
            raise InvalidRequest(f"{at}.name", f"must be at most {MAX_ID_CHARS} characters, got {len(name)}")
        if not tag and not name.startswith(ARTIST_PREFIX):
            raise InvalidRequest(f"{at}.name", f"must be an artist entity id ({ARTIST_PREFIX}...), got {name!r}")
        if not tag and known is not None and name not in known:
            raise InvalidRequest(f"{at}.name", f"unknown artist {name!r}: not in the catalog")
        real = isinstance(weight, (int, float)) and not isinstance(weight, bool)
        if not real or not math.isfinite(weight) or weight <= 0:
            raise InvalidRequest(f"{at}.weight", f"must be a finite number > 0, got {weight!r}")
        merged[name] = merged.get(name, 0.0) + float(weight)
    total = sum(merged.values())
    if abs(total - 1.0) <= 1e-9:  # already normalised: kept, so re-importing a profile changes nothing
        total = 1.0
    ranked = sorted(merged.items(), key=lambda kv: (-kv[1], kv[0]))
    return tuple((name, w / total) for name, w in ranked)


def user_from_fields(
    index: int,
    *,
    user_id: object,
    top_artists: object = (),
    top_tags: object = (),
    known_artists: Container[str] | None = None,
) -> UserProfile:
    """Validate one profile of ``UpsertUsers`` / ``ltrr users import`` (``index``: its 0-based position).

    ``user_id``: required, no control characters, at most :data:`~ltrr.constants.MAX_USER_ID_CHARS`
    characters (trimmed, as ``SearchRequest.user_id`` is). ``top_artists`` / ``top_tags``: ``(name, weight)``
    pairs, at most :data:`MAX_PROFILE_ARTISTS` / :data:`MAX_PROFILE_TAGS`, names 1-128 characters, weights
    finite and > 0.
    Artist names are entity ids (``"artist:..."``) and, when ``known_artists`` is given, must be in it (the
    catalog). Duplicates are merged by summing their weights, and each list's weights are normalised to
    sum 1: :math:`w_i / \\sum_j w_j` (kept as sent when they already sum to 1 within 1e-9). Errors
    name the field, e.g. ``users[3].top_artists[0].weight``.
    """
    where = f"users[{index}]"
    if not isinstance(user_id, str):
        raise InvalidRequest(f"{where}.user_id", f"must be a string, got {type(user_id).__name__}")
    uid = user_id.strip()
    if not uid:
        raise InvalidRequest(f"{where}.user_id", "is required")
    _plain(f"{where}.user_id", uid)
    if len(uid) > C.MAX_USER_ID_CHARS:
        raise InvalidRequest(f"{where}.user_id", f"must be at most {C.MAX_USER_ID_CHARS} characters, got {len(uid)}")
    artists = _weighted_names(
        f"{where}.top_artists", top_artists, limit=MAX_PROFILE_ARTISTS, tag=False, known=known_artists
    )
    tags = _weighted_names(f"{where}.top_tags", top_tags, limit=MAX_PROFILE_TAGS, tag=True, known=None)
    return UserProfile(uid, artists, tags)
