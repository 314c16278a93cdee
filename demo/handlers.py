"""The demo's event handlers: Gradio values in, :class:`~wavbrivl.pipeline.WavBriVLPipeline` calls, Gradio values out.

The UI (``demo/ui.py``) only wires components to these methods, so every handler can be called and tested as
a plain function, and the same functions are the named API endpoints and MCP tools (search, classify,
generate; their docstrings are the tools' descriptions). No model logic lives here: zero-shot, search, the
map and how a prompt is mixed are the pipeline's, the same ones the command line and the evaluation use.
Handlers answer in the visitor's language (the request's ``Accept-Language``); a visitor's upload is deleted
once embedded (:class:`~demo.uploads.VisitorSounds`).
"""
from __future__ import annotations

import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd
from PIL import Image

from wavbrivl.images import load_image
from wavbrivl.pipeline import FeatureUnavailable, SoundEmbedding
from wavbrivl.plots import sound_map_figure

from .config import DemoConfig, parse_labels
from .display import for_display, unsure_guesses
from .gpu import gpu_seconds, on_gpu
from .loading import PipelineLoader
from .messages import DemoError, language, redact, text, visitor_errors
from .page import example_files
from .uploads import VisitorSounds

log = logging.getLogger(__name__)
MAX_LABELS = 64


def audio_value(audio: Any) -> Any:
    """Gradio's audio value as the pipeline takes it: a file path (also from ``gradio_client``'s FileData) or
    the microphone's ``(sample_rate, array)``."""
    if isinstance(audio, dict):
        return audio.get("path") or audio.get("name")
    if isinstance(audio, list) and len(audio) == 2:
        return tuple(audio)
    return audio


