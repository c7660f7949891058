"""Query understanding: turn raw query text into a :class:`~ltrr.types.ParsedQuery`.

Pure Python, no server, well under 1 ms per query. Steps:

1. **Normalise** (:func:`normalize_text`): NFKC, casefold, every character that
   is not a letter, digit, ``&``, ``'`` or ``+`` becomes a space (so
   ``hip-hop`` -> ``hip hop``, ``AC/DC`` -> ``ac dc``), quotes at token edges are
   dropped, whitespace collapsed. ``ParsedQuery.text`` is this string.
2. **Phrase matching**: at each token, the longest phrase (<= 5 tokens) found in
   any lexicon wins: personal phrases, entity-type words, genres, tags.
   A phrase in both the genre and the tag vocabulary yields both.
   Alias groups (``r&b``/``rnb``/``r and b``, ``hip hop``/``hiphop``, ...) find the
   vocabulary's own spellings of the same thing; every surface form of a normalised key is
   returned (``hip-hop`` and ``hip hop``), most used first, so filters match the catalog exactly.
3. **Type words count only at an edge**: a type word (``songs``, ``artists``,
   ``playlist``, ``mix``, ``podcasts``, ``shows`` ...) is a slot only if every token
   between it and the start, or between it and the end, is itself a slot or a
   modifier (``best``, ``top``, ``new``, ``my``, ...). So ``radiohead songs`` and
   ``songs about love`` are typed, ``the show must go on`` is not.
4. **Seed patterns** (first match wins; the seed runs to the end of the query,
   minus trailing type words, ``music`` and ``for me``):

   ============================================  ==========
   pattern                                       confidence
   ============================================  ==========
   ``... similar to X`` / ``sounds like X``        0.9
   ``... fans of X`` / ``in the style of X``       0.9
   ``<type word|music|stuff|more|genre> like X``   0.9
   ``like X`` at the very start                    0.6
   ``X radio`` (``radio`` is the last token)       0.6
   ============================================  ==========

   ``like`` elsewhere is a verb or part of a title (``smells like teen spirit``);
   ``like a/an/i/you/me/it/that/this/the way ...`` at the start is a title too.
5. **Personal**: ``for me`` (also ``made for me``, ``recommended for me``),
   ``recommend me``, and ``my`` followed by a type word or one of
   ``music, favorites, favourite(s), taste, style, vibe, jams``.
6. **Residual**: the tokens not consumed by a slot; then, next to a consumed
   span, dangling function words (``by, of, from, for, with, and, in, on, to,
   about, some, music`` ...) and modifiers (``best, top, good, new, popular``)
   are trimmed too. ``songs by radiohead`` -> ``radiohead``;
   ``the best of both worlds`` (no slot) stays whole. All consumed -> ``""``.

Confidences (``ParsedQuery.confidence`` keys ``type:<t>``, ``genre:<g>``,
``tag:<t>``, ``seed``, ``personal``): type words 0.9 (ambiguous ones such as
``mix``, ``show``, ``band`` 0.6); genres 0.9 (0.8 through an alias); tags
:math:`c(n) = \\min(0.9,\\ 0.5 + 0.1\\log_{10} n)` for a tag used by ``n``
entities (rounded to 3 decimals; through an alias :math:`0.9\\,c(n)`, rounded).

Vocabulary: :meth:`Vocabulary.from_entities` counts, per surface form, how many
entities carry each genre / tag. Tags need ``min_tag_count`` entities, are not
generic praise (``seen live``, ``favorites``, ``love`` ...) and, if equal to an
artist name (``madonna`` tags), need ``name_tag_min_count`` entities
(``electronic`` and ``ambient`` are artist names too, but used >= 100 times).
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterable, Mapping, Sequence

from ltrr.types import Entity, ParsedQuery

if TYPE_CHECKING:
    from ltrr.catalog.store import CatalogBase

_NON_TOKEN = re.compile(r"[^\w&'+]+")
_MAX_PHRASE = 5

#: type word -> (entity type, confidence)
TYPE_WORDS: dict[str, tuple[str, float]] = {
    **{w: ("track", 0.9) for w in ("songs", "song", "tracks", "track", "tunes", "singles")},
    **{w: ("artist", 0.9) for w in ("artists", "artist", "bands", "singers", "singer", "musicians", "rappers", "djs")},
    **{w: ("artist", 0.6) for w in ("band", "groups")},
    **{w: ("playlist", 0.9) for w in ("playlists", "playlist")},
    **{w: ("playlist", 0.6) for w in ("mix", "mixes", "mixtape")},
    **{w: ("podcast", 0.9) for w in ("podcasts", "podcast")},
    **{w: ("podcast", 0.6) for w in ("shows", "show", "episodes", "episode")},
}
#: Phrases that mark a personal query; consumed.
PERSONAL_PHRASES: frozenset[str] = frozenset(
    {"for me", "made for me", "recommended for me", "picked for me", "just for me", "recommend me"}
)
_MY_NOUNS = frozenset({"music", "favorites", "favourites", "favorite", "favourite", "taste", "style", "vibe", "jams"})
#: Words that may sit between a type word and the query edge, and that are trimmed next to a slot.
MODIFIERS: frozenset[str] = frozenset(
    {"best", "top", "good", "great", "new", "latest", "popular", "some", "my", "music"}
)
#: Function words trimmed from the residual when they touch a consumed span.
DANGLING: frozenset[str] = frozenset(
    {"by", "of", "from", "for", "with", "and", "&", "in", "on", "to", "about", "some", "music", "a", "an", "me",
     "like", "that", "are", "is"}
)  # fmt: skip
_TRIM = DANGLING | (MODIFIERS - {"my"}) | {"something", "stuff", "anything", "more", "others"}
#: Generic tags that say nothing about the music (never slots).
TAG_STOPLIST: frozenset[str] = frozenset(
    {"seen live", "favorites", "favourites", "favorite", "favourite", "favorite songs", "favourite songs",
     "awesome", "amazing", "beautiful", "cool", "love", "loved", "<3", "sexy", "fun", "good", "best", "great",
     "love at first listen", "music", "other", "misc", "all", "my", "me", "the", "a", "i", "you", "it", "top",
     "new", "like", "song", "songs", "artist", "artists", "radio", "check out", "spotify", "albums i own"}
)  # fmt: skip
#: alias -> spelling used by the catalog (normalised keys on both sides).
ALIASES: dict[str, str] = {
    "rnb": "r&b", "r and b": "r&b", "r n b": "r&b", "r & b": "r&b", "rhythm and blues": "r&b",
    "hiphop": "hip hop", "electronic dance music": "edm", "latino": "latin", "rock n roll": "rock and roll",
    "rock 'n' roll": "rock and roll", "rock'n'roll": "rock and roll", "80's": "80s", "90's": "90s", "70's": "70s",
}  # fmt: skip
_SEED_CUES: tuple[tuple[str, ...], ...] = (
    ("in", "the", "style", "of"), ("for", "fans", "of"), ("similar", "to"), ("sounds", "like"),
    ("sound", "like"), ("fans", "of"),
)  # fmt: skip
_LIKE_LEAD = frozenset({"music", "stuff", "something", "anything", "more", "others", "other", "similar"})
_LIKE_NOT_SEED = frozenset({"a", "an", "i", "you", "me", "it", "that", "this", "we", "they", "he", "she", "to",
                            "u", "my", "the way", "nothing", "no"})  # fmt: skip


def _build_groups(aliases: Mapping[str, str]) -> dict[str, tuple[str, ...]]:
    """canonical -> (canonical, alias, alias, ...)."""
    groups: dict[str, tuple[str, ...]] = {}
    for alias, canon in aliases.items():
        groups[canon] = tuple(dict.fromkeys((*groups.get(canon, (canon,)), alias)))
    return groups


_GROUPS = _build_groups(ALIASES)


def _alias_group(key: str) -> tuple[str, ...]:
    """``key`` first, then every other spelling of the same thing (``rnb`` -> ``rnb, r&b, r and b, ...``)."""
    group = _GROUPS.get(ALIASES.get(key, key))
    if group is None:
        return (key,)
    return (key, *(k for k in group if k != key))


def normalize_text(text: str) -> str:
    """NFKC + casefold; non-token characters -> space; edge quotes dropped; spaces collapsed."""
    t = unicodedata.normalize("NFKC", text).casefold()
    toks = (tok.strip("'") for tok in _NON_TOKEN.sub(" ", t).split())
    return " ".join(tok for tok in toks if tok)


def fold_accents(text: str) -> str:
    """``beyoncé`` -> ``beyonce``: NFKD without combining marks."""
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))


def tag_confidence(n: int) -> float:
    """:math:`\\min(0.9, 0.5 + 0.1 \\log_{10} n)` rounded to 3 decimals (``n`` entities carry the tag)."""
    return round(min(0.9, 0.5 + 0.1 * math.log10(max(n, 1))), 3)


@dataclass(frozen=True)
class Vocabulary:
    """Genre and tag surface forms with the number of entities that carry each.

    ``names`` holds normalised artist names (also accent-folded); a tag equal to one needs more support.
    ``titles`` holds the normalised titles (also accent-folded) of every other entity: tracks,
    playlists, podcasts.
    """

    genres: Mapping[str, int] = field(default_factory=dict)
    tags: Mapping[str, int] = field(default_factory=dict)
    names: frozenset[str] = frozenset()
    titles: frozenset[str] = frozenset()

    @classmethod
    def from_entities(cls, entities: Iterable[Entity]) -> Vocabulary:
        return cls.from_rows((e.entity_type, e.title, e.genres, e.tags) for e in entities)

    @classmethod
    def from_rows(cls, rows: Iterable[tuple[str, str, Sequence[str], Sequence[str]]]) -> Vocabulary:
        """Count ``(entity_type, title, genres, tags)`` rows (one per entity)."""
        genres: Counter[str] = Counter()
        tags: Counter[str] = Counter()
        names: set[str] = set()
        titles: set[str] = set()
        for etype, title, gs, ts in rows:
            genres.update(set(gs))
            tags.update(set(ts))
            norm = normalize_text(title)
            (names if etype == "artist" else titles).update((norm, fold_accents(norm)))
        names.discard("")
        titles.discard("")
        return cls(genres=dict(genres), tags=dict(tags), names=frozenset(names), titles=frozenset(titles))

    def labels(self) -> frozenset[str]:
        """Every genre and tag, normalised, whatever its count (stop-listed ones too)."""
        return frozenset(k for k in map(normalize_text, (*self.genres, *self.tags)) if k)

    @classmethod
    def from_store(cls, store: CatalogBase) -> Vocabulary:
        """Count the catalog's genres/tags, from :meth:`~ltrr.catalog.store.CatalogBase.vocabulary_rows` (the
        fields read in the database on both backends: ~1 s for 60k entities from SQLite)."""
        return cls.from_rows(store.vocabulary_rows())


@dataclass(frozen=True)
class _Slot:
    kind: str  # "type" | "phrase" | "personal"
    start: int
    end: int  # exclusive
    types: tuple[tuple[str, float], ...] = ()
    genres: tuple[tuple[str, float], ...] = ()
    tags: tuple[tuple[str, float], ...] = ()


class QueryUnderstanding:
    """Parses queries against a genre/tag :class:`Vocabulary` (see the module docstring)."""

    def __init__(self, vocabulary: Vocabulary | None = None, *, min_tag_count: int = 10,
                 name_tag_min_count: int = 100) -> None:  # fmt: skip
        if min_tag_count < 1:
            raise ValueError(f"`min_tag_count` must be >= 1, got {min_tag_count}")
        vocab = vocabulary or Vocabulary()
        self._genres = self._index({g: n for g, n in vocab.genres.items() if normalize_text(g) not in TAG_STOPLIST})
        usable: dict[str, int] = {}
        for tag, n in vocab.tags.items():
            key = normalize_text(tag)
            if not key or key in TAG_STOPLIST or key in TYPE_WORDS or n < min_tag_count:
                continue
            if (key in vocab.names or fold_accents(key) in vocab.names) and n < name_tag_min_count:
                continue
            usable[tag] = n
        self._tags = self._index(usable)

    @staticmethod
    def _index(counts: Mapping[str, int]) -> dict[str, tuple[tuple[str, int], ...]]:
        """normalised key -> surface forms with counts, most used first (ties: alphabetical)."""
        by_key: dict[str, list[tuple[str, int]]] = {}
        for surface, n in counts.items():
            key = normalize_text(surface)
            if key and len(key.split()) <= _MAX_PHRASE:
                by_key.setdefault(key, []).append((surface, int(n)))
        return {k: tuple(sorted(v, key=lambda x: (-x[1], x[0]))) for k, v in by_key.items()}

    @classmethod
    def from_store(cls, store: CatalogBase, **kwargs: int) -> QueryUnderstanding:
        """Build the vocabulary from every entity in the catalog (:meth:`Vocabulary.from_store`)."""
        return cls(Vocabulary.from_store(store), **kwargs)

    # -- matching ---------------------------------------------------------
    def _phrase(self, key: str) -> _Slot | None:
        genres: list[tuple[str, float]] = []
        tags: list[tuple[str, float]] = []
        for k in _alias_group(key):
            exact = k == key
            for surface, _ in self._genres.get(k, ()):
                genres.append((surface, 0.9 if exact else 0.8))
            for surface, n in self._tags.get(k, ()):
                tags.append((surface, tag_confidence(n) if exact else round(tag_confidence(n) * 0.9, 3)))
        if not genres and not tags:
            return None
        return _Slot("phrase", 0, 0, genres=tuple(genres), tags=tuple(tags))

    def _match(self, toks: list[str], start: int, stop: int) -> list[_Slot]:
        """Greedy longest-phrase matching over ``toks[start:stop]``."""
        slots: list[_Slot] = []
        i = start
        while i < stop:
            found: _Slot | None = None
            for n in range(min(_MAX_PHRASE, stop - i), 0, -1):
                key = " ".join(toks[i : i + n])
                if key in PERSONAL_PHRASES:
                    found = _Slot("personal", i, i + n)
                elif n == 1 and key == "my" and i + 1 < stop and (toks[i + 1] in _MY_NOUNS | TYPE_WORDS.keys()):
                    span = 2 if toks[i + 1] in _MY_NOUNS else 1
                    found = _Slot("personal", i, i + span)
                elif n == 1 and key in TYPE_WORDS:
                    found = _Slot("type", i, i + 1, types=(TYPE_WORDS[key],))
                else:
                    p = self._phrase(key)
                    if p is not None:
                        found = _Slot("phrase", i, i + n, genres=p.genres, tags=p.tags)
                if found is not None:
                    break
            if found is None:
                i += 1
            else:
                slots.append(found)
                i = found.end
        return slots

    def _seed(self, toks: list[str], slots: list[_Slot]) -> tuple[range, range, float] | None:
        """``(cue span, seed span, confidence)`` of the first seed pattern, if any."""
        n = len(toks)
        slot_ends = {s.end - 1 for s in slots}
        for i in range(n):
            for cue in _SEED_CUES:
                if tuple(toks[i : i + len(cue)]) == cue and i + len(cue) < n:
                    return range(i, i + len(cue)), range(i + len(cue), n), 0.9
            if toks[i] == "like" and i + 1 < n:
                if i == 0:
                    if toks[1] not in _LIKE_NOT_SEED and " ".join(toks[1:3]) not in _LIKE_NOT_SEED:
                        return range(0, 1), range(1, n), 0.6
                elif toks[i - 1] in _LIKE_LEAD or toks[i - 1] in TYPE_WORDS or (i - 1) in slot_ends:
                    return range(i, i + 1), range(i + 1, n), 0.9
        if n >= 2 and toks[-1] == "radio":
            return range(n - 1, n), range(0, n - 1), 0.6
        return None

    def parse(self, text: str) -> ParsedQuery:
        """Parse ``text``; see the module docstring for the rules."""
        norm = normalize_text(text)
        toks = norm.split()
        n = len(toks)
        consumed = [False] * n
        conf: dict[str, float] = {}
        seed = ""
        slots = self._match(toks, 0, n)
        found = self._seed(toks, slots)
        if found is not None:
            cue, span, c = found
            lo, hi = span.start, span.stop
            # trailing type words / "for me" / "music" belong to the query, not to the seed
            while hi > lo:
                tail = [s for s in self._match(toks, lo, hi) if s.end == hi and s.kind in ("type", "personal")]
                if tail:
                    hi = tail[0].start
                elif toks[hi - 1] == "music":
                    hi -= 1
                else:
                    break
            if hi > lo:
                seed = " ".join(toks[lo:hi])
                conf["seed"] = c
                for j in list(cue) + list(range(lo, hi)):
                    consumed[j] = True
                slots = [s for a, b in _runs(consumed) for s in self._match(toks, a, b)]
        types: list[str] = []
        genres: list[str] = []
        tags: list[str] = []
        personal = False
        skippable = [consumed[j] or toks[j] in MODIFIERS or toks[j] in TYPE_WORDS for j in range(n)]
        for s in slots:
            if s.kind != "type":
                for j in range(s.start, s.end):
                    skippable[j] = True
        for s in slots:
            if s.kind == "type" and not (all(skippable[: s.start]) or all(skippable[s.end :])):
                continue  # a type word inside a title ("the show must go on")
            for j in range(s.start, s.end):
                consumed[j] = True
            if s.kind == "personal":
                personal = True
                conf["personal"] = 0.9
            for t, c in s.types:
                _add(types, conf, "type", t, c)
            for g, c in s.genres:
                _add(genres, conf, "genre", g, c)
            for t, c in s.tags:
                _add(tags, conf, "tag", t, c)
        return ParsedQuery(
            text=norm, residual=_trim(toks, consumed), types=tuple(types), genres=tuple(genres), tags=tuple(tags),
            seed=seed, personal=personal, confidence=conf,
        )  # fmt: skip


def _runs(consumed: list[bool]) -> list[tuple[int, int]]:
    """Maximal ``[start, end)`` runs of unconsumed tokens."""
    out: list[tuple[int, int]] = []
    start = None
    for j, c in enumerate(consumed + [True]):
        if not c and start is None:
            start = j
        elif c and start is not None:
            out.append((start, j))
            start = None
    return out


def _add(values: list[str], conf: dict[str, float], kind: str, value: str, c: float) -> None:
    if value not in values:
        values.append(value)
    key = f"{kind}:{value}"
    conf[key] = max(conf.get(key, 0.0), c)


def _trim(toks: list[str], consumed: list[bool]) -> str:
    """Unconsumed tokens, after trimming function words/modifiers that touch a consumed span."""
    removed = list(consumed)
    changed = True
    while changed:
        changed = False
        for j, t in enumerate(toks):
            if removed[j] or t not in _TRIM:
                continue
            if (j > 0 and removed[j - 1]) or (j + 1 < len(toks) and removed[j + 1]):
                removed[j] = True
                changed = True
    return " ".join(t for t, r in zip(toks, removed, strict=True) if not r)
