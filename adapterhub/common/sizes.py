"""Sizes as people read them, in one format everywhere (command line and web pages)."""

from __future__ import annotations


def human_size(n: int | float) -> str:
    """Bytes in decimal units: ``512 B``, ``455.0 kB``, ``1.2 GB``."""
    size = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{n} B"  # not reached: TB is the last unit
