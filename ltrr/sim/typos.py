r"""Realistic single-edit misspellings of a name, for simulated users.

Most misspellings typed into a search box are one edit away from the intended word (Damerau,
CACM 1964: 80% of errors; Kukich, ACM Computing Surveys 1992), and the first letter is rarely
wrong (Yannakoudakis & Fawthrop, 1983). :func:`misspell` therefore applies exactly one edit to
one word of at least :data:`MIN_WORD` letters, never at its first letter, choosing the edit with
the probabilities of :data:`EDITS`:

* ``substitute``: a letter becomes one of its QWERTY neighbours (a slip of the finger);
* ``delete``: a letter is dropped (a doubled letter is undoubled the same way);
* ``insert``: a QWERTY neighbour of a letter is typed after it, or the letter is doubled;
* ``transpose``: two adjacent letters swap.

The word is drawn with probability proportional to its length (more letters, more chances to
slip). Only ASCII letters are edited; a name with no eligible word is returned unchanged and
:func:`can_misspell` says so beforehand. The result always differs from the input when an
eligible word exists (an edit that changes nothing, e.g. swapping "oo", is redrawn).
"""

from __future__ import annotations

import random
import re

MIN_WORD = 4
#: Edit -> probability (Kukich 1992, single-error typing studies, rounded).
EDITS: dict[str, float] = {"substitute": 0.35, "delete": 0.25, "insert": 0.2, "transpose": 0.2}
_ROWS = ("qwertyuiop", "asdfghjkl", "zxcvbnm")
_WORD = re.compile(r"[A-Za-z]+")


def _neighbours() -> dict[str, str]:
    pos = {c: (r, i) for r, row in enumerate(_ROWS) for i, c in enumerate(row)}
    out: dict[str, str] = {}
    for c, (r, i) in pos.items():
        near = [d for d, (r2, i2) in pos.items() if d != c and abs(r2 - r) <= 1 and abs(i2 - i + (r2 - r) * 0.5) <= 1]
        out[c] = "".join(sorted(near))
    return out


#: Letter -> the letters next to it on a QWERTY keyboard (rows offset by half a key).
NEIGHBOURS = _neighbours()


def _words(text: str) -> list[re.Match[str]]:
    return [m for m in _WORD.finditer(text) if len(m.group()) >= MIN_WORD]


def can_misspell(text: str) -> bool:
    """Whether ``text`` has a word :func:`misspell` can edit (ASCII letters, at least :data:`MIN_WORD`)."""
    return bool(_words(text))


def _near(c: str, rng: random.Random) -> str:
    out = rng.choice(NEIGHBOURS[c.lower()])
    return out.upper() if c.isupper() else out


def _edit(word: str, kind: str, rng: random.Random) -> str:
    i = rng.randrange(1, len(word))  # never the first letter
    if kind == "substitute":
        return word[:i] + _near(word[i], rng) + word[i + 1 :]
    if kind == "delete":
        return word[:i] + word[i + 1 :]
    if kind == "insert":
        extra = word[i] if rng.random() < 0.3 else _near(word[i], rng)
        return word[: i + 1] + extra + word[i + 1 :]
    j = rng.randrange(1, len(word) - 1)  # transpose j, j + 1 (both after the first letter)
    return word[:j] + word[j + 1] + word[j] + word[j + 2 :]


def misspell(text: str, rng: random.Random) -> str:
    """``text`` with one realistic typo (see the module docstring); unchanged if no word is eligible."""
    words = _words(text)
    if not words:
        return text
    kinds, probs = list(EDITS), list(EDITS.values())
    for _ in range(100):
        m = rng.choices(words, weights=[len(w.group()) for w in words])[0]
        new = _edit(m.group(), rng.choices(kinds, weights=probs)[0], rng)
        if new.lower() != m.group().lower():
            return text[: m.start()] + new + text[m.end() :]
    return text  # pragma: no cover - a word of >= 4 letters always has an edit that changes it
