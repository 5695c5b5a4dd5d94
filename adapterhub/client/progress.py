"""Rich progress bars for transfers: shown on a terminal for transfers over 4 MB, or when asked for."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator


@contextlib.contextmanager
def progress_bar(enabled: bool | None, total: int, label: str) -> Iterator[Callable[[int], None]]:
    if enabled is None:
        enabled = sys.stderr.isatty() and total > 4 * 1024 * 1024
    if not enabled:
        yield lambda n: None
        return
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    with Progress(
        TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(), transient=True
    ) as bar:
        task = bar.add_task(label, total=total)
        yield lambda n: bar.advance(task, n)