class DemoService(PipelineLoader):
    """The loaded pipeline and the handlers the page, the API and MCP clients call."""

    def __init__(self, config: DemoConfig | None = None) -> None:
        super().__init__(config or DemoConfig())
        self.served_roots: list[Path] = []  # set by allowed_paths(); empty = not launched through app.py
        self.sounds = VisitorSounds(path for path, _ in example_files(self))
        # Only the painting runs on ZeroGPU's GPU (see paint); decorated once, here, as spaces.GPU expects.
        self._paint = on_gpu(self.paint, duration=gpu_seconds)

    @property
    def labels(self) -> list[str]:
        return list(self.config.labels or self.card.labels)

    def _sound(self, pipeline: Any, audio: Any) -> Any:
        return self.sounds.resolve(pipeline, audio_value(audio))

    # ------------------------------------------------------------------ handlers (named endpoints, MCP tools)
    @visitor_errors
    def search(self, audio: Any, k: float = 8, request: gr.Request = None,
               progress: gr.Progress = gr.Progress()) -> tuple[list, pd.DataFrame, str]:
        """Find the gallery pictures and captions whose meaning is closest to a sound (audio-to-image and audio-to-text
        retrieval).

        Args:
            audio: the sound to look up, an audio file (WAV, FLAC, OGG, MP3, M4A or WEBM; at most 30 s by default).
            k: how many pictures and how many captions to return (1 to 50).

        Returns:
            The nearest pictures, each captioned "cosine score · caption", best first.
            A table of the nearest captions with their cosine scores, best first.
            A one-line note: how many results, from how large an index, in how many milliseconds.
        """
        lang = language(request)
        empty = pd.DataFrame(columns=[text("score", lang), text("caption", lang)])
        if audio is None:
            return [], empty, ""
        pipeline = self.wait(progress, lang)
        sound = self._sound(pipeline, audio)
        if pipeline.index is None:
            pipeline.embed(sound)  # a bad sound is still reported as such
            note = text("index_off", lang, reason=redact(pipeline.problems.get("index", "this bundle has no gallery index")))
            gr.Warning(note, duration=5)
            return [], empty, note
        t0 = time.perf_counter()
        hits = pipeline.search(sound, max(1, min(int(k), 50)))
        ms = (time.perf_counter() - t0) * 1000
        gallery = [(self._gallery_image(r.path), f"{r.score:.3f} · {r.caption or Path(r.path).stem}")
                   for r in hits.images if r.path]
        captions = pd.DataFrame([[round(r.score, 4), r.caption] for r in hits.captions], columns=list(empty.columns))
        note = text("search_note", lang, images=len(gallery), captions=len(captions), size=hits.index_size, ms=f"{ms:.0f}")
        return gallery, captions, note

    @visitor_errors
    def classify(self, audio: Any, labels: str | list[str] | None = None, request: gr.Request = None,
                 progress: gr.Progress = gr.Progress()) -> dict[str, float]:
        """Zero-shot classification of a sound: how likely each text label is, from the frozen text tower.

        Args:
            audio: the sound to classify, an audio file (WAV, FLAC, OGG, MP3, M4A or WEBM).
            labels: candidate labels, one per line or comma-separated (at most 64); empty means the bundle's default labels.

        Returns:
            Each label with its probability, most likely first: a softmax over the cosine similarities times the bundle's
            calibrated scale (fitted on held-out clips; the backbone's own scale for bundles without one).
        """
        lang = language(request)
        if audio is None:
            return {}
        pipeline = self.wait(progress, lang)
        names = parse_labels(labels) if labels else self.labels
        if not names:
            raise DemoError("no_labels")
        cap = max(MAX_LABELS, len(self.labels))  # the bundle's own labels are always all used
        if len(names) > cap:
            gr.Warning(text("labels_capped", lang, n=cap), duration=5)
            names = names[:cap]
        return pipeline.classify(self._sound(pipeline, audio), names)

    @visitor_errors
    def generate(self, audio: Any, prompt: str = "", mix: float = 0.0, seed: float = 0, steps: float = 25,
                 noise_level: float = 0, guidance: float = 0.0, request: gr.Request = None,
                 progress: gr.Progress = gr.Progress()) -> Any:
        """Paint a picture from a sound: the bundle's generator, conditioned on the sound's embedding.

        Args:
            audio: the sound to paint (a WAV, FLAC, OGG, MP3, M4A or WEBM file); may be empty when prompt is given and mix is 1.
            prompt: optional text; it moves the condition towards the text's embedding by mix.
            mix: the prompt's weight, 0 (the sound alone) to 1 (the prompt alone).
            seed: random seed; the same sound, settings and seed give the same picture.
            steps: denoising steps, 1 to 100 (more is slower and usually cleaner).
            noise_level: Stable unCLIP's noise augmentation of the condition, 0 to 999 (ignored by other generators).
            guidance: classifier-free guidance scale; 0 means the bundle's default.

        Returns:
            The generated picture.
        """
        lang = language(request)
        pipeline = self.wait(progress, lang)
        if pipeline.generator is None:
            raise DemoError("no_generator", reason=pipeline.problems.get("generator", "this bundle has no generator"))
        if audio is None and not ((prompt or "").strip() and mix > 0):
            raise DemoError("no_sound")
        steps = int(min(max(steps, 1), 100))
        # The sound is embedded here, in the server's process, before any GPU is asked for: ZeroGPU runs the painting
        # in a forked worker that receives its arguments pickled and may date from before this upload (which is
        # deleted once embedded), so it gets the embedding itself; waiting for the models also stays out of GPU time.
        sound = None
        if audio is not None:
            sound = self._sound(pipeline, audio)
            if not isinstance(sound, SoundEmbedding):
                sound = SoundEmbedding(pipeline.embed(sound))
        try:
            picture = self._paint(sound, prompt or "", float(mix), int(seed), steps,
                                  float(guidance) if guidance and guidance > 0 else None, int(min(max(noise_level, 0), 999)),
                                  lang, progress)
        except FeatureUnavailable as exc:
            raise DemoError("no_generator", reason=str(exc)) from None
        return for_display(picture)

    def paint(self, sound: SoundEmbedding | None, prompt: str, mix: float, seed: int, steps: int, guidance: float | None,
              noise_level: int, lang: str = "en", progress: Any = None) -> Image.Image:
        """The picture for an embedded sound (and prompt): the only work done on a GPU. On ZeroGPU this runs inside
        ``spaces.GPU`` (:func:`on_gpu`), in a worker whose generator ``spaces`` has moved onto the GPU; it takes and
        returns plain CPU objects (an embedding, a PIL image), as a forked worker's arguments and results must be."""
        pipeline = self.pipeline
        if pipeline is None:  # not reachable through generate(), which waits for the models first
            raise DemoError("not_loaded", error=self.state.error)
        desc = text("generating", lang)
        report = progress or (lambda *a, **k: None)
        report((0, steps), desc=desc, unit="steps")
        return pipeline.generate(sound, prompt=prompt, mix=mix, seed=seed, steps=steps, guidance=guidance,
                                 noise_level=noise_level, progress=lambda i, n: report((i, n), desc=desc, unit="steps"))

    # ------------------------------------------------------------------ private page events
    def verdict(self, scores: dict[str, float] | None, request: gr.Request = None) -> tuple[Any, str]:
        """What the page says over the label chart. A confident answer keeps the chart's bold winner; when the top
        probability is below the card's ``calibration.unsure_below`` the winner is hidden and the model says it is
        unsure, offering its first three guesses (the /classify answer itself is unchanged)."""
        guesses = unsure_guesses(scores or {}, self.card.calibration.unsure_below)
        if guesses is None:
            return gr.update(show_heading=True), ""
        lang = language(request)
        lines = [text("unsure", lang, prob=f"{guesses[0][1]:.0%}"), ""]
        lines += [text("unsure_guess", lang, label=name, prob=f"{prob:.0%}") for name, prob in guesses]
        return gr.update(show_heading=False), "\n".join(lines)

    @visitor_errors
    def sound_map(self, audio: Any, k: float = 8, request: gr.Request = None) -> Any:
        """The gallery map with the sound placed on it and its nearest pictures labelled (a matplotlib figure)."""
        if audio is None or self.pipeline is None or self.pipeline.index is None or self.pipeline.index.count("image") < 3:
            return None  # nothing to place it among (the search says why)
        pipeline = self.pipeline
        emap = pipeline.gallery_map()
        xy, nearest = emap.place(pipeline.embed(self._sound(pipeline, audio)), max(1, min(int(k), 12)))
        return sound_map_figure(emap.points, xy, nearest, emap.labels)

    def pick_example(self, index: int) -> str | None:
        """The example sound a visitor clicked (the page's example buttons), as the recorder's new value."""
        files = example_files(self)
        return files[index][0] if 0 <= index < len(files) else None

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
        if self.config.real:  # the retargeted bundle kept for real mode: its examples and gallery
            from wavbrivl.real import real_home

            roots.add(real_home(self.config.real).resolve())
        index = self.config.part("index")
        if index not in (None, "auto") and Path(index).is_dir():
            roots.add(Path(index).resolve())
        if self.pipeline is not None and self.pipeline.index is not None:
            idx = self.pipeline.index
            parents = {(Path(idx.root) / r["path"]).resolve().parent for r in idx.meta
                       if r.get("kind") == "image" and r.get("path")}
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
