"""A hook process starts, imports a lot (our package, the docker SDK) and ends within seconds.

Imports make long-lived objects only, so hooks/launch (and ``python -m bluegreen_hooks hook``) pause the
garbage collector from the first line. ``imports_done()`` then freezes what the imports made, so that no
later collection walks it again (nor the one at exit), and turns collection back on; ``importing()`` does
the same around a late import (the docker SDK). About 30 ms less per hook. A process that did not pause
the collector (the tests, the CLI) is left as it is.
"""
from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator

_paused_at_start = False


def imports_done() -> None:
    """The hook's modules are imported: freeze them, collect as usual from here (a hook process only)."""
    global _paused_at_start
    if not gc.isenabled():
        _paused_at_start = True
    if _paused_at_start:
        gc.freeze()
        gc.enable()


@contextlib.contextmanager
def importing() -> Iterator[None]:
    """Around a late import in a hook process: no collection while it runs, its objects frozen after."""
    if _paused_at_start:
        gc.disable()
    try:
        yield
    finally:
        if _paused_at_start:
            imports_done()
