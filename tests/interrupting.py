"""Ctrl-C landing on a chosen line: a KeyboardInterrupt raised at the ``n``-th line one
module's code runs on this thread, as the signal's handler would raise it there."""

from __future__ import annotations

import sys
import types


class InterruptAtLine:
    """``with InterruptAtLine(module, n) as interrupt:`` raises KeyboardInterrupt at the ``n``-th
    line ``module``'s functions run inside the block (``fired`` says whether it did; once
    fired, nothing more is traced)."""

    def __init__(self, module: types.ModuleType, n: int) -> None:
        self._file = module.__file__
        self._left = n
        self.fired = False

    def __enter__(self) -> InterruptAtLine:
        sys.settrace(self._call)
        return self

    def __exit__(self, *exc: object) -> None:
        sys.settrace(None)

    def _call(self, frame: types.FrameType, event: str, arg: object) -> object:
        return self._line if frame.f_code.co_filename == self._file else None

    def _line(self, frame: types.FrameType, event: str, arg: object) -> object:
        if event == "line" and not self.fired:
            self._left -= 1
            if self._left == 0:
                self.fired = True
                sys.settrace(None)
                raise KeyboardInterrupt
        return self._line
