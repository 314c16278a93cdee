"""``WavBriVLPipeline``: the audio model with what a product puts around it, composed once.

A pipeline holds the audio model (:class:`~wavbrivl.model.WavBriVL`), an optional gallery index, an optional
image generator and the bundle's card (:class:`~wavbrivl.bundle.BundleCard`: labels, templates, examples,
generator defaults), like a diffusers pipeline holds its components. Everything that combines them lives
here and nowhere else: zero-shot scoring (one implementation, so the demo, ``wavbrivl eval`` and the
evaluation code agree on every clip), search, and how a sound and a prompt become one condition for the
generator. The demo and the command line only call it.

A bundle folder is a checkpoint plus, when present, ``index/``, ``generator/`` and ``bundle.json``; a plain
checkpoint folder or a hub id loads too, with default labels and templates.
"""
from __future__ import annotations

import functools
import hashlib
import logging
import os
import shutil
import threading
from collections import OrderedDict
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable, Sequence, Union

import numpy as np
import torch
from PIL import Image

from .audio import AudioInput
from .bundle import BUNDLE_FILE, BundleCard
from .embedding_map import EmbeddingMap
from .generate import Generator, ProgressFn, backend_for, blend_embeddings
from .hub import GeneratorSource, HubParts, generator_source, known_sources, resolve_parts
from .index import GalleryIndex, SearchResult
from .model import WEIGHTS_NAME, WavBriVL, resolve_checkpoint
from .pairs import PAIRS_DIR, TrainingPairs, copy_pairs, find_pairs
from .zeroshot import ZeroShotClassifier

log = logging.getLogger(__name__)

AUTO = "auto"
INDEX_DIR = "index"
GENERATOR_DIR = "generator"
StageFn = Callable[[str, float], None]


class FeatureUnavailable(RuntimeError):
    """Search or generation was asked of a pipeline that has no index or generator; the message says why."""


@dataclass(frozen=True)
class SoundEmbedding:
    """A sound this pipeline has already embedded (its ``[D]`` unit vector). Every method that takes a sound
    takes one, so follow-up requests keep working after the audio itself is gone (the demo deletes visitors'
    recordings as soon as they are embedded)."""

    vector: torch.Tensor


#: What the pipeline's methods take as a sound: any audio input, or a sound it has already embedded.
Sound = Union[AudioInput, SoundEmbedding]


@dataclass
class SearchHits:
    images: list[SearchResult]
    captions: list[SearchResult]
    index_size: int


