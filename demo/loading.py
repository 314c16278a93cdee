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

from wavbrivl.backbone import BackboneUnavailableError
from wavbrivl.bundle import BundleCard
from wavbrivl.hub import HubAssetError
from wavbrivl.pipeline import AUTO, WavBriVLPipeline, load_card
from wavbrivl.real import RealChoice, prepare_real

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
        #: Real mode (``config.real``): what was chosen, and the one line said when the offline bundle is served instead.
        self.real: RealChoice | None = None
        self.notice: str | None = None

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
            checkpoint, generator = cfg.resolved_checkpoint(), cfg.part("generator")
            if cfg.real:
                checkpoint, generator = self._choose_real()
            try:
                pipeline = self._open(checkpoint, generator)
            except (HubAssetError, BackboneUnavailableError) as exc:
                # A real part found missing only while loading (a hub bundle's card names it; its backbone's weights):
                # the offline bundle needs none of them.
                if not cfg.real or checkpoint == cfg.offline_bundle() or "SHA-256" in str(exc):
                    raise
                self._say_offline(f"real mode {cfg.real} is off: {str(exc).split('. To fix:')[0]}. Serving the offline "
                                  f"bundle {cfg.offline_bundle()} instead (search, labels and pictures, nothing from the Hub).")
                pipeline = self._open(cfg.offline_bundle(), AUTO)
            if cfg.real and self.notice is None:
                gen = (pipeline.generator.source if pipeline.generator is not None
                       else f"off ({pipeline.problems.get('generator', 'none configured')})")
                log.info("demo: real mode %s: serving %s in %s; generator: %s", cfg.real, checkpoint, pipeline.backbone_id, gen)
            self.pipeline, self.card, self.root = pipeline, pipeline.card, pipeline.model.root
            self._stage("ready", 1.0)
        except Exception as exc:  # noqa: BLE001 - shown on the page; the audio model is the one part we cannot lose
            self.state.error = str(exc) or type(exc).__name__
            self._stage("failed", 1.0)
            log.error("demo: could not load the model: %s", self.state.error)
        finally:
            self.state.done.set()

    def _open(self, checkpoint: str, generator: str | None) -> WavBriVLPipeline:
        """The pipeline loaded and warmed up (the backbone is loaded lazily: warming up is when a missing one shows)."""
        cfg = self.config
        pipeline = WavBriVLPipeline.from_pretrained(
            checkpoint, device=cfg.resolved_device(), index=cfg.part("index"), generator=generator,
            generator_on_cpu=cfg.generator_on_cpu, generator_device=cfg.resolved_generator_device(), strict=False,
            max_seconds=cfg.max_seconds, on_stage=self._stage)
        self._stage("warming up", 0.85)
        # Pay one-off costs (first torch call, the text tower, the label embeddings) before a person waits.
        pipeline.model.embed_audio((16000, (0.1 * np.random.default_rng(0).standard_normal(16000)).astype(np.float32)))
        pipeline.zero_shot_classifier(cfg.labels or None)
        if pipeline.index is not None and pipeline.index.count("image") >= 3:
            pipeline.gallery_map()  # computed once per bundle, before the first visitor's sound is placed on it
        return pipeline

    def _choose_real(self) -> tuple[str, str | None]:
        """Real mode: the bundle to serve (a hub bundle, the kept retargeted one, built now at first boot, or the
        offline bundle with the reason) and its generator (:func:`wavbrivl.real.prepare_real`)."""
        cfg = self.config
        hub, generator = cfg.real_sources()
        source = Path(cfg.offline_bundle() if hub else cfg.resolved_checkpoint())
        choice = prepare_real(cfg.real, source=source, hub_bundle=hub, generator=generator, gpu=cfg.has_gpu(),
                              device=cfg.resolved_device(), stage=self._stage)
        self.real = choice
        if choice.notice:
            self._say_offline(choice.notice)
        return choice.checkpoint, choice.generator

    def _say_offline(self, line: str) -> None:
        self.notice = line
        log.warning("demo: %s", line)

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
