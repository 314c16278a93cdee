"""Wall-clock time of a build's or benchmark's stages, recorded into the dict its report carries."""
from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Iterator


@contextmanager
def timed(stages: dict[str, float], name: str) -> Iterator[None]:
    """``stages[name]``: the seconds the ``with`` block took. A block that raises records nothing, so a report
    never shows a stage as done that failed."""
    start = time.perf_counter()
    yield
    stages[name] = time.perf_counter() - start
