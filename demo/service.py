"""The demo's one stateful layer: the loaded model, index and generator, and the event handlers.

Why it is shaped like this:

* The UI (``demo/ui.py``) only wires components to these handlers, so every handler can be called and
  tested as a plain function, and the same functions are the named API endpoints (search, classify,
  generate) that ``gradio_client`` calls.
* Loading happens in a background thread that starts with the server: the page is served at once, the
  status panel says what is loading, and a handler called early waits with a progress bar instead of
  freezing the page. A part that fails to load (an index from another embedding space, a generator too
  big for the host) is switched off with its reason shown; the rest keeps serving.
* Problems a person will meet (silence, a 10-minute upload, an unreadable file, a missing generator)
  become ``gr.Error``/``gr.Warning`` messages that say what to do; the app keeps serving.
* The last few audio embeddings are cached, so a search, the zero-shot labels and a generation from the
  same recording embed it once.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import gradio as gr
import numpy as np
import soundfile as sf
import torch

from wavbrivl import AudioError, WavBriVL
from wavbrivl.images import load_image

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
STARTER_DIR = REPO_ROOT / "assets" / "starter"
DISABLED = {"none", "off", "false", "0", ""}

GENERIC_LABELS = (
    "a dog barking", "rain falling", "a person speaking", "music playing", "a car engine",
    "birds singing", "people clapping", "a siren", "footsteps", "water running",
)
MAX_LABELS = 64


# --------------------------------------------------------------------------------------------- config
@dataclass
class DemoConfig:
    """What to serve. ``None`` means "the default": the starter bundle and the folders inside it.

    ``index`` / ``generator``: a path, ``"none"`` to switch the feature off, or ``None`` for
    ``<checkpoint>/index`` / ``<checkpoint>/generator`` when present.
    """

    checkpoint: str | None = None
    index: str | None = None
    generator: str | None = None
    device: str | None = None
    max_seconds: float = 30.0
    top_k: int = 8
    labels: list[str] | None = None
    generator_on_cpu: bool = False

    @classmethod
    def from_env(cls, **overrides: Any) -> "DemoConfig":
        """Defaults from ``WAVBRIVL_*`` environment variables; explicit (non-None) overrides win."""
        env = {
            "checkpoint": os.environ.get("WAVBRIVL_CHECKPOINT"),
            "index": os.environ.get("WAVBRIVL_INDEX"),
            "generator": os.environ.get("WAVBRIVL_GENERATOR"),
            "device": os.environ.get("WAVBRIVL_DEVICE"),
        }
        if os.environ.get("WAVBRIVL_MAX_SECONDS"):
            env["max_seconds"] = float(os.environ["WAVBRIVL_MAX_SECONDS"])
        env.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**{k: v for k, v in env.items() if v is not None})

    def resolved_checkpoint(self) -> str:
        if self.checkpoint:
            return self.checkpoint
        if (STARTER_DIR / "config.json").is_file():
            return str(STARTER_DIR)
        raise FileNotFoundError(
            f"no checkpoint given and the offline starter bundle ({STARTER_DIR}) is not there: pass "
            "--checkpoint PATH_OR_HUB_ID (or set WAVBRIVL_CHECKPOINT)"
        )

    def resolved_device(self) -> str:
        if self.device:
            return self.device
        return "cuda" if torch.cuda.is_available() else "cpu"


def default_labels(starter: bool) -> list[str]:
    """The starter world's own captions (so its zero-shot bar chart means something), else everyday sounds."""
    if starter:
        from wavbrivl.world import all_combinations, caption_for

        return [caption_for(c, s, z) for c, s, z in all_combinations()]
    return list(GENERIC_LABELS)


def parse_labels(text: str | list[str] | None) -> list[str]:
    """One label per line or comma-separated; blanks and repeats dropped, order kept."""
    if text is None:
        return []
    parts = text if isinstance(text, list) else text.replace(",", "\n").splitlines()
    seen: dict[str, None] = {}
    for part in parts:
        label = str(part).strip()
        if label:
            seen.setdefault(label, None)
    return list(seen)