class WavBriVLPipeline:
    """Audio model + optional gallery index + optional generator + the bundle's defaults.

    ``problems`` maps a part ("index", "generator", "card") to why it is off, when the pipeline was loaded
    with ``strict=False``: a damaged or mismatched part then switches that feature off instead of failing.
    """

    def __init__(
        self,
        model: WavBriVL,
        *,
        index: GalleryIndex | None = None,
        generator: Generator | None = None,
        card: BundleCard | None = None,
        max_seconds: float | None = None,
        cache_size: int = 16,
    ) -> None:
        if index is not None:
            index.check_compatible(model)
        if generator is not None:
            generator.check_space(model.backbone_id, model.embed_dim)
        self.model = model
        self.index = index
        self.generator = generator
        self.card = card or BundleCard.default(name=_display_name(model.root, model.config.preset or ""), folder=model.root)
        self.max_seconds = max_seconds
        self.problems: dict[str, str] = {}
        self._cache_size = cache_size
        self._audio_cache: OrderedDict[str, torch.Tensor] = OrderedDict()
        self._text_cache: OrderedDict[str, torch.Tensor] = OrderedDict()
        self._classifiers: OrderedDict[tuple, ZeroShotClassifier] = OrderedDict()
        self._map: EmbeddingMap | None = None
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ loading and saving
    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | os.PathLike,
        *,
        device: str | torch.device | None = None,
        index: str | os.PathLike | None = AUTO,
        generator: str | os.PathLike | None = AUTO,
        generator_on_cpu: bool = False,
        generator_device: str | None = None,
        strict: bool = True,
        max_seconds: float | None = None,
        revision: str | None = None,
        local_files_only: bool | None = None,
        token: str | None = None,
        on_stage: StageFn | None = None,
    ) -> "WavBriVLPipeline":
        """Load a bundle folder or hub repo: the checkpoint, and its ``index/``, ``generator/`` and card.

        ``index`` / ``generator``: ``"auto"`` takes the bundle's own folder when there is one (for the generator,
        else the first of the card's ``hub.generators`` that resolves), a path or hub id takes that, a source
        name from ``wavbrivl/generators.json`` (``ip-adapter-sd15-lcm`` ...) builds that generator from hub parts,
        None leaves the part out. Parts the card names on the Hub (:class:`~wavbrivl.hub.HubParts`) are fetched
        into the Hugging Face cache and checked first; what is missing is named in one message. With ``strict=False``
        a part that cannot be used is left out and its reason recorded in ``problems`` (the demo keeps serving what
        works); the audio model itself must load either way. A generator that needs a GPU is not loaded on a CPU
        unless ``generator_on_cpu``.
        ``generator_device``: where the generator goes when not ``device`` (ZeroGPU: the audio model answers
        searches on the CPU while the generator is placed on ``cuda`` at start-up, as ZeroGPU asks).
        """
        stage = on_stage or (lambda text, fraction: None)
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        stage("loading the audio model", 0.1)
        root = resolve_checkpoint(name_or_path, revision=revision, local_files_only=local_files_only, token=token)
        problems: dict[str, str] = {}

        def attempt(part: str, load: Callable[[], Any]) -> Any:
            try:
                return load()
            except Exception as exc:  # noqa: BLE001 - with strict=False any failure only switches the part off
                if strict:
                    raise
                problems[part] = str(exc)
                log.warning("%s is off: %s", part, exc)
                return None

        card = attempt("card", lambda: load_card(root, str(name_or_path)))
        card = card or BundleCard.default(name=_display_name(root, str(name_or_path)), folder=root)
        hub_source = None
        if card.hub is not None:
            stage("checking the parts the bundle names on the Hugging Face Hub", 0.15)
            wanted = card.hub if generator == AUTO and not (root / GENERATOR_DIR).exists() else replace(card.hub, generators=[])
            found, resolved, why = resolve_parts(wanted, local_files_only=local_files_only)
            hub_source = resolved.source if resolved else None
            if why:
                attempt("generator", lambda: _raise(FeatureUnavailable(why)))
        model = _load_model(root, device, found.get("wav2clip") if card.hub is not None else None)
        loaded_index = None
        index_path = _part_path(index, root / INDEX_DIR)
        if index_path is not None:
            stage("loading the gallery index", 0.4)
            loaded_index = attempt("index", lambda: _checked_index(index_path, model))
        loaded_generator = None
        gen_device = str(generator_device or device)
        generator_path = _part_path(generator, root / GENERATOR_DIR)
        named = hub_source or (_known_source(generator_path) if generator_path else None)
        if named is not None:
            stage(f"loading the image generator ({named.name}, from the Hugging Face cache)", 0.6)
            loaded_generator = attempt("generator", lambda: _source_generator(
                named, model, gen_device, allow_cpu=generator_on_cpu, local_files_only=local_files_only))
        elif generator_path is not None:
            stage("loading the image generator", 0.6)
            loaded_generator = attempt("generator", lambda: _checked_generator(
                generator_path, model, gen_device, allow_cpu=generator_on_cpu))
        if loaded_generator is not None:
            stage(f"image generator: {loaded_generator.source}", 0.7)
        pipe = cls(model, index=loaded_index, generator=loaded_generator, card=card, max_seconds=max_seconds)
        pipe.problems = problems
        return pipe

    def save_pretrained(self, path: str | os.PathLike, *, files_from: str | os.PathLike | None = None) -> Path:
        """Write the bundle folder (atomically): checkpoint, card, and the generator, index, example sounds and
        training pairs when present.

        The index is written self-contained (its pictures copied inside), so the folder can be moved or shared.
        ``files_from``: the bundle folder the example sounds and training pairs are copied from (default: the
        model's own; a retargeted model's checkpoint is new, while its examples and pairs are its source's).
        """
        source = Path(files_from) if files_from is not None else self.model.root
        extra: dict[str, Callable[[Path], Any]] = {BUNDLE_FILE: lambda p: self.card.save(p.parent)}
        if self.card.examples:
            if source is None:
                raise ValueError("the card lists example sounds but the model has no folder to copy them from")
            for folder in {Path(e.file).parts[0] for e in self.card.examples}:
                extra[folder] = functools.partial(self._copy_examples, source, folder)
        if self.generator is not None and self.generator.origin is None:
            extra[GENERATOR_DIR] = self.generator.save_pretrained
        elif self.generator is not None:  # hub parts: named in the card, not copied
            hub = self.card.hub or HubParts()
            if not any(generator_source(g).name == self.generator.origin.name for g in hub.generators):
                hub = replace(hub, generators=[asdict(self.generator.origin), *hub.generators])
            extra[BUNDLE_FILE] = lambda p: replace(self.card, hub=hub).save(p.parent)
        if self.index is not None:
            extra[INDEX_DIR] = self.index.export
        pairs = find_pairs(source)
        if pairs is not None:
            extra[PAIRS_DIR] = functools.partial(copy_pairs, pairs)
        return self.model.save_pretrained(path, extra_files=extra)

    def _copy_examples(self, source: Path, folder: str, dst: Path) -> None:
        for example in self.card.examples:
            if Path(example.file).parts[0] == folder:
                target = dst.parent / example.file
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source / example.file, target)

    def retarget(self, backbone: str, out: str | os.PathLike, *, trunk: str = "bundle", steps: int | None = None,
                 seed: int | None = None, cache_dir: str | os.PathLike | None = None, device: str | None = None,
                 progress: bool = True) -> "WavBriVLPipeline":
        """A bundle in ``out`` whose fresh audio head puts this bundle's sounds into the space of ``backbone`` (a preset,
        ``"bundle"`` for this bundle's own, or an open_clip ``hf-hub:``/``local-dir:`` spec), trained on this bundle's
        training pairs with its recipe; ``trunk``: ``"bundle"`` or ``"wav2clip:CKPT"``. See :mod:`wavbrivl.retarget`.
        Returns the new bundle, loaded (a part that cannot load here, e.g. a GPU generator on a CPU, is left off)."""
        from .retarget import retarget_bundle

        result = retarget_bundle(self, backbone, out, trunk=trunk, steps=steps, seed=seed, cache_dir=cache_dir,
                                 device=device, progress=progress)
        return WavBriVLPipeline.from_pretrained(result.bundle, device=device, strict=False)

    # ------------------------------------------------------------------ properties
    @property
    def name(self) -> str:
        """The bundle's display name (English); never a filesystem path."""
        return self.card.display_name()

    @property
    def backbone_id(self) -> str:
        return self.model.backbone_id

    @property
    def training_pairs(self) -> TrainingPairs | None:
        """The sounds and pictures the bundle's head was trained on (its ``pairs/``, :mod:`wavbrivl.pairs`), or None
        when the bundle carries none. ``TrainConfig(manifest=str(pipe.training_pairs.manifest), ...)`` trains on them."""
        return find_pairs(self.model.root)

    @property
    def embed_dim(self) -> int:
        return self.model.embed_dim

    # ------------------------------------------------------------------ embeddings
    def embed(self, audio: Sound, *, sample_rate: int | None = None) -> torch.Tensor:
        """One input -> its unit embedding ``[D]``; the last few are cached, so a search, the labels and a
        generation from the same recording embed it once. Raises :class:`~wavbrivl.audio.AudioError`."""
        if isinstance(audio, SoundEmbedding):
            return audio.vector
        key = _audio_key(audio, sample_rate)
        with self._lock:
            if key is not None and key in self._audio_cache:
                self._audio_cache.move_to_end(key)
                return self._audio_cache[key]
        emb = self.model.embed_audio(audio, sample_rate=sample_rate, max_seconds=self.max_seconds)[0]
        if key is not None:
            with self._lock:
                _remember(self._audio_cache, key, emb, self._cache_size)
        return emb

    def embed_text(self, texts: Sequence[str]) -> torch.Tensor:
        """Unit text embeddings ``[N, D]``; each distinct text goes through the frozen tower once."""
        texts = list(texts)
        if not texts:
            return torch.zeros(0, self.embed_dim)
        with self._lock:
            known = {t: self._text_cache[t] for t in texts if t in self._text_cache}
        missing = [t for t in dict.fromkeys(texts) if t not in known]
        if missing:
            known.update(zip(missing, self.model.embed_text(missing)))
            with self._lock:
                for text in missing:
                    _remember(self._text_cache, text, known[text], 4096)
        return torch.stack([known[t] for t in texts])

    # ------------------------------------------------------------------ classify
    def zero_shot_classifier(self, labels: Sequence[str] | None = None,
                             templates: Sequence[str] | None = None) -> ZeroShotClassifier:
        """The classifier for these labels and templates (default: the bundle's), built once and kept.

        Its probabilities use the bundle's calibrated scale when the card has one (fitted on held-out clips by
        the build, :mod:`wavbrivl.calibration`), else the backbone's own: the page, ``wavbrivl eval`` and the MCP
        tool all read them from here."""
        labels = list(self.card.labels if labels is None else labels)
        templates = list(self.card.templates if templates is None else templates)
        scale = self.logit_scale
        key = (tuple(labels), tuple(templates), scale)
        with self._lock:
            if key in self._classifiers:
                return self._classifiers[key]
        classifier = ZeroShotClassifier.from_labels(self.embed_text, labels, templates, scale)
        with self._lock:
            _remember(self._classifiers, key, classifier, 32)
        return classifier

    @property
    def logit_scale(self) -> float:
        """The scale zero-shot probabilities use: the card's calibrated one, else the backbone's own."""
        if self.card.calibration.logit_scale is not None:
            return float(self.card.calibration.logit_scale)
        return self.backbone_logit_scale

    @property
    def backbone_logit_scale(self) -> float:
        """The frozen backbone's own temperature (CLIP's ``logit_scale``): the uncalibrated scale."""
        backbone = getattr(self.model, "backbone", None)
        return float(getattr(backbone, "logit_scale", 100.0))

    def classify(self, audio: Sound, labels: Sequence[str] | None = None, templates: Sequence[str] | None = None,
                 *, sample_rate: int | None = None) -> dict[str, float]:
        """Zero-shot probabilities per label, most likely first."""
        classifier = self.zero_shot_classifier(labels, templates)
        probs = classifier.probabilities(self.embed(audio, sample_rate=sample_rate))[0]
        order = torch.argsort(probs, descending=True).tolist()
        return {classifier.labels[i]: float(probs[i]) for i in order}

    # ------------------------------------------------------------------ search
    def search(self, audio: Sound, k: int = 8, *, kinds: Sequence[str] = ("image", "text"), backend: str = "auto",
               sample_rate: int | None = None) -> SearchHits:
        """The ``k`` nearest gallery pictures and captions to a sound (``backend``: see ``GalleryIndex.search``)."""
        if self.index is None:
            raise FeatureUnavailable(self.problems.get("index") or "this bundle has no gallery index")
        emb = self.embed(audio, sample_rate=sample_rate)
        hits = {kind: self.index.search(emb, k, kind=kind, backend=backend)[0] if kind in kinds and self.index.count(kind) else []
                for kind in ("image", "text")}
        return SearchHits(hits["image"], hits["text"], len(self.index))

    def gallery_map(self) -> EmbeddingMap:
        """The gallery's pictures on a 2-D map (PCA of their embeddings, computed once; see
        :mod:`wavbrivl.embedding_map`). Place a sound on it with ``gallery_map().project(pipe.embed(sound))``."""
        if self.index is None or not self.index.count("image"):
            raise FeatureUnavailable(self.problems.get("index") or "this bundle has no gallery pictures to map")
        with self._lock:
            if self._map is None:
                emb, records = self.index.embeddings("image")
                labels = [r.get("caption") or Path(r.get("path") or "").stem for r in records]
                self._map = EmbeddingMap.fit(emb, labels)
            return self._map

    # ------------------------------------------------------------------ generate
    def condition(self, audio: Sound | None = None, prompt: str | None = None, mix: float = 0.0,
                  *, sample_rate: int | None = None) -> torch.Tensor:
        """The generator's condition ``[1, D]``: the sound's embedding, moved towards the prompt's by ``mix``.

        ``mix`` is the prompt's weight (0: the sound alone, 1: the prompt alone); without a prompt it is the
        sound alone whatever ``mix`` says.
        """
        prompt = (prompt or "").strip()
        mix = float(min(max(mix, 0.0), 1.0))
        use_text = bool(prompt) and mix > 0
        if audio is None and not use_text:
            raise ValueError("give a sound, or a prompt with mix > 0")
        parts: dict[str, tuple[torch.Tensor, float]] = {}
        if audio is not None:
            parts["audio"] = (self.embed(audio, sample_rate=sample_rate), 1.0 - mix if use_text else 1.0)
        if use_text:
            parts["text"] = (self.embed_text([prompt])[0], mix)
        return blend_embeddings(parts)

    def generate(
        self,
        audio: Sound | None = None,
        *,
        prompt: str | None = None,
        mix: float = 0.0,
        seed: int | None = None,
        steps: int | None = None,
        guidance: float | None = None,
        noise_level: int | None = None,
        sample_rate: int | None = None,
        progress: ProgressFn | None = None,
    ) -> Image.Image:
        """One picture from a sound (and optionally a prompt); unset settings take the bundle's defaults.

        The prompt is mixed into the condition by ``mix`` (see :meth:`condition`) and, for generators that
        read text (Stable unCLIP), also given to the generator as its text prompt.
        """
        emb = self.condition(audio, prompt, mix, sample_rate=sample_rate)
        return self.generate_from_embedding(emb, prompt=prompt, seed=seed, steps=steps, guidance=guidance,
                                            noise_level=noise_level, progress=progress)[0]

    def generate_from_embedding(self, embedding: torch.Tensor, *, prompt: str | None = None, seed: int | None = None,
                                steps: int | None = None, guidance: float | None = None, noise_level: int | None = None,
                                progress: ProgressFn | None = None) -> list[Image.Image]:
        """Pictures for unit embeddings ``[B, D]`` of this pipeline's space."""
        if self.generator is None:
            raise FeatureUnavailable(self.problems.get("generator") or "this bundle has no image generator")
        settings = self.card.generator
        return self.generator.generate(
            embedding, space_id=self.backbone_id,
            seed=settings.seed if seed is None else int(seed),
            steps=settings.steps if steps is None else int(steps),
            guidance_scale=settings.guidance if guidance is None else float(guidance),
            noise_level=settings.noise_level if noise_level is None else int(noise_level),
            prompt=(prompt or "").strip() or None, progress=progress,
        )


