"""Efficient tuning: train only the audio encoder against the frozen image space.

The loop runs on Hugging Face Accelerate, so ``python -m wavbrivl train ...`` runs on a CPU and
``accelerate launch -m wavbrivl train ...`` on one or several GPUs with mixed precision, unchanged.

Why it is cheap: the frozen image tower runs once per image, ever (:mod:`wavbrivl.cache`); audio is
decoded once per run and kept in memory (up to ``max_clip_seconds`` per clip); each step is one small
CNN forward/backward on random windows. Every step draws its randomness (batch order, crops, gains,
masks, dropout) from ``(seed, step)``, so a run resumed from a checkpoint continues exactly as if it had
never stopped.
"""
from __future__ import annotations

import copy
import csv
import json
import logging
import math
import os
import time
from collections import Counter
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .augment import Augment, crop_batch
from .cache import image_targets, text_embeddings
from .data import Skipped, load_waveforms, read_manifest, select_split, split_names
from .losses import MemoryQueue, Temperature, clip_loss, info_nce
from .metrics import retrieval_metrics
from .model import WavBriVL

log = logging.getLogger(__name__)

STATE_NAME = "trainer_state.pt"
CONFIG_NAME = "train_config.json"
#: Options that say where a run reads and writes, not how it trains: left out of a recipe kept as data.
RUN_OPTIONS = ("manifest", "out", "init", "cache_dir", "resume", "stop_at_step", "device", "progress")