# --------------------------------------------------------------------------------------------- audio input
def _audio_seconds_from_file(path: Path) -> float | None:
    """Duration from the header only (libsndfile, then FFmpeg via PyAV); None when neither can read it."""
    try:
        info = sf.info(str(path))
        return info.frames / info.samplerate if info.samplerate else None
    except Exception:  # noqa: BLE001 - libsndfile raises several types for "not my format"
        pass
    try:
        import av

        with av.open(str(path)) as container:
            if not container.streams.audio:
                return None
            if container.duration is not None:
                return container.duration / 1_000_000  # av.time_base is microseconds
            stream = container.streams.audio[0]
            if stream.duration is not None and stream.time_base is not None:
                return float(stream.duration * stream.time_base)
            return float("nan")  # a stream without duration metadata: decoded with a cap below
    except Exception:  # noqa: BLE001 - FFmpeg errors come in many classes
        return None


def _decode_with_av(path: Path, max_seconds: float, sample_rate: int = 16000) -> tuple[int, np.ndarray]:
    """Formats libsndfile cannot read (m4a, webm, ...) decoded by PyAV, stopping past ``max_seconds``."""
    import av

    limit = int(max_seconds * sample_rate) + 1
    chunks, total = [], 0
    with av.open(str(path)) as container:
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
        for frame in container.decode(audio=0):
            for out in resampler.resample(frame):
                chunk = out.to_ndarray().reshape(-1)
                chunks.append(chunk)
                total += chunk.size
            if total > limit:
                raise gr.Error(too_long_message(path.name, None, max_seconds), title="Sound too long")
    return sample_rate, (np.concatenate(chunks) if chunks else np.zeros(0, np.float32))


def too_long_message(name: str, seconds: float | None, max_seconds: float) -> str:
    length = f"{seconds:.0f} s long" if seconds is not None else "too long"
    return f"{name} is {length}; this demo takes sounds up to {max_seconds:.0f} s. Trim it (or record a short clip) and try again."


UNSUPPORTED = "{name} is not an audio file this demo can read. Use WAV, FLAC, OGG, MP3, M4A or WEBM audio."


def prepare_audio(audio: Any, max_seconds: float) -> Any:
    """Check Gradio's audio value before any decoding; return what ``WavBriVL.embed_audio`` accepts.

    Duration is read from the file header, so a 10-minute upload is refused without decoding it.
    """
    if isinstance(audio, dict):  # gradio_client / FileData shape
        audio = audio.get("path") or audio.get("name")
    if isinstance(audio, (str, os.PathLike)):
        path = Path(audio)
        if not path.is_file():
            raise gr.Error(f"{path.name}: the uploaded file is missing; upload it again.", title="No audio")
        if path.stat().st_size == 0:
            raise gr.Error(f"{path.name} is empty (0 bytes). If you recorded, check that the microphone is on.", title="No audio")
        seconds = _audio_seconds_from_file(path)
        if seconds is None:
            raise gr.Error(UNSUPPORTED.format(name=path.name), title="Unsupported file")
        if seconds == seconds and seconds > max_seconds:  # NaN (unknown length) is capped while decoding
            raise gr.Error(too_long_message(path.name, seconds, max_seconds), title="Sound too long")
        try:
            sf.info(str(path))
            return str(path)
        except Exception:  # noqa: BLE001 - not a libsndfile format: decode with FFmpeg (PyAV)
            try:
                return _decode_with_av(path, max_seconds)
            except gr.Error:
                raise
            except Exception as exc:  # noqa: BLE001
                raise gr.Error(f"{UNSUPPORTED.format(name=path.name)} ({type(exc).__name__})", title="Unsupported file") from None
    if isinstance(audio, (tuple, list)) and len(audio) == 2:
        rate, data = int(audio[0]), np.asarray(audio[1])
        if rate <= 0:
            raise gr.Error(f"the recording has an invalid sample rate ({rate} Hz)", title="Bad audio")
        seconds = data.shape[0] / rate if data.ndim else 0.0
        if seconds > max_seconds:
            raise gr.Error(too_long_message("the recording", seconds, max_seconds), title="Sound too long")
        return (rate, data)
    raise gr.Error(f"unexpected audio value of type {type(audio).__name__}", title="Bad audio")


