"""Loading the bundle in the background, so the page is served at once and says what it is loading.

A handler called early waits with a progress bar instead of freezing the page. A part that fails to load
(an index from another embedding space, a generator that needs a GPU) is switched off with its reason
(``pipeline.problems``); only an audio model that cannot load at all is an error, shown on the page.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from wavbrivl.bundle import BundleCard
from wavbrivl.pipeline import WavBriVLPipeline, load_card

from .config import DemoConfig
from .messages import DemoError, stage

log = logging.getLogger(__name__)


@dataclass
class LoadState:
    stage: str = "not started"
    fraction: float = 0.0
    done: threading.Event = field(default_factory=threading.Event)
    error: str | None = None


class PipelineLoader:
    """Loads the pipeline once, in a thread that starts with the server."""

    def __init__(self, config: DemoConfig) -> None:
        self.config = config
        self.pipeline: WavBriVLPipeline | None = None
        self.state = LoadState()
        self._thread: threading.Thread | None = None
        self.root, self.card = self._read_card()

    def _read_card(self) -> tuple[Path | None, BundleCard]:
        """The bundle's card, read at once (a small JSON file) so the page can show its name, labels and
        examples while the models load. A hub bundle's card is known once it is downloaded."""
        try:
            folder = Path(self.config.resolved_checkpoint())
        except FileNotFoundError:
            return None, BundleCard.default("wavbrivl")
        if not folder.is_dir():
            return None, BundleCard.default(str(self.config.checkpoint))
        try:
            return folder, load_card(folder, str(folder))
        except Exception:  # noqa: BLE001 - loading reports the problem with the card; show defaults meanwhile
            return folder, BundleCard.default(folder.name, folder)

    def start(self) -> "PipelineLoader":
        """Begin loading in the background (idempotent); the server can start serving meanwhile."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._load, name="wavbrivl-demo-load", daemon=True)
            self._thread.start()
        return self

    def load(self) -> "PipelineLoader":
        """Load in the calling thread's time (tests, benchmarks, ``app.py --preload``)."""
        self.start()
        self.state.done.wait()
        return self

    def _stage(self, text: str, fraction: float) -> None:
        self.state.stage, self.state.fraction = text, fraction
        log.info("demo: %s", text)

    def _load(self) -> None:
        try:
            cfg = self.config
            pipeline = WavBriVLPipeline.from_pretrained(
                cfg.resolved_checkpoint(), device=cfg.resolved_device(), index=cfg.part("index"),
                generator=cfg.part("generator"), generator_on_cpu=cfg.generator_on_cpu, strict=False,
                max_seconds=cfg.max_seconds, on_stage=self._stage)
            self._stage("warming up", 0.85)
            # Pay one-off costs (first torch call, the text tower, the label embeddings) before a person waits.
            pipeline.model.embed_audio((16000, (0.1 * np.random.default_rng(0).standard_normal(16000)).astype(np.float32)))
            pipeline.zero_shot_classifier(cfg.labels or None)
            if pipeline.index is not None and pipeline.index.count("image") >= 3:
                pipeline.gallery_map()  # computed once per bundle, before the first visitor's sound is placed on it
            self.pipeline, self.card, self.root = pipeline, pipeline.card, pipeline.model.root
            self._stage("ready", 1.0)
        except Exception as exc:  # noqa: BLE001 - shown on the page; the audio model is the one part we cannot lose
            self.state.error = str(exc) or type(exc).__name__
            self._stage("failed", 1.0)
            log.error("demo: could not load the model: %s", self.state.error)
        finally:
            self.state.done.set()

    def wait(self, progress: Any = None, lang: str = "en", timeout: float = 1800.0) -> WavBriVLPipeline:
        """Block until loaded, showing the loading stage in a progress bar; :class:`DemoError` if it failed."""
        self.start()
        deadline = time.monotonic() + timeout
        while not self.state.done.wait(0.2):
            if progress is not None:
                progress(self.state.fraction, desc=stage(self.state.stage, lang))
            if time.monotonic() > deadline:
                raise DemoError("still_loading", stage=stage(self.state.stage, lang))
        if self.state.error or self.pipeline is None:
            raise DemoError("not_loaded", error=self.state.error)
        return self.pipeline