@dataclass
class TrainConfig:
    """Every option of a training run (also loadable from YAML/JSON; written next to each checkpoint)."""

    manifest: str
    out: str
    preset: str | None = "tiny"
    init: str | None = None  # start from this checkpoint (e.g. an imported Wav2CLIP one)
    train_head_only: bool = False  # freeze the CNN trunk, train the projection head (very small data)
    train_split: str = "train"  # several with commas: "train,val" trains on both once a recipe is chosen
    val_split: str = "val"  # "": no validation (the last step's checkpoint is the best)
    cache_dir: str | None = None  # default: OUT/cache
    loss: str = "moco"  # "moco" (InfoNCE + memory queue) or "clip" (in-batch symmetric)
    queue_size: int = 4096
    momentum: float | None = None  # e.g. 0.995: momentum audio encoder + symmetric image->audio term
    temperature: float = 0.07
    learnable_temperature: bool = False
    # Weight of a cosine term pulling each clip onto its own image embedding. InfoNCE only ranks, so audio
    # embeddings land in the right direction but off the image manifold; generators trained on image
    # embeddings need them on it.
    align_weight: float = 0.0
    # Share of each clip's target taken from its caption's text embedding (0: its pictures only, the paper's
    # recipe; 1: its caption only). Worth it when the text tower is the stronger half of the frozen space,
    # e.g. a real sentence encoder beside an image tower fitted on a few thousand drawings.
    caption_weight: float = 0.0
    epochs: int = 20
    max_steps: int | None = None
    stop_at_step: int | None = None  # stop early with a resumable checkpoint, keeping the full run's schedule
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_steps: int = 50
    grad_clip: float = 1.0
    spec_augment: bool = True
    freq_masks: int = 2
    freq_mask_width: int = 8
    time_masks: int = 2
    time_mask_width: int = 30
    gain_db: float = 6.0
    time_shift: bool = True
    speed: float = 0.0  # playback-rate change up to ±speed (pitch and tempo together)
    noise_snr_db: list[float] | None = None  # [low, high]: white noise at a random SNR in that range
    mix_prob: float = 0.0  # chance of another clip of the batch mixed underneath, mix_db below the clip
    mix_db: list[float] = field(default_factory=lambda: [-20.0, -10.0])
    eq_db: float = 0.0  # a random smooth equaliser of up to ±eq_db over log frequency (another recording chain)
    # Clips sharing a label are not each other's negatives (with labelled data: several takes of one concept).
    mask_same_label: bool = False
    # How evenly labels are drawn: each clip is drawn with weight count(its label) ** -balance_labels (0: every
    # clip equally often, the data's own mix; 1: every label equally often). With a few hundred takes of one
    # concept beside two of another, 0 teaches mostly the big ones.
    balance_labels: float = 0.0
    max_clip_seconds: float = 30.0
    val_every: int = 100
    checkpoint_every: int = 200
    log_every: int = 10
    seed: int = 0
    mixed_precision: str = "no"  # "no", "fp16", "bf16"
    device: str | None = None  # None: let Accelerate choose; "cpu" forces the CPU
    resume: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        if self.loss not in ("moco", "clip"):
            raise ValueError(f"loss must be 'moco' or 'clip', not {self.loss!r}")
        if self.align_weight < 0:
            raise ValueError(f"align_weight must be >= 0, not {self.align_weight}")
        if not 0.0 <= self.balance_labels <= 1.0:
            raise ValueError(f"balance_labels must be in [0, 1], not {self.balance_labels}")
        if not 0.0 <= self.caption_weight <= 1.0:
            raise ValueError(f"caption_weight must be in [0, 1], not {self.caption_weight}")
        if self.momentum is not None and not 0.0 < self.momentum < 1.0:
            raise ValueError("momentum must be in (0, 1)")
        if self.batch_size < 2:
            raise ValueError("batch_size must be at least 2 for a contrastive loss")
        for name in ("noise_snr_db", "mix_db"):  # "20,40" from the command line
            value = getattr(self, name)
            if isinstance(value, str):
                setattr(self, name, [float(x) for x in value.split(",")])
        self.augment()  # checks the ranges

    def augment(self) -> Augment:
        """The waveform augmentation these options describe."""
        return Augment(gain_db=self.gain_db, time_shift=self.time_shift, speed=self.speed,
                       noise_snr_db=tuple(self.noise_snr_db) if self.noise_snr_db else None,
                       mix_prob=self.mix_prob, mix_db=tuple(self.mix_db), eq_db=self.eq_db)

    def recipe(self) -> dict[str, Any]:
        """How this run trains, as data (every option but where it reads and writes): a bundle stores it beside
        its training pairs, so its head can be trained again the same way by code that does not know its world."""
        return {k: v for k, v in asdict(self).items() if k not in RUN_OPTIONS}

    @classmethod
    def from_recipe(cls, recipe: dict[str, Any], *, manifest: str | os.PathLike, out: str | os.PathLike,
                    source: str = "recipe", **run: Any) -> "TrainConfig":
        """A run of a stored :meth:`recipe` on ``manifest`` into ``out``; ``run`` (cache_dir, seed, max_steps ...)
        wins over the recipe where not None. An option this version does not know is an error naming ``source``."""
        unknown = set(recipe) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"{source}: unknown training option(s) in the recipe: {', '.join(sorted(unknown))}")
        options = {k: v for k, v in recipe.items() if k not in RUN_OPTIONS}
        options.update({k: v for k, v in run.items() if v is not None})
        return cls(manifest=str(manifest), out=str(out), **options)

    @classmethod
    def from_file(cls, path: str | os.PathLike, **overrides: Any) -> "TrainConfig":
        """Options from a YAML or JSON file; ``overrides`` (e.g. CLI flags) win."""
        import yaml

        data = yaml.safe_load(Path(path).read_text()) or {}
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"{path}: unknown training option(s): {', '.join(sorted(unknown))}")
        data.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**data)


@dataclass
class TrainResult:
    best_dir: Path
    last_dir: Path
    step: int
    best_metrics: dict[str, float]
    history: list[dict[str, float]] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    seconds: float = 0.0


def _step_seed(seed: int, step: int) -> int:
    return (seed * 1_000_003 + step * 7919 + 17) % (2**31 - 1)


