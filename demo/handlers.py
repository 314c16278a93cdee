"""The demo's event handlers: Gradio values in, :class:`~wavbrivl.pipeline.WavBriVLPipeline` calls, Gradio values out.

The UI (``demo/ui.py``) only wires components to these methods, so every handler can be called and tested as
a plain function, and the same functions are the named API endpoints (search, classify, generate) that
``gradio_client`` calls. No model logic lives here: zero-shot, search and how a prompt is mixed are the
pipeline's, the same ones the command line and the evaluation use.
"""
from __future__ import annotations

import functools
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import gradio as gr

from wavbrivl.audio import AudioError
from wavbrivl.bundle import localize
from wavbrivl.images import load_image
from wavbrivl.pipeline import FeatureUnavailable

from .config import DemoConfig, parse_labels
from .loading import PipelineLoader
from .messages import DemoError, from_audio_error, to_gradio

log = logging.getLogger(__name__)
MAX_LABELS = 64


def visitor_errors(fn: Callable) -> Callable:
    """Problems a visitor can meet become readable ``gr.Error`` messages; the app keeps serving."""
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except AudioError as exc:
            raise to_gradio(from_audio_error(exc)) from None
        except DemoError as exc:
            raise to_gradio(exc) from None
    return wrapper


def audio_value(audio: Any) -> Any:
    """Gradio's audio value as the pipeline takes it: a file path (also from ``gradio_client``'s FileData) or
    the microphone's ``(sample_rate, array)``."""
    if isinstance(audio, dict):
        return audio.get("path") or audio.get("name")
    if isinstance(audio, list) and len(audio) == 2:
        return tuple(audio)
    return audio