def _audio_key(audio: Any) -> str:
    """Cache key: a file by path, size and mtime; an array by its bytes (a 3 s clip hashes in ~0.1 ms)."""
    if isinstance(audio, str):
        st = os.stat(audio)
        return f"file:{audio}:{st.st_size}:{st.st_mtime_ns}"
    rate, data = audio
    digest = hashlib.blake2b(np.ascontiguousarray(data).tobytes(), digest_size=16).hexdigest()
    return f"array:{rate}:{data.dtype}:{data.shape}:{digest}"


# --------------------------------------------------------------------------------------------- service
@dataclass
class LoadState:
    stage: str = "not started"
    fraction: float = 0.0
    done: threading.Event = field(default_factory=threading.Event)
    error: str | None = None


class DemoService:
    """Holds what the demo serves and the handlers the UI and the API call."""

    def __init__(self, config: DemoConfig | None = None) -> None:
        self.config = config or DemoConfig()
        self.model: WavBriVL | None = None
        self.index: Any = None
        self.generator: Any = None
        self.checkpoint_name = ""
        self.is_starter = False
        self.index_problem: str | None = None
        self.generator_problem: str | None = None
        self.labels: list[str] = list(self.config.labels or [])
        self.state = LoadState()
        self._thread: threading.Thread | None = None
        self._cache: OrderedDict[str, torch.Tensor] = OrderedDict()
        self._text_cache: dict[str, torch.Tensor] = {}
        self._lock = threading.Lock()
        self.served_roots: list[Path] = []  # set by allowed_paths(); empty = not launched through app.py

    # ------------------------------------------------------------------ loading
    def start(self) -> "DemoService":
        """Begin loading in the background (idempotent); the server can start serving meanwhile."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._load_all, name="wavbrivl-demo-load", daemon=True)
            self._thread.start()
        return self

    def load(self) -> "DemoService":
        """Load in the calling thread (tests, benchmarks, and ``app.py --preload``)."""
        self.start()
        self.state.done.wait()
        return self

    def _stage(self, text: str, fraction: float) -> None:
        self.state.stage, self.state.fraction = text, fraction
        log.info("demo: %s", text)

    def _load_all(self) -> None:
        try:
            self._load_model()
            self._load_index()
            self._load_generator()
            self._warm_up()
            self._stage("ready", 1.0)
        except Exception as exc:  # noqa: BLE001 - shown in the UI; the model is the one part we cannot lose
            self.state.error = f"{type(exc).__name__}: {exc}"
            self._stage(f"failed: {self.state.error}", 1.0)
            log.error("demo: could not load the model: %s", self.state.error)
        finally:
            self.state.done.set()

    def _load_model(self) -> None:
        name = self.config.resolved_checkpoint()
        self.checkpoint_name = name
        self._stage(f"loading checkpoint {name}", 0.1)
        self.model = WavBriVL.from_pretrained(name, device=self.config.resolved_device())
        root = self.model.root
        self.is_starter = bool(
            self.model.config.preset == "starter"
            or "starter" in str(self.model.config.info.get("bundle", ""))
            or (root is not None and root.resolve() == STARTER_DIR.resolve())
        )
        if not self.labels:
            self.labels = default_labels(self.is_starter)

    def _default_part(self, value: str | None, folder: str) -> Path | None:
        if value is not None and value.strip().lower() in DISABLED:
            return None
        if value:
            return Path(value)
        root = self.model.root if self.model is not None else None
        return root / folder if root is not None and (root / folder).exists() else None

    def _load_index(self) -> None:
        path = self._default_part(self.config.index, "index")
        if path is None:
            self.index_problem = "no gallery index (pass --index PATH to search images and captions)"
            return
        self._stage(f"loading gallery index {path}", 0.4)
        from wavbrivl.index import GalleryIndex

        try:
            index = GalleryIndex.load(path)
            index.check_compatible(self.model)
        except Exception as exc:  # noqa: BLE001 - any index problem only disables search
            self.index_problem = f"search is off: {exc}"
            log.warning("demo: %s", self.index_problem)
            return
        self.index = index

    def _load_generator(self) -> None:
        path = self._default_part(self.config.generator, "generator")
        if path is None:
            self.generator_problem = "image generation is off (no generator; pass --generator PATH_OR_HUB_ID)"
            return
        device = self.config.resolved_device()
        if device == "cpu" and not self.config.generator_on_cpu and _needs_gpu(path):
            self.generator_problem = (
                f"image generation is off: {path} is a Stable unCLIP pipeline, which needs a GPU (minutes per image "
                "and ~10 GB of memory on a CPU). Search and labels work. Run on a GPU host, or pass --generator-on-cpu to try anyway."
            )
            log.warning("demo: %s", self.generator_problem)
            return
        self._stage(f"loading image generator {path}", 0.6)
        try:
            from wavbrivl.generate import Generator

            generator = Generator.from_pretrained(str(path), device=device)
            assert self.model is not None
            generator.check_space(self.model.backbone_id, self.model.embed_dim)
        except Exception as exc:  # noqa: BLE001 - a generator that cannot load only disables generation
            self.generator_problem = f"image generation is off: {exc}"
            log.warning("demo: %s", self.generator_problem)
            return
        self.generator = generator

    def _warm_up(self) -> None:
        """Pay one-off costs (first torch call, the text tower, label embeddings) before a person waits."""
        self._stage("warming up", 0.85)
        assert self.model is not None
        rng = np.random.default_rng(0)
        self.model.embed_audio((16000, (0.1 * rng.standard_normal(16000)).astype(np.float32)))
        self._embed_labels(self.labels)

    def wait_ready(self, progress: Any = None, timeout: float = 1800.0) -> WavBriVL:
        """Block until loaded, showing the loading stage in a progress bar; raise ``gr.Error`` if it failed."""
        self.start()
        deadline = time.monotonic() + timeout
        while not self.state.done.wait(0.2):
            if progress is not None:
                progress(self.state.fraction, desc=self.state.stage)
            if time.monotonic() > deadline:
                raise gr.Error(f"the model is still loading ({self.state.stage}); try again in a minute")
        if self.state.error or self.model is None:
            raise gr.Error(f"the model could not be loaded: {self.state.error}", title="Model not loaded")
        return self.model

    # ------------------------------------------------------------------ embeddings
    def embed(self, audio: Any, progress: Any = None) -> torch.Tensor:
        """Gradio audio value -> unit embedding ``[D]`` (cached per recording); readable errors."""
        model = self.wait_ready(progress)
        source = prepare_audio(audio, self.config.max_seconds)
        key = _audio_key(source)
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        try:
            emb = model.embed_audio(source)[0]
        except AudioError as exc:
            raise gr.Error(_friendly_audio_error(str(exc)), title="Cannot use this sound") from None
        with self._lock:
            self._cache[key] = emb
            while len(self._cache) > 16:
                self._cache.popitem(last=False)
        return emb

    def _embed_labels(self, labels: list[str]) -> torch.Tensor:
        assert self.model is not None
        missing = [label for label in labels if label not in self._text_cache]
        if missing:
            emb = self.model.embed_text(missing)
            with self._lock:
                self._text_cache.update(zip(missing, emb))
                if len(self._text_cache) > 4096:  # labels are typed by people: bound the memory anyway
                    self._text_cache = dict(list(self._text_cache.items())[-2048:])
        return torch.stack([self._text_cache[label] for label in labels])

    # ------------------------------------------------------------------ handlers
    def search(self, audio: Any, k: float = 8, progress: gr.Progress = gr.Progress()) -> tuple[list, list, str]:
        """Nearest gallery images (with captions and scores) and nearest captions for a sound."""
        if audio is None:
            return [], [], ""
        emb = self.embed(audio, progress)
        if self.index is None:
            gr.Warning(self.index_problem or "search is off", duration=5)
            return [], [], self.index_problem or ""
        k = max(1, min(int(k), 50))
        t0 = time.perf_counter()
        images = self.index.search(emb, k, kind="image")[0] if self.index.count("image") else []
        texts = self.index.search(emb, k, kind="text")[0] if self.index.count("text") else []
        ms = (time.perf_counter() - t0) * 1000
        gallery = [(self._gallery_image(r.path), f"{r.score:.3f} · {r.caption or Path(r.path).stem}") for r in images if r.path]
        captions = [[round(r.score, 4), r.caption] for r in texts]
        note = f"{len(gallery)} images and {len(captions)} captions from an index of {len(self.index)} items ({ms:.0f} ms)"
        return gallery, captions, note

    def classify(self, audio: Any, labels: str | list[str] | None = None, progress: gr.Progress = gr.Progress()) -> dict[str, float]:
        """Zero-shot label probabilities: softmax over the backbone's scaled cosine similarities."""
        if audio is None:
            return {}
        names = parse_labels(labels) if labels is not None else list(self.labels)
        if not names:
            raise gr.Error("Type at least one label (one per line or separated by commas).", title="No labels")
        if len(names) > MAX_LABELS:
            gr.Warning(f"only the first {MAX_LABELS} labels are used", duration=5)
            names = names[:MAX_LABELS]
        emb = self.embed(audio, progress)
        text = self._embed_labels(names)
        scale = _logit_scale(self.model)
        probs = torch.softmax(scale * (text @ emb), dim=0)
        return {name: float(p) for name, p in zip(names, probs)}

    def generate(
        self,
        audio: Any,
        prompt: str = "",
        mix: float = 0.0,
        seed: float = 0,
        steps: float = 25,
        noise_level: float = 0,
        guidance: float = 0.0,
        progress: gr.Progress = gr.Progress(),
    ) -> Any:
        """One image from the sound's embedding, optionally mixed with a text prompt's (``mix`` = text weight).

        ``guidance`` 0 means the backend's own default; the prompt also reaches backends that take text.
        """
        model = self.wait_ready(progress)
        if self.generator is None:
            raise gr.Error(self.generator_problem or "image generation is off", title="No image generator")
        prompt = (prompt or "").strip()
        mix = float(min(max(mix, 0.0), 1.0))
        if audio is None and not (prompt and mix > 0):
            raise gr.Error("Record or upload a sound first (or type a prompt and move the mix slider to text).", title="No audio")
        from wavbrivl.generate import blend_embeddings

        parts: dict[str, tuple[torch.Tensor, float]] = {}
        if audio is not None:
            parts["audio"] = (self.embed(audio, progress), 1.0 - mix if prompt else 1.0)
        if prompt and mix > 0:
            parts["text"] = (self._embed_labels([prompt])[0], mix)
        emb = blend_embeddings(parts)
        steps = int(min(max(steps, 1), 100))
        progress((0, steps), desc="generating", unit="steps")
        images = self.generator.generate(
            emb,
            space_id=model.backbone_id,
            seed=int(seed),
            steps=steps,
            guidance_scale=float(guidance) if guidance and guidance > 0 else None,
            prompt=prompt or None,
            noise_level=int(min(max(noise_level, 0), 999)),
            progress=lambda i, n: progress((i, n), desc="generating", unit="steps"),
        )
        return images[0]

    # ------------------------------------------------------------------ files the server may send
    def allowed_paths(self) -> list[str]:
        """Folders Gradio may serve gallery images from (``launch(allowed_paths=...)``); nothing else.

        Before the index has loaded only its folder is known; :meth:`search` sends images found elsewhere
        as pixels instead of paths, so results always show.
        """
        roots: set[Path] = set()
        if self.index is not None:
            roots.add(Path(self.index.root).resolve())
            parents = {(Path(self.index.root) / r["path"]).resolve().parent
                       for r in self.index.meta if r.get("kind") == "image" and r.get("path")}
            if len(parents) > 32:
                parents = {Path(os.path.commonpath([str(p) for p in parents]))}
            roots |= parents
        else:
            guess = self.config.index
            if guess is None:
                ckpt = self.config.checkpoint or (str(STARTER_DIR) if STARTER_DIR.is_dir() else None)
                guess = str(Path(ckpt) / "index") if ckpt and Path(ckpt).is_dir() else None
            if guess and guess.strip().lower() not in DISABLED and Path(guess).is_dir():
                roots.add(Path(guess).resolve())
        self.served_roots = sorted(roots) + [Path.cwd().resolve(), Path(tempfile.gettempdir()).resolve()]
        return [str(r) for r in sorted(roots)]

    def _gallery_image(self, path: str) -> Any:
        """A path Gradio is allowed to serve, else the decoded image (sent as pixels)."""
        if not self.served_roots or any(Path(path).is_relative_to(root) for root in self.served_roots):
            return path
        return load_image(path)

    # ------------------------------------------------------------------ description
    def describe(self) -> str:
        """The two-line 'what is this model' panel (markdown)."""
        if not self.state.done.is_set():
            return f"⏳ Loading: {self.state.stage}…"
        if self.state.error or self.model is None:
            return f"❌ The model could not be loaded: {self.state.error}"
        m = self.model
        index = (
            f"index of {self.index.count('image')} images and {self.index.count('text')} captions"
            if self.index is not None else (self.index_problem or "no index")
        )
        gen = "image generator ready" if self.generator is not None else (self.generator_problem or "no generator")
        lines = [
            f"**Checkpoint** `{self.checkpoint_name}` · **embedding space** `{m.backbone_id}` ({m.embed_dim}-d) · {index} · {gen}.",
            "An audio encoder trained into a frozen open_clip image–text space (WavBriVL): a sound is compared with "
            "pictures and words by one cosine similarity.",
        ]
        if self.is_starter:
            lines.append(
                "🧪 **This is the offline starter world**: a small model trained on synthetic coloured shapes "
                "(pitch → colour: low hum = red, whistle = yellow; steady tone = circle, beeps = square, rising glide = "
                "triangle; short = small, long = large). To use a real checkpoint: "
                "`python app.py --checkpoint PATH_OR_HUB_ID`."
            )
        return "\n\n".join(lines)


