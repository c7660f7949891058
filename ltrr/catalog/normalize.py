"""Name and tag normalisation: the join keys of the catalog.

Two names that normalise to the same string are the same artist, whichever
source they come from (Last.fm HetRec, Spotify). The artist entity id is
``artist:`` + the first 12 hex digits of ``sha1(normalize_name(name))``, so it
is stable across rebuilds and identical for both sources.

:func:`normalize_name` applies, in order:

1. drop private-use, control and format characters (Unicode categories
   ``Co``, ``Cc``, ``Cf``; e.g. ``"Katy Perry\\uE216"``);
2. NFKC (full-width and compatibility forms fold: ``"Ｂｊörk"`` -> ``"Björk"``);
3. ``casefold`` (``"ß"`` -> ``"ss"``);
4. strip accents from Latin letters only (``"Tiësto"`` -> ``"tiesto"``,
   ``"Beyoncé"`` -> ``"beyonce"``); combining marks on other scripts are kept,
   because there they change the letter (Japanese dakuten, Hebrew points);
5. ``"&"`` -> ``" and "``, ``"+"`` -> ``" and "`` and ``"$"`` -> ``"s"``
   (``"Simon & Garfunkel"`` = ``"Simon and Garfunkel"``, ``"Ke$ha"`` = ``"Kesha"``);
6. apostrophes and periods are deleted (``"Guns N' Roses"`` -> ``"guns n roses"``,
   ``"R.E.M."`` -> ``"rem"``); every other punctuation or symbol character
   becomes a space;
7. whitespace runs collapse to one space, ends are stripped;
8. a trailing ``", the"`` and leading ``"the "`` are dropped
   (``"The Beatles"`` = ``"Beatles, The"`` = ``"beatles"``), unless nothing would
   remain (``"The The"`` -> ``"the"``). This makes the function idempotent.

If the result is empty (a name made only of punctuation, e.g. ``"!!!"``), the
casefolded NFKC form of the stripped input is returned instead, so every
non-blank name has a non-empty key.

:func:`normalize_tag` is gentler (tags are words, not names): steps 1-4, then
``"-"``, ``"_"`` and ``"/"`` become spaces and whitespace collapses; ``"&"``
and other punctuation are kept (``"R&B"`` -> ``"r&b"``, ``"Hip-Hop"`` -> ``"hip hop"``);
finally a few spelling variants map to one label (:data:`TAG_ALIASES`, ``"rnb"`` -> ``"r&b"``).
"""

from __future__ import annotations

import functools
import hashlib
import re
import unicodedata

_DROP_CATEGORIES = frozenset({"Co", "Cc", "Cf", "Cs"})
_DELETE_CHARS = frozenset("'\u2018\u2019\u02bc`\u00b4.")
_SPACE_RE = re.compile(r"\s+")
_TAG_SEP_RE = re.compile(r"[-_/\s]+")
_TRAILING_THE_RE = re.compile(r",\s*the\s*$")
#: Spelling variants of one label, applied after normalisation.
TAG_ALIASES: dict[str, str] = {
    "rnb": "r&b",
    "r and b": "r&b",
    "r & b": "r&b",
    "hiphop": "hip hop",
    "synth pop": "synthpop",
    "female vocalist": "female vocalists",
    "drum n bass": "drum and bass",
    "drum & bass": "drum and bass",
    "dnb": "drum and bass",
}


def strip_private_use(text: str) -> str:
    """Remove private-use, control and format characters (keeps tab-free plain text).

    >>> strip_private_use("Glee Cast\\uf800")
    'Glee Cast'
    """
    if text.isascii() and text.isprintable():
        return text
    return "".join(ch for ch in text if unicodedata.category(ch) not in _DROP_CATEGORIES or ch in "\t\n")


def _is_latin_base(ch: str) -> bool:
    cp = ord(ch)
    return cp < 0x0250 or 0x1E00 <= cp <= 0x1EFF


def strip_latin_accents(text: str) -> str:
    """Drop combining marks that sit on a Latin base letter; keep marks elsewhere.

    >>> strip_latin_accents("Tiësto Beyoncé Motörhead")
    'Tiesto Beyonce Motorhead'
    """
    if text.isascii():
        return text
    out: list[str] = []
    base_is_latin = False
    for ch in unicodedata.normalize("NFD", text):
        if unicodedata.combining(ch):
            if base_is_latin:
                continue
        else:
            base_is_latin = _is_latin_base(ch)
        out.append(ch)
    return unicodedata.normalize("NFC", "".join(out))


def _fold(text: str) -> str:
    if text.isascii() and text.isprintable():
        return text.lower()
    text = strip_private_use(text)
    text = unicodedata.normalize("NFKC", text).casefold()
    return strip_latin_accents(text)


@functools.lru_cache(maxsize=65536)
def normalize_name(name: str) -> str:
    """Normalise an artist (or any entity) name to its join key; see the module docstring.

    >>> normalize_name("The Beatles"), normalize_name("Beyoncé"), normalize_name("Ke$ha")
    ('beatles', 'beyonce', 'kesha')
    """
    folded = _fold(name)
    chars: list[str] = []
    for ch in folded:
        if ch in _DELETE_CHARS:
            continue
        if ch in "&+":
            chars.append(" and ")
        elif ch == "$":
            chars.append("s")
        elif ch.isspace():
            chars.append(" ")
        else:
            cat = unicodedata.category(ch)
            chars.append(" " if cat[0] in "PS" else ch)
    key = _SPACE_RE.sub(" ", "".join(chars)).strip()
    if key.endswith(" the") and _TRAILING_THE_RE.search(folded):
        key = key[:-4]
    while key.startswith("the ") and len(key) > 4:
        key = key[4:]
    if not key:
        key = _SPACE_RE.sub(" ", folded).strip()
    return key


@functools.lru_cache(maxsize=65536)
def normalize_tag(tag: str) -> str:
    """Normalise a tag or genre label.

    >>> normalize_tag("Hip-Hop"), normalize_tag("R&B"), normalize_tag("  Post_Rock ")
    ('hip hop', 'r&b', 'post rock')
    """
    key = _TAG_SEP_RE.sub(" ", _fold(tag)).strip()
    return TAG_ALIASES.get(key, key)


def artist_entity_id(name: str) -> str:
    """The stable artist id: ``artist:`` + 12 hex of sha1 of the normalised name.

    >>> artist_entity_id("The Beatles") == artist_entity_id("beatles")
    True
    """
    return artist_id_for_key(normalize_name(name))


def artist_id_for_key(key: str) -> str:
    """The artist id of an already normalised name (hashes ``key`` as is)."""
    return "artist:" + hashlib.sha1(key.encode("utf-8")).hexdigest()[:12]


def tag_node_id(tag: str) -> str:
    """The graph node id of a tag: ``tag:`` + :func:`normalize_tag`."""
    return "tag:" + normalize_tag(tag)