# ---------------------------------------------------------------------------------------------- helpers
def load_card(root: Path, given: str = "") -> BundleCard:
    """A bundle folder's card, or a default one (named after the folder or hub repo) when it has none."""
    if (root / BUNDLE_FILE).is_file():
        return BundleCard.load(root)
    return BundleCard.default(name=_display_name(root, given), folder=root)


def _display_name(root: Path | None, given: str) -> str:
    """A name to show for a checkpoint without a card: its folder's or repo's name, never a full path."""
    if given and given.count("/") == 1 and not Path(given).exists():
        return given  # a hub repo id
    return root.name if root is not None else (Path(given).name or "checkpoint")


def _part_path(value: str | os.PathLike | None, default: Path) -> str | None:
    if value is None:
        return None
    if str(value) == AUTO:
        return str(default) if default.exists() else None
    return str(value)


def _checked_index(path: str, model: WavBriVL) -> GalleryIndex:
    index = GalleryIndex.load(path)
    index.check_compatible(model)
    return index


def _raise(exc: Exception) -> None:
    raise exc


def _load_model(root: Path, device: str | torch.device, wav2clip: Path | None) -> WavBriVL:
    """The bundle's audio model; a bundle that names the published Wav2CLIP checkpoint instead of carrying its
    weights gets them converted from the (checked) download."""
    if wav2clip is not None and not (root / WEIGHTS_NAME).is_file():
        from .wav2clip import import_wav2clip

        model = import_wav2clip(wav2clip)
        model.root = root
        return model.to(device)
    return WavBriVL.from_pretrained(root, device=device)


