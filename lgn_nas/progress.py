"""Progress bars that behave in logs.

:func:`progress_bar` gives a tqdm bar when its stream is a terminal. Anywhere else (CI, ``nohup``,
a pipe, a file) a bar's carriage-return redraws would fill the log with hundreds of partial lines,
so it gives a :class:`LineProgress` instead: the same calls (``update``, ``set_postfix``, ``refresh``,
``close``, ``n``), but it prints one plain line when the bar closes (an epoch) or is refreshed (a
trial of a search), and nothing in between.
"""
from __future__ import annotations

import sys
import time
from typing import Any, Dict, Optional, TextIO

__all__ = ["LineProgress", "progress_bar", "is_terminal"]


def is_terminal(stream: Optional[TextIO]) -> bool:
    """Whether ``stream`` is an interactive terminal (a closed or odd stream counts as not)."""
    try:
        return bool(stream is not None and stream.isatty())
    except (AttributeError, ValueError):
        return False


class LineProgress:
    """A progress report of whole lines: ``desc: n/total unit, k=v, ... (elapsed)``.

    ``refresh()`` prints the current line; ``close()`` prints it once more only if something changed
    since the last line, so a bar closed after its last refresh adds no repeat.
    """

    def __init__(self, *, total: Optional[int] = None, desc: str = "", unit: str = "it", initial: int = 0,
                 file: Optional[TextIO] = None) -> None:
        self.total = total
        self.desc = desc
        self.unit = unit
        self.n = initial
        self.file = file
        self._postfix: Dict[str, Any] = {}
        self._start = time.perf_counter()
        self._printed: Optional[tuple] = None
        self._closed = False

    def update(self, n: int = 1) -> None:
        self.n += n

    def set_postfix(self, refresh: bool = True, **values: Any) -> None:
        self._postfix = dict(values)
        if refresh:
            self.refresh()

    def _state(self) -> tuple:
        return self.n, tuple(self._postfix.items())

    def line(self) -> str:
        count = f"{self.n}/{self.total}" if self.total is not None else str(self.n)
        unit = self.unit if self.n == 1 and self.total in (None, 1) else self.unit + "s"
        parts = [f"{self.desc}: {count} {unit}" if self.desc else f"{count} {unit}"]
        parts += [f"{key}={value}" for key, value in self._postfix.items()]
        return ", ".join(parts) + f" ({time.perf_counter() - self._start:.1f} s)"

    def refresh(self) -> None:
        if self._closed:
            return
        print(self.line(), file=self.file if self.file is not None else sys.stderr, flush=True)
        self._printed = self._state()

    def close(self) -> None:
        if not self._closed and self._printed != self._state():
            self.refresh()
        self._closed = True

    def __enter__(self) -> "LineProgress":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def progress_bar(*, total: Optional[int] = None, desc: str = "", unit: str = "it", initial: int = 0,
                 file: Optional[TextIO] = None) -> Any:
    """A tqdm bar on a terminal, else a :class:`LineProgress` (one line per epoch or trial).

    ``file`` defaults to ``sys.stderr`` (tqdm's stream), read when the bar is made.
    """
    stream = file if file is not None else sys.stderr
    if is_terminal(stream):
        from tqdm.auto import tqdm

        return tqdm(total=total, desc=desc, unit=unit, initial=initial, file=stream, dynamic_ncols=True)
    return LineProgress(total=total, desc=desc, unit=unit, initial=initial, file=stream)
