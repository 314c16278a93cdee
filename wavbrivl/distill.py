"""Knowledge distillation of an audio trunk: a small, fast student learns to reproduce a large teacher's features.

Why: a pretrained audio network (aisfx, trained on professional sound-effects libraries) hears far more than a
few hundred labelled clips can teach, but it runs at about 100x real time on a 2-core CPU; the demo's encoder
must run several times faster. The student (this project's ResNet-style trunk on a cheap log-mel front end)
is trained to regress the teacher's pooled trunk features on many real sounds (any unlabelled recordings:
distillation needs no labels), under augmentation, so it inherits what the teacher hears. The projection into
the shared space is trained afterwards on the student, with :mod:`wavbrivl.train` (``train_head_only``).

The teacher runs once per crop (its features are cached for the whole run, as the trainer caches frozen image
embeddings); the student sees every crop several times. Crops are stored at the student's sample rate in
float16, so a few hours of audio fit in memory.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from . import optim
from .audio import resample
from .augment import Augment, crop_batch
from .model import WavBriVL
from .timing import timed

log = logging.getLogger(__name__)


@dataclass
class DistillConfig:
    """``crops_per_window``: augmented crops drawn per window-length of each source (so long recordings give
    more, short ones at least one); ``max_crops`` caps the total; ``holdout`` is the fraction of crops kept
    aside to measure how well the student reproduces the teacher."""

    steps: int = 3000
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 100
    crops_per_window: float = 1.0
    max_crops: int | None = None
    holdout: float = 0.05
    seed: int = 0
    teacher_batch: int = 32
    augment: Augment = field(default_factory=lambda: Augment(gain_db=6.0, speed=0.05, noise_snr_db=(20.0, 40.0), mix_prob=0.25))
    progress: bool = True


@dataclass
class DistillResult:
    losses: list[float]
    crops: int
    holdout_cosine: float  # student (through its adapter) vs teacher features, on crops it never trained on
    holdout_r2: float
    teacher_seconds: float
    student_seconds: float


def distill_trunk(teacher: WavBriVL, student: WavBriVL, waves: list[np.ndarray], config: DistillConfig | None = None
                  ) -> DistillResult:
    """Train ``student``'s trunk (``audio_encoder.trunk``) to reproduce ``teacher``'s trunk features.

    ``waves``: mono float32 recordings at the teacher's sample rate. The student's head is left untouched.
    """
    cfg = config or DistillConfig()
    if not waves:
        raise ValueError("distillation needs at least one recording")
    seconds: dict[str, float] = {}
    with timed(seconds, "teacher"):
        student_audio, valid, targets = _teacher_targets(teacher, student, waves, cfg)

    g = torch.Generator().manual_seed(cfg.seed)
    order = torch.randperm(len(targets), generator=g)
    n_hold = max(1, int(len(targets) * cfg.holdout)) if len(targets) > 20 else 0
    hold, fit = order[:n_hold], order[n_hold:]
    mean, std = targets[fit].mean(0), targets[fit].std(0).clamp_min(1e-3)
    trunk = student.audio_encoder.trunk
    adapter = nn.Linear(trunk.out_channels, targets.shape[1])
    params = list(trunk.parameters()) + list(adapter.parameters())
    from diffusers.optimization import get_cosine_schedule_with_warmup

    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = get_cosine_schedule_with_warmup(opt, min(cfg.warmup_steps, cfg.steps // 5), cfg.steps)
    losses: list[float] = []
    with timed(seconds, "student"):
        trunk.train()
        for _ in tqdm(range(cfg.steps), desc="distilling", disable=not cfg.progress):
            idx = fit[torch.randint(0, len(fit), (cfg.batch_size,), generator=g)]
            pred = adapter(trunk(student.frontend(student_audio[idx].float(), valid[idx])))
            losses.append(optim.step(F.mse_loss(pred, (targets[idx] - mean) / std), opt, sched, clip=(params, 1.0)))
        trunk.eval()
        cosine, r2 = _fit_quality(student, adapter, student_audio[hold], valid[hold], targets[hold], mean, std)
        student.eval()
    return DistillResult(losses, len(targets), cosine, r2, seconds["teacher"], seconds["student"])


def _teacher_targets(teacher: WavBriVL, student: WavBriVL, waves: list[np.ndarray], cfg: DistillConfig
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Augmented crops at the student's rate (float16), their valid lengths, and the teacher's features."""
    t_cfg, s_cfg = teacher.config.frontend, student.config.frontend
    if abs(t_cfg.window_seconds - s_cfg.window_seconds) > 1e-3:
        raise ValueError(f"teacher and student windows differ ({t_cfg.window_seconds:.3f} s, {s_cfg.window_seconds:.3f} s): "
                         "the student must see what the teacher saw")
    window = t_cfg.window_samples
    owners = [i for i, w in enumerate(waves) for _ in range(max(1, round(cfg.crops_per_window * math.ceil(len(w) / window))))]
    g = torch.Generator().manual_seed(cfg.seed + 1)
    if cfg.max_crops and len(owners) > cfg.max_crops:
        owners = [owners[i] for i in sorted(torch.randperm(len(owners), generator=g)[: cfg.max_crops].tolist())]
    teacher.eval()
    audio, valid, feats = [], [], []
    with torch.inference_mode():
        for start in tqdm(range(0, len(owners), cfg.teacher_batch), desc="teacher features", disable=not cfg.progress):
            batch, lengths = crop_batch(waves, owners[start : start + cfg.teacher_batch], window, g, cfg.augment)
            feats.append(teacher.audio_encoder.trunk(teacher.frontend(batch, lengths)).float())
            audio.append(resample(batch, t_cfg.sample_rate, s_cfg.sample_rate)[:, : s_cfg.window_samples].half())
            valid.append((lengths * s_cfg.sample_rate + t_cfg.sample_rate - 1) // t_cfg.sample_rate)
    return torch.cat(audio), torch.cat(valid), torch.cat(feats)


@torch.inference_mode()
def _fit_quality(student: WavBriVL, adapter: nn.Module, audio: torch.Tensor, valid: torch.Tensor, targets: torch.Tensor,
                 mean: torch.Tensor, std: torch.Tensor) -> tuple[float, float]:
    if len(targets) == 0:
        return float("nan"), float("nan")
    pred = adapter(student.audio_encoder.trunk(student.frontend(audio.float(), valid))) * std + mean
    cosine = float(F.cosine_similarity(pred, targets, dim=-1).mean())
    r2 = float(1 - ((pred - targets) ** 2).sum() / ((targets - targets.mean(0)) ** 2).sum())
    return cosine, r2
