"""What long runs print while they work: progress bars, one line per finished cell or epoch, or nothing.

Three modes (``progress=`` of the runners and of [`escape.train.train`][]; the CLI's ``--progress``, ``--log``
and ``--quiet``):

- ``"bar"``: tqdm bars on stderr (nested: cells, and the steps inside a cell);
- ``"log"``: one plain line per finished cell or epoch on stderr, no control characters, so that a log file
  or a pipe reads well (the CLI's default when stderr is not a terminal);
- ``"none"``: silence.

A resumed run says so first, in ``"bar"`` and ``"log"`` modes: ``resuming runs/fig6: 40 of 64 cells done``.
"""

import sys
import time

from tqdm.auto import tqdm

MODES = ("bar", "log", "none")


def progress_mode(progress) -> str:
    """``"bar"``, ``"log"`` or ``"none"`` from ``True`` / ``False`` / a mode name / ``"auto"`` (bars on a
    terminal, lines otherwise)."""
    if progress is True:
        return "bar"
    if progress is False or progress is None:
        return "none"
    if progress == "auto":
        return "bar" if sys.stderr.isatty() else "log"
    if progress in MODES:
        return progress
    raise ValueError(f"progress: must be True, False, 'auto' or one of {', '.join(MODES)}, got {progress!r}")


class Console:
    """Progress of ``total`` units of work (cells, runs, epochs), ``done`` of them finished before.

    Args:
        mode: ``"bar"``, ``"log"`` or ``"none"`` (see [`progress_mode`][escape.experiments._console.progress_mode]).
        total: the number of units.
        done: units already finished (a resumed run).
        unit: what a unit is called ("cell", "run", "epoch").
        where: the run directory, for the resume line.
        leave: keep the bar on screen when closed.
    """

    def __init__(self, mode: str, total: int, *, done: int = 0, unit: str = "cell", where=None, leave: bool = True):
        self.mode, self.total, self.count, self.unit = mode, int(total), int(done), unit
        self.start = time.perf_counter()
        if done and where is not None:
            self.say(f"resuming {where}: {done} of {total} {unit}s done")
        self.bar = (tqdm(total=total, initial=done, unit=unit, dynamic_ncols=True, leave=leave, file=sys.stderr)
                    if mode == "bar" else None)

    @property
    def inner(self) -> bool:
        """Whether work inside a unit may show its own (nested) bar."""
        return self.mode == "bar"

    def say(self, text: str) -> None:
        """A line on stderr (above the bar in ``"bar"`` mode; nothing in ``"none"``)."""
        if self.mode == "none":
            return
        if getattr(self, "bar", None) is not None:
            tqdm.write(text, file=sys.stderr)
        else:
            print(text, file=sys.stderr, flush=True)

    def begin(self, name: str) -> None:
        """A unit starts (the bar shows its name)."""
        if self.bar is not None:
            self.bar.set_description(name)

    def done(self, line: str = "") -> None:
        """A unit finished; in ``"log"`` mode print ``[i/total] line (seconds)``."""
        self.count += 1
        if self.bar is not None:
            self.bar.update(1)
        elif self.mode == "log":
            elapsed = time.perf_counter() - self.start
            self.say(f"[{self.count}/{self.total}] {line}  ({elapsed:.0f} s)")

    def postfix(self, **values) -> None:
        if self.bar is not None:
            self.bar.set_postfix(**values)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