def _spec_augment(features: torch.Tensor, cfg: TrainConfig, g: torch.Generator) -> torch.Tensor:
    """SpecAugment-style masks (set to 0, the per-sample mean of normalised features)."""
    b, _, n_freq, n_time = features.shape
    mask = torch.ones(b, 1, n_freq, n_time, device=features.device)
    for _ in range(cfg.freq_masks):
        width = torch.randint(0, cfg.freq_mask_width + 1, (b,), generator=g)
        start = (torch.rand(b, generator=g) * (n_freq - width).clamp_min(1)).long()
        f = torch.arange(n_freq)[None, :]
        mask *= (~((f >= start[:, None]) & (f < (start + width)[:, None]))).float()[:, None, :, None].to(mask)
    for _ in range(cfg.time_masks):
        width = torch.randint(0, cfg.time_mask_width + 1, (b,), generator=g)
        start = (torch.rand(b, generator=g) * (n_time - width).clamp_min(1)).long()
        t = torch.arange(n_time)[None, :]
        mask *= (~((t >= start[:, None]) & (t < (start + width)[:, None]))).float()[:, None, None, :].to(mask)
    return features * mask


def with_captions(model: WavBriVL, rows: list, targets: torch.Tensor, weight: float, manifest: str,
                  cache_dir: str | os.PathLike | None = None) -> torch.Tensor:
    """:func:`toward_text` with the rows' captions, once every row is known to have one."""
    if weight == 0.0:
        return targets
    missing = [str(r.audio) for r in rows if not r.caption]
    if missing:
        raise ValueError(f"{manifest}: caption_weight needs a caption on every row; {len(missing)} have none "
                         f"(first: {missing[0]})")
    return toward_text(model, targets, [r.caption for r in rows], weight, cache_dir)


def toward_text(model: WavBriVL, targets: torch.Tensor, texts: list[str], weight: float,
                cache_dir: str | os.PathLike | None = None) -> torch.Tensor:
    """Unit targets moved ``weight`` of the way to their texts' embeddings (unit norm again; the text tower runs
    once per distinct text, not at all at weight 0, and with ``cache_dir`` once ever). The one definition of where
    an embedding is meant to land, shared by the trainer and by a generator that must read the same points."""
    if weight == 0.0:
        return targets
    distinct = sorted(set(texts))
    vectors = text_embeddings(model, distinct, cache_dir) if cache_dir is not None else model.embed_text(distinct)
    embedded = dict(zip(distinct, vectors))
    return F.normalize((1.0 - weight) * targets + weight * torch.stack([embedded[t] for t in texts]), dim=-1)


def evaluate_retrieval(
    model: WavBriVL, waves: list[np.ndarray], targets: torch.Tensor, labels: list[str] | None = None
) -> dict[str, float]:
    """Audio -> image R@1/R@5/R@10 of each clip against the targets of all clips (the validation split).

    With a label on every clip, ``label_R@1``/``label_R@5`` also count any image of the same label as a hit:
    when many pictures show the same thing (several takes of one class), exact-pair R@1 mostly measures
    which near-duplicate wins, and ``label_R@1`` is the one to select checkpoints on.
    """
    result = model.embed_audio_many(waves, sample_rate=model.config.frontend.sample_rate, batch_size=64)
    if result.errors:
        raise ValueError(f"validation audio failed: {result.errors[0][1]}")
    sim = result.embeddings @ targets.T
    metrics = retrieval_metrics(sim, torch.eye(len(waves), dtype=torch.bool))
    if labels and all(labels):
        same = torch.tensor([[a == b for b in labels] for a in labels])
        by_label = retrieval_metrics(sim, same)
        metrics.update({"label_R@1": by_label["R@1"], "label_R@5": by_label["R@5"]})
    metrics["select"] = metrics.get("label_R@1", metrics["R@1"])
    return metrics


