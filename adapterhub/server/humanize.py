"""Numbers as the web pages show them: one format per kind of number, used by every page and drawing."""

from __future__ import annotations

from adapterhub.common import sizes


def human_size(n: int | None) -> str:
    """Bytes in decimal units: ``455.0 kB``."""
    return "–" if n is None else sizes.human_size(n)


def human_count(n: int | None) -> str:
    """Counts such as downloads, abbreviated: ``1.2k``."""
    if n is None:
        return "–"
    if n >= 1_000_000:
        return f"{n / 1e6:.1f}M"
    if n >= 1_000:
        return f"{n / 1e3:.1f}k"
    return str(n)


def human_params(n: int | None) -> str:
    """Parameter counts, always in full: ``113,810``."""
    return "–" if n is None else f"{n:,}"