class DemoService(PipelineLoader):
    """The loaded pipeline and the handlers the page and the API call."""

    def __init__(self, config: DemoConfig | None = None) -> None:
        super().__init__(config or DemoConfig())
        self.served_roots: list[Path] = []  # set by allowed_paths(); empty = not launched through app.py

    # ------------------------------------------------------------------ what the page starts with
    @property
    def labels(self) -> list[str]:
        return list(self.config.labels or self.card.labels)

    def examples(self) -> list[tuple[str, str]]:
        """``(path, title)`` of the bundle's example sounds, each saying whether its kind was heard in training."""
        if self.root is None:
            return []
        return [(str(self.root / e.file), self.card.example_title(e) + ("" if e.heard else " (never heard in training)")
                 + (f": {localize(e.note)}" if e.note else "")) for e in self.card.examples]

    # ------------------------------------------------------------------ handlers
    @visitor_errors
    def search(self, audio: Any, k: float = 8, progress: gr.Progress = gr.Progress()) -> tuple[list, list, str]:
        """Nearest gallery images (with captions and scores) and nearest captions for a sound."""
        if audio is None:
            return [], [], ""
        pipeline = self.wait(progress)
        if pipeline.index is None:
            pipeline.embed(audio_value(audio))  # a bad sound is still reported as such
            note = f"search is off: {pipeline.problems.get('index', 'this bundle has no gallery index')}"
            gr.Warning(note, duration=5)
            return [], [], note
        t0 = time.perf_counter()
        hits = pipeline.search(audio_value(audio), max(1, min(int(k), 50)))
        ms = (time.perf_counter() - t0) * 1000
        gallery = [(self._gallery_image(r.path), f"{r.score:.3f} · {r.caption or Path(r.path).stem}") for r in hits.images if r.path]
        captions = [[round(r.score, 4), r.caption] for r in hits.captions]
        note = f"{len(gallery)} images and {len(captions)} captions from an index of {hits.index_size} items ({ms:.0f} ms)"
        return gallery, captions, note

    @visitor_errors
    def classify(self, audio: Any, labels: str | list[str] | None = None, progress: gr.Progress = gr.Progress()) -> dict[str, float]:
        """Zero-shot label probabilities: the bundle's prompt templates, softmax over the backbone's scaled cosines."""
        if audio is None:
            return {}
        pipeline = self.wait(progress)
        names = parse_labels(labels) if labels is not None else self.labels
        if not names:
            raise DemoError("no_labels")
        if len(names) > MAX_LABELS:
            gr.Warning(f"only the first {MAX_LABELS} labels are used", duration=5)
            names = names[:MAX_LABELS]
        return pipeline.classify(audio_value(audio), names)

    @visitor_errors
    def generate(self, audio: Any, prompt: str = "", mix: float = 0.0, seed: float = 0, steps: float = 25,
                 noise_level: float = 0, guidance: float = 0.0, progress: gr.Progress = gr.Progress()) -> Any:
        """One image from the sound's embedding, optionally mixed with a text prompt's (``mix`` = the prompt's weight).

        ``guidance`` 0 means the bundle's (else the generator's) default.
        """
        pipeline = self.wait(progress)
        if pipeline.generator is None:
            raise DemoError("no_generator", reason=pipeline.problems.get("generator", "this bundle has no generator"))
        if audio is None and not ((prompt or "").strip() and mix > 0):
            raise DemoError("no_sound")
        steps = int(min(max(steps, 1), 100))
        progress((0, steps), desc="generating", unit="steps")
        try:
            return pipeline.generate(
                audio_value(audio) if audio is not None else None, prompt=prompt, mix=float(mix), seed=int(seed),
                steps=steps, guidance=float(guidance) if guidance and guidance > 0 else None,
                noise_level=int(min(max(noise_level, 0), 999)),
                progress=lambda i, n: progress((i, n), desc="generating", unit="steps"))
        except FeatureUnavailable as exc:
            raise DemoError("no_generator", reason=str(exc)) from None

    # ------------------------------------------------------------------ files the server may send
    def allowed_paths(self) -> list[str]:
        """Folders Gradio may serve gallery images and examples from (``launch(allowed_paths=...)``): the
        bundle's folder and, for an index kept elsewhere, the index's picture folders; nothing else.

        Images found elsewhere are sent as pixels instead of paths (:meth:`_gallery_image`), so results always show.
        """
        roots: set[Path] = set()
        try:
            bundle = Path(self.config.resolved_checkpoint())
            if bundle.is_dir():
                roots.add(bundle.resolve())
        except FileNotFoundError:
            pass
        index = self.config.part("index")
        if index not in (None, "auto") and Path(index).is_dir():
            roots.add(Path(index).resolve())
        if self.pipeline is not None and self.pipeline.index is not None:
            idx = self.pipeline.index
            parents = {(Path(idx.root) / r["path"]).resolve().parent for r in idx.meta if r.get("kind") == "image" and r.get("path")}
            if len(parents) > 32:
                parents = {Path(os.path.commonpath([str(p) for p in parents]))}
            roots |= parents | {Path(idx.root).resolve()}
        self.served_roots = sorted(roots) + [Path.cwd().resolve(), Path(tempfile.gettempdir()).resolve()]
        return [str(r) for r in sorted(roots)]

    def _gallery_image(self, path: str) -> Any:
        """A path Gradio is allowed to serve, else the decoded image (sent as pixels)."""
        if not self.served_roots or any(Path(path).is_relative_to(root) for root in self.served_roots):
            return path
        return load_image(path)

    # ------------------------------------------------------------------ the info panel
    def describe(self) -> str:
        """What is loaded (markdown): the bundle's name and description, the space, what is on and off."""
        if not self.state.done.is_set():
            return f"⏳ Loading: {self.state.stage}…"
        if self.state.error or self.pipeline is None:
            return f"❌ The model could not be loaded: {self.state.error}"
        p = self.pipeline
        index = (f"index of {p.index.count('image')} images and {p.index.count('text')} captions" if p.index is not None
                 else f"search is off: {p.problems.get('index', 'no gallery index')}")
        gen = ("image generator ready" if p.generator is not None
               else f"image generation is off: {p.problems.get('generator', 'no generator')}")
        lines = [f"**{p.name}** · embedding space `{p.backbone_id}` ({p.embed_dim}-d) · {index} · {gen}."]
        description = localize(p.card.description)
        lines.append(description or "An audio encoder trained into a frozen open_clip image–text space (WavBriVL): "
                     "a sound is compared with pictures and words by one cosine similarity.")
        if "card" in p.problems:
            lines.append(f"⚠️ The bundle's card could not be read, defaults are used: {p.problems['card']}")
        return "\n\n".join(lines)


def on_gpu(fn: Callable, duration: int = 120) -> Callable:
    """``spaces.GPU`` (Hugging Face ZeroGPU) when the ``spaces`` package is there; the function itself otherwise."""
    try:
        import spaces  # type: ignore[import-not-found]
    except ImportError:
        return fn
    return spaces.GPU(duration=duration)(fn)