class Trainer:
    """One training run of the audio encoder against the frozen image space.

    Construction loads the data (audio decoded once, image targets from the cache), the model, the optimiser,
    the schedule and the queues; :meth:`resume` restores all of them from ``OUT/last``; :meth:`step` runs one
    optimisation step; :meth:`validate` measures retrieval on the validation split; :meth:`save` writes a
    resumable checkpoint; :meth:`fit` runs the whole schedule with logging and checkpointing.
    """

    def __init__(self, cfg: TrainConfig, model: WavBriVL | None = None) -> None:
        from accelerate import Accelerator
        from diffusers.optimization import get_cosine_schedule_with_warmup

        self.cfg = cfg
        self.out = Path(cfg.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.accelerator = accelerator = Accelerator(mixed_precision=cfg.mixed_precision, cpu=cfg.device == "cpu")
        torch.manual_seed(cfg.seed)
        if model is None:
            model = WavBriVL.from_pretrained(cfg.init) if cfg.init else WavBriVL.from_preset(cfg.preset or "tiny", seed=cfg.seed)
        self.model = model.to(accelerator.device)
        self._load_data()

        encoder = model.audio_encoder
        encoder.train()
        if cfg.train_head_only:
            for p in encoder.trunk.parameters():
                p.requires_grad_(False)
            encoder.trunk.eval()
        self.temperature = Temperature(cfg.temperature, cfg.learnable_temperature).to(accelerator.device)
        self.params = [p for p in encoder.parameters() if p.requires_grad] + list(self.temperature.parameters())
        optimizer = torch.optim.AdamW(self.params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.steps_per_epoch = max(1, math.ceil(len(self.waves) / cfg.batch_size))
        self.total_steps = cfg.max_steps or cfg.epochs * self.steps_per_epoch
        scheduler = get_cosine_schedule_with_warmup(optimizer, min(cfg.warmup_steps, self.total_steps // 5), self.total_steps)
        queue_size = min(cfg.queue_size, len(self.waves)) if cfg.loss == "moco" else 0
        dim = model.embed_dim
        self.image_queue = MemoryQueue(queue_size, dim).to(accelerator.device)
        self.audio_queue = MemoryQueue(queue_size, dim).to(accelerator.device) if cfg.momentum else None
        self.momentum_encoder = copy.deepcopy(encoder).requires_grad_(False) if cfg.momentum else None
        self.encoder, self.optimizer, self.scheduler = accelerator.prepare(encoder, optimizer, scheduler)
        self.step_count = 0
        self.best: dict[str, float] = {"select": -1.0}
        self.history: list[dict[str, float]] = []

    def _load_data(self) -> None:
        cfg, model = self.cfg, self.model
        rows = read_manifest(cfg.manifest)
        if not any(r.split for r in rows):
            train_rows, val_rows = rows, []
        else:
            trained, validated = split_names(cfg.train_split), split_names(cfg.val_split)
            if validated and (not trained or trained & validated):
                raise ValueError(f"{cfg.manifest}: split {cfg.val_split!r} would be trained on and also choose the checkpoint; "
                                 "set val_split to '' to train on it without validation")
            train_rows = select_split(rows, cfg.train_split)
            val_rows = select_split(rows, cfg.val_split) if validated else []
        if not train_rows:
            raise ValueError(f"{cfg.manifest}: no rows in split {cfg.train_split!r}")
        sr = model.config.frontend.sample_rate
        self.waves, train_rows, self.skipped = load_waveforms(train_rows, sr, cfg.max_clip_seconds)
        self.val_waves, val_rows, val_skipped = load_waveforms(val_rows, sr, cfg.max_clip_seconds)
        self.skipped += val_skipped
        if len(self.waves) < 2:
            raise ValueError(f"{cfg.manifest}: fewer than 2 usable training rows ({len(self.skipped)} skipped)")
        cache_dir = Path(cfg.cache_dir) if cfg.cache_dir else self.out / "cache"
        self.targets, mean_norm = image_targets(model, train_rows, cache_dir, progress=cfg.progress)
        self.targets = with_captions(model, train_rows, self.targets, cfg.caption_weight, cfg.manifest, cache_dir)
        self.val_targets = None
        if val_rows:
            self.val_targets = with_captions(model, val_rows, image_targets(model, val_rows, cache_dir)[0],
                                             cfg.caption_weight, cfg.manifest, cache_dir)
        self.val_labels = [r.label for r in val_rows]
        model.config.image_embed_norm = mean_norm
        self.augmentation = cfg.augment()
        uses_labels = [name for name in ("mask_same_label", "balance_labels") if getattr(cfg, name)]
        if uses_labels and not all(r.label for r in train_rows):
            raise ValueError(f"{cfg.manifest}: {' and '.join(uses_labels)} need{'s' if len(uses_labels) == 1 else ''} "
                             "a label on every training row")
        self.label_ids = None
        if cfg.mask_same_label:
            names = sorted({r.label for r in train_rows})
            self.label_ids = torch.tensor([names.index(r.label) for r in train_rows])
        self.draw_weights = None
        if cfg.balance_labels:
            counts = Counter(r.label for r in train_rows)
            self.draw_weights = torch.tensor([counts[r.label] ** -cfg.balance_labels for r in train_rows], dtype=torch.float64)

    # ------------------------------------------------------------------ checkpoints
    @property
    def last_dir(self) -> Path:
        return self.out / "last"

    @property
    def best_dir(self) -> Path:
        return self.out / "best"

    def resume(self) -> bool:
        """Restore weights, optimiser, schedule, queues and step from ``OUT/last``; False when there is none."""
        if not (self.last_dir / STATE_NAME).is_file():
            log.warning("--resume: no checkpoint in %s yet; starting from scratch", self.last_dir)
            return False
        state = torch.load(self.last_dir / STATE_NAME, map_location="cpu", weights_only=True)
        resumed = WavBriVL.from_pretrained(self.last_dir)
        self.accelerator.unwrap_model(self.encoder).load_state_dict(resumed.audio_encoder.state_dict())
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.image_queue.load_state_dict(state["image_queue"])
        self.temperature.load_state_dict(state["temperature"])
        if self.audio_queue is not None and self.momentum_encoder is not None:
            self.audio_queue.load_state_dict(state["audio_queue"])
            self.momentum_encoder.load_state_dict(state["momentum_encoder"])
        self.step_count, self.best = int(state["step"]), dict(state["best"])
        log.info("resumed from %s at step %d", self.last_dir, self.step_count)
        return True

    def save(self, path: Path, step: int) -> None:
        """A checkpoint folder with the resumable state and the resolved config, written atomically."""
        def write_state(p: Path) -> None:
            state = {
                "step": torch.tensor(step), "best": {k: float(v) for k, v in self.best.items()},
                "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "image_queue": self.image_queue.state_dict(), "temperature": self.temperature.state_dict(),
            }
            if self.audio_queue is not None and self.momentum_encoder is not None:
                state["audio_queue"] = self.audio_queue.state_dict()
                state["momentum_encoder"] = self.momentum_encoder.state_dict()
            torch.save(state, p)

        resolved = json.dumps(asdict(self.cfg), indent=2) + "\n"
        self.model.config.info = {**self.model.config.info, "trained_steps": step, "manifest": str(self.cfg.manifest),
                                  "val": self.best}
        if self.accelerator.is_main_process:
            self.model.save_pretrained(path, extra_files={STATE_NAME: write_state, CONFIG_NAME: lambda p: p.write_text(resolved)})

    def _train_mode(self) -> None:
        self.encoder.train()
        if self.cfg.train_head_only:
            self.accelerator.unwrap_model(self.encoder).trunk.eval()

    # ------------------------------------------------------------------ one step
    def _batch_indices(self, step: int) -> list[int]:
        """The clips of step ``step``: a fixed permutation per epoch, so a resumed run draws the same batches."""
        cfg, n = self.cfg, len(self.waves)
        epoch, offset = divmod(step, self.steps_per_epoch)
        g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + epoch)
        if self.draw_weights is None:
            perm = torch.randperm(n, generator=g).tolist()
        else:  # an epoch of n draws, with replacement, weighted by label
            perm = torch.multinomial(self.draw_weights, n, replacement=True, generator=g).tolist()
        idx = perm[offset * cfg.batch_size : (offset + 1) * cfg.batch_size]
        if len(idx) < 2:  # a last batch of one clip has no negatives: take it from the front of the epoch
            idx = perm[: cfg.batch_size]
        per_process = max(2, cfg.batch_size // self.accelerator.num_processes)
        return idx[self.accelerator.process_index :: self.accelerator.num_processes][:per_process]

    def step(self, step: int) -> tuple[float, float]:
        """One optimisation step; returns ``(loss, temperature)``. All randomness comes from ``(seed, step)``."""
        cfg, device = self.cfg, self.accelerator.device
        idx = self._batch_indices(step)
        g = torch.Generator().manual_seed(_step_seed(cfg.seed, step))
        torch.manual_seed(_step_seed(cfg.seed, step))  # dropout
        wave, valid = crop_batch(self.waves, idx, self.model.config.frontend.window_samples, g, self.augmentation)
        ids = (self.label_ids[idx] if self.label_ids is not None else torch.tensor(idx)).to(device)
        keys = self.targets[idx].to(device)
        features = self.model.frontend(wave.to(device), valid)
        if cfg.spec_augment:
            features = _spec_augment(features, cfg, g)
        with self.accelerator.autocast():
            audio = F.normalize(self.encoder(features).float(), dim=-1)
        t = self.temperature()
        audio_keys = None
        if cfg.loss == "clip":
            loss = clip_loss(audio, keys, ids, t)
        else:
            loss = info_nce(audio, keys, ids, t, self.image_queue)
            if self.momentum_encoder is not None and self.audio_queue is not None:
                with torch.no_grad():
                    audio_keys = F.normalize(self.momentum_encoder(features).float(), dim=-1)
                # image -> audio: the frozen image is the query; the online audio of the batch are the
                # positives/negatives with gradient, the momentum keys of past batches extra negatives.
                loss = 0.5 * (loss + info_nce(keys, audio, ids, t, self.audio_queue))
        if cfg.align_weight:
            loss = loss + cfg.align_weight * (1.0 - (audio * keys).sum(-1)).mean()
        self.accelerator.backward(loss)
        if cfg.grad_clip:
            self.accelerator.clip_grad_norm_(self.params, cfg.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        with torch.no_grad():
            self.image_queue.enqueue(keys, ids)
            if audio_keys is not None and self.audio_queue is not None and self.momentum_encoder is not None:
                self.audio_queue.enqueue(audio_keys, ids)
                online = self.accelerator.unwrap_model(self.encoder).state_dict()
                for name, value in self.momentum_encoder.state_dict().items():
                    if value.dtype.is_floating_point:
                        value.mul_(cfg.momentum).add_(online[name].detach(), alpha=1 - cfg.momentum)
                    else:
                        value.copy_(online[name])
        return float(loss.detach()), float(t)

    def validate(self) -> dict[str, float] | None:
        """Retrieval on the validation split; None when there is none."""
        if self.val_targets is None:
            return None
        return evaluate_retrieval(self.model, self.val_waves, self.val_targets, self.val_labels)

    # ------------------------------------------------------------------ the run
    def _step_record(self, done: int, loss: float, t: float) -> dict[str, float]:
        """What step ``done`` logs (empty: nothing): loss, learning rate and temperature every ``log_every`` steps,
        and every ``val_every`` steps the validation figures too, saving a new best checkpoint when there is one."""
        cfg = self.cfg
        record: dict[str, float] = {}
        if done % cfg.log_every == 0 or done == self.total_steps:
            record = {"step": done, "loss": loss, "lr": self.scheduler.get_last_lr()[0], "temperature": t}
        if done % cfg.val_every == 0 or done == self.total_steps:
            metrics = self.validate()
            self._train_mode()  # embedding for validation switched every module back to training
            if metrics is not None:
                record.update({"step": done, "loss": loss, "lr": self.scheduler.get_last_lr()[0], "temperature": t,
                               "val_R@1": metrics["R@1"], "val_R@5": metrics["R@5"]})
                if "label_R@1" in metrics:
                    record["val_label_R@1"] = metrics["label_R@1"]
                if metrics["select"] > self.best.get("select", self.best.get("R@1", -1.0)):
                    self.best = {"step": done, **{k: metrics[k] for k in SELECTED if k in metrics}}
                    self.save(self.best_dir, done)
        return record

    def fit(self) -> TrainResult:
        """Run (or, after :meth:`resume`, continue) the schedule; returns where the checkpoints are."""
        from torch.utils.tensorboard import SummaryWriter

        t_start = time.perf_counter()
        cfg = self.cfg
        start_step = self.step_count
        metrics_path = self.out / "metrics.csv"
        new_log = not metrics_path.exists() or start_step == 0
        writer_tb = SummaryWriter(str(self.out / "tensorboard")) if self.accelerator.is_main_process else None
        bar = tqdm(range(start_step, self.total_steps), desc="training", initial=start_step, total=self.total_steps,
                   disable=not cfg.progress or not self.accelerator.is_main_process)
        running = 0.0
        with open(metrics_path, "w" if new_log else "a", newline="") as metrics_file:
            writer = csv.DictWriter(metrics_file, fieldnames=["step", "loss", "lr", "temperature", "val_R@1", "val_R@5",
                                                              "val_label_R@1"])
            if new_log:
                writer.writeheader()
            for step in bar:
                if cfg.stop_at_step is not None and step >= cfg.stop_at_step:
                    break
                loss, t = self.step(step)
                self.step_count = done = step + 1
                running = 0.9 * running + 0.1 * loss if step > start_step else loss
                if done % cfg.log_every == 0 or done == self.total_steps:
                    bar.set_postfix(loss=f"{running:.3f}")
                record = self._step_record(done, loss, t)
                if record:
                    self.history.append(record)
                    writer.writerow({k: record.get(k, "") for k in writer.fieldnames})
                    metrics_file.flush()
                    if writer_tb is not None:
                        for k, v in record.items():
                            if k != "step":
                                writer_tb.add_scalar(k.replace("@", "_at_"), v, done)
                if done % cfg.checkpoint_every == 0 and done != self.total_steps:
                    self.save(self.last_dir, done)
        if writer_tb is not None:
            writer_tb.close()
        self.model.eval()
        final_step = min(self.total_steps, cfg.stop_at_step) if cfg.stop_at_step is not None else self.total_steps
        self.save(self.last_dir, final_step)
        if self.val_targets is None or not self.best_dir.exists():
            self.best = {"step": final_step, **(self.validate() or {})}
            self.save(self.best_dir, final_step)
        if self.skipped:
            log.warning("%d row(s) skipped; the run used the other %d training and %d validation rows",
                        len(self.skipped), len(self.waves), len(self.val_waves))
        return TrainResult(self.best_dir, self.last_dir, final_step, self.best, self.history, self.skipped,
                           time.perf_counter() - t_start)


SELECTED = ("R@1", "R@5", "R@10", "label_R@1", "label_R@5", "select")


def train(cfg: TrainConfig, model: WavBriVL | None = None) -> TrainResult:
    """Run (or, with ``cfg.resume``, continue) a training run; returns where the best and last checkpoints are."""
    trainer = Trainer(cfg, model)
    if cfg.resume:
        trainer.resume()
    return trainer.fit()
