"""Model cards (``README.md``): where the YAML front matter is.

A card starts with a line ``---``, then the YAML, then a line ``---`` (the HF Hub's rule; a byte-order mark
before it is ignored). Parsing the YAML is up to the caller (PyYAML's ``safe_load``).
"""

from __future__ import annotations

import re

_FRONT_MATTER = re.compile(r"\A---[ \t]*\r?\n(.*?)^---[ \t]*(?:\r?\n|\Z)", re.S | re.M)


def split_front_matter(text: str) -> tuple[str | None, str]:
    """(the YAML text between the two ``---`` lines, the body after them); ``(None, text)`` when the card has
    no complete front matter (see :func:`opens_front_matter` to tell an unclosed one)."""
    text = text.lstrip("\ufeff")
    match = _FRONT_MATTER.match(text)
    if match is None:
        return None, text
    return match.group(1), text[match.end() :]


def opens_front_matter(text: str) -> bool:
    """Whether the card's first line is ``---``."""
    return re.match(r"---[ \t]*(?:\r?\n|\Z)", text.lstrip("\ufeff")) is not None