def _known_source(value: str) -> GeneratorSource | None:
    """A generator named by a ``generators.json`` source name (not a folder or hub id), else None."""
    if Path(value).exists() or "/" in value:
        return None
    return known_sources().get(value)


def _source_generator(source: GeneratorSource, model: WavBriVL, device: str, *, allow_cpu: bool,
                      local_files_only: bool | None) -> Generator:
    if source.needs_gpu and device == "cpu" and not allow_cpu:
        raise FeatureUnavailable(
            f"generator {source.name!r} needs a GPU (minutes per image on a CPU; the few-step source ip-adapter-sd15-lcm "
            "does not); search and labels work. Run on a GPU host, or allow the generator on the CPU anyway."
        )
    generator = Generator.from_source(source, device=device, embed_norm=model.config.image_embed_norm,
                                      local_files_only=local_files_only)
    generator.check_space(model.backbone_id, model.embed_dim)
    return generator


def _checked_generator(path: str, model: WavBriVL, device: str, *, allow_cpu: bool) -> Generator:
    backend = backend_for(path)
    if backend.needs_gpu and device == "cpu" and not allow_cpu:
        raise FeatureUnavailable(
            f"{backend.pipeline_class} needs a GPU (minutes per image and ~10 GB of memory on a CPU); search and "
            "labels work. Run on a GPU host, or allow the generator on the CPU anyway."
        )
    generator = Generator.from_pretrained(path, device=device, embed_norm=model.config.image_embed_norm)
    generator.check_space(model.backbone_id, model.embed_dim)
    return generator


def _audio_key(audio: Any, sample_rate: int | None) -> str | None:
    """A cache key: a file by path, size and modification time; data by a digest of its bytes."""
    if isinstance(audio, (str, os.PathLike)):
        try:
            st = os.stat(audio)
        except OSError:
            return None  # let decoding report the problem
        return f"file:{os.path.abspath(audio)}:{st.st_size}:{st.st_mtime_ns}"
    if isinstance(audio, (bytes, bytearray)):
        return "bytes:" + hashlib.blake2b(bytes(audio), digest_size=16).hexdigest()
    if isinstance(audio, tuple) and len(audio) == 2:
        sample_rate, audio = audio
    if isinstance(audio, torch.Tensor):
        audio = audio.detach().cpu().numpy()
    if isinstance(audio, np.ndarray):
        digest = hashlib.blake2b(np.ascontiguousarray(audio).tobytes(), digest_size=16).hexdigest()
        return f"array:{sample_rate}:{audio.dtype}:{audio.shape}:{digest}"
    return None


def _remember(cache: OrderedDict, key: Any, value: Any, size: int) -> None:
    cache[key] = value
    cache.move_to_end(key)
    while len(cache) > size:
        cache.popitem(last=False)
