"""Edits of a rendered report's text, for re-rendering one section of it in place
(:func:`ltrr.sim.benchreport.update`) or carrying one over from an older report
(:func:`ltrr.sim.benchreport.keep`). Pure; every byte outside what each function names is kept.

A section is its heading line (``## Scale``) up to the next ``## `` heading or the end of the text; the head is
the text before the first ``## `` heading (the title, this report's command, commit, machine and date, and the
table of inputs). Each function raises :class:`ValueError` naming what it did not find.
"""

from __future__ import annotations

import re
from typing import Iterable

_H2 = re.compile(r"^## ", re.MULTILINE)
_LIST_ITEM = re.compile(r"\n- \*\*.*")  # the next line of the head's list of ``- **Label**: value`` lines


def section_span(text: str, heading: str) -> tuple[int, int]:
    """``(start, end)`` of the section headed ``heading`` in ``text``: its heading line up to the next ``## ``
    heading (or the end). Raises when the heading is absent or there twice."""
    starts = [m.start() for m in re.finditer(f"^{re.escape(heading)}$", text, re.MULTILINE)]
    if len(starts) != 1:
        raise ValueError(f"the report holds {'no' if not starts else len(starts)} `{heading}` heading line"
                         + ("" if not starts else "s") + ", needs exactly one")  # fmt: skip
    nxt = _H2.search(text, starts[0] + len(heading))
    return starts[0], nxt.start() if nxt else len(text)


def replace_section(text: str, heading: str, new: str) -> str:
    """``text`` with the section headed ``heading`` (:func:`section_span`) replaced by ``new``, which starts with
    that heading line."""
    if not new.startswith(heading + "\n"):
        raise ValueError(f"the new section must start with its heading line `{heading}`")
    start, end = section_span(text, heading)
    return text[:start] + new + text[end:]


def _head_end(text: str) -> int:
    first = _H2.search(text)
    return first.start() if first else len(text)


def section(text: str, heading: str) -> str:
    """The section headed ``heading`` (:func:`section_span`), its heading line included."""
    start, end = section_span(text, heading)
    return text[start:end]


def _head_row_match(text: str, name: str) -> re.Match[str]:
    head = _head_end(text)
    found = list(re.finditer(f"^\\| {re.escape(name)} \\|.*$", text[:head], re.MULTILINE))
    if len(found) != 1:
        raise ValueError(f"the report's table of inputs holds {len(found)} `{name}` rows, needs exactly one")
    return found[0]


def head_row(text: str, name: str) -> str:
    """The head's table row of input ``name`` (the line starting ``| <name> |``)."""
    return _head_row_match(text, name).group(0)


def replace_head_row(text: str, name: str, row: str) -> str:
    """``text`` with the head's table row of input ``name`` (the line starting ``| <name> |``) replaced by
    ``row``."""
    m = _head_row_match(text, name)
    return text[: m.start()] + row + text[m.end() :]


def head_value(text: str, label: str) -> str | None:
    """The value of the head's line ``- **<label>**: <value>``; None when the head has no such line."""
    m = re.search(f"^- \\*\\*{re.escape(label)}\\*\\*: (.*)$", text[: _head_end(text)], re.MULTILINE)
    return m.group(1) if m else None


def mark_in_head(text: str, label: str, value: str) -> str:
    """``text`` with the head's line ``- **<label>**: <value>``: in place of the line of that label when there
    is one, else appended to the list that holds the ``- **Date**:`` line."""
    head, line = _head_end(text), f"- **{label}**: {value}"
    old = re.search(f"^- \\*\\*{re.escape(label)}\\*\\*: .*$", text[:head], re.MULTILINE)
    if old:
        return text[: old.start()] + line + text[old.end() :]
    date = re.search(r"^- \*\*Date\*\*: .*$", text[:head], re.MULTILINE)
    if date is None:
        raise ValueError("the report's head holds no `- **Date**:` line")
    at = date.end()
    while (m := _LIST_ITEM.match(text, at)) and m.end() <= head:  # the rest of the list
        at = m.end()
    return text[:at] + "\n" + line + text[at:]


def drop_lines(text: str, heading: str, lines: Iterable[str]) -> str:
    """``text`` without the lines equal to one of ``lines`` inside the section headed ``heading``; unchanged
    when there is not exactly one such section."""
    drop = set(lines)
    try:
        start, end = section_span(text, heading)
    except ValueError:
        return text
    kept = [ln for ln in text[start:end].split("\n") if ln not in drop]
    return text[:start] + "\n".join(kept) + text[end:]
