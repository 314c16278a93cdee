"""ZeroGPU: the one place the demo asks for a GPU (Hugging Face's ``spaces`` package, where it is installed)."""
from __future__ import annotations

from typing import Any, Callable


def gpu_seconds(*args: Any, **kwargs: Any) -> int:
    """The GPU time to ask ZeroGPU for one :meth:`DemoService.paint` call (its arguments; ``steps`` is the fifth):
    ZeroGPU serves shorter requests first, and a 25-step SD 1.5 picture takes seconds on its GPU, so 20 s plus a
    second per step (the first call also moves the generator's weights onto the GPU), at most the 120 s it allows
    without a PRO quota."""
    steps = kwargs.get("steps", args[4] if len(args) > 4 else 25)
    return int(min(120, 20 + int(steps)))


def on_gpu(fn: Callable, duration: int | Callable[..., int] = 120) -> Callable:
    """``spaces.GPU`` (Hugging Face ZeroGPU) when the ``spaces`` package is there; the function itself otherwise.

    What ZeroGPU asks of the decorated function (hub-docs ``spaces-zerogpu.md``), and how this app does it: models
    are placed on ``cuda`` at start-up, outside it (``DemoConfig.resolved_generator_device``); only GPU work runs
    inside (:meth:`DemoService.paint`; waiting for the models and embedding the sound stay outside); it returns CPU
    objects (a PIL image); ``duration`` may be a function of the call's arguments (:func:`gpu_seconds`). The
    decorator is a no-op off ZeroGPU, so the same app runs on any host.
    """
    try:
        import spaces  # type: ignore[import-not-found]
    except ImportError:
        return fn
    return spaces.GPU(duration=duration)(fn)