def _needs_gpu(path: Path) -> bool:
    """Stable unCLIP (a 2.1 GB UNet at 768 px) is unusable on a CPU; the starter's small pipeline is fine."""
    from wavbrivl.generate import UNCLIP_MODEL_ID

    if str(path) == UNCLIP_MODEL_ID:
        return True
    index = path / "model_index.json"
    if index.is_file():
        try:
            return "UnCLIP" in str(json.loads(index.read_text()).get("_class_name", ""))
        except json.JSONDecodeError:
            return False
    return False


def _logit_scale(model: WavBriVL | None) -> float:
    """The backbone's learned temperature (about 100 for trained CLIP models), as zero-shot CLIP uses it."""
    scale = getattr(getattr(model.backbone, "model", None), "logit_scale", None) if model is not None else None
    if scale is None:
        return 100.0
    return float(torch.as_tensor(scale).float().exp().clamp(max=100.0))


def _friendly_audio_error(message: str) -> str:
    """AudioError names the temporary upload path; people need the problem and what to do."""
    if "silent" in message:
        return "The sound is silent. Check that the right microphone is selected and not muted, then record again."
    if "no audio samples" in message or "empty" in message:
        return "The recording holds no audio. Record for at least half a second."
    if "cannot decode" in message or "unsupported" in message:
        return UNSUPPORTED.format(name="The file")
    return message


def on_gpu(fn: Callable, duration: int = 120) -> Callable:
    """``spaces.GPU`` (Hugging Face ZeroGPU) when the ``spaces`` package is there; the function itself otherwise."""
    try:
        import spaces  # type: ignore[import-not-found]
    except ImportError:
        return fn
    return spaces.GPU(duration=duration)(fn)
