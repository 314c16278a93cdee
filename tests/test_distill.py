"""Augmentation and distillation: a small student learns to reproduce a teacher trunk's features."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from wavbrivl.audio import FrontEndConfig
from wavbrivl.augment import EQ_POINTS, Augment, change_speed, crop_batch, equalise
from wavbrivl.backbone import BackboneConfig
from wavbrivl.distill import DistillConfig, distill_trunk
from wavbrivl.encoder import EncoderConfig
from wavbrivl.model import WavBriVL, WavBriVLConfig

from .conftest import tone


def test_augmentations_do_what_they_say():
    waves = [tone(440, 2.0), tone(880, 0.5)]
    plain, valid = crop_batch(waves, [0, 1], 16000, torch.Generator().manual_seed(0), None)
    assert torch.equal(plain[0], torch.from_numpy(waves[0][:16000])) and valid.tolist() == [16000, 8000]
    faster = change_speed(torch.from_numpy(tone(440, 1.0)), 1.25)
    spectrum = np.abs(np.fft.rfft(faster.numpy()))
    assert abs(faster.numel() - 12800) <= 1 and abs(np.argmax(spectrum) * 16000 / faster.numel() - 550) < 5
    exact = [tone(440, 1.0), tone(880, 0.5)]  # one window long: nothing to crop
    noisy, valid = crop_batch(exact, [0, 1], 16000, torch.Generator().manual_seed(0),
                              Augment(gain_db=0, time_shift=False, noise_snr_db=(20, 20)))
    noise = noisy[0] - torch.from_numpy(exact[0])
    assert abs(20 * np.log10(float(torch.from_numpy(exact[0]).pow(2).mean().sqrt() / noise.pow(2).mean().sqrt())) - 20) < 0.5
    assert noisy[1, 8000:].abs().max() == 0  # noise only where the clip is, not in its padding
    mixed, _ = crop_batch(exact, [0, 1], 16000, torch.Generator().manual_seed(0),
                          Augment(gain_db=0, time_shift=False, mix_prob=1.0, mix_db=(-10, -10)))
    # Row 1 (880 Hz) gets row 0 (440 Hz) underneath, 10 dB down.
    spectrum = np.abs(np.fft.rfft(mixed[1, :8000].numpy()))
    assert spectrum[880 // 2] == spectrum.max() and 0.2 < spectrum[440 // 2] / spectrum[880 // 2] < 0.45
    with pytest.raises(ValueError, match="speed"):
        Augment(speed=0.7)


def test_the_random_equaliser_colours_a_clip_and_nothing_else():
    """Flat gains leave a clip as it was; a raised top band raises a high tone and leaves a low one; the
    equaliser adds nothing to a clip's padding and draws the same colour for the same generator."""
    clip = torch.from_numpy(tone(200, 1.0) + tone(6000, 1.0))[None]
    assert torch.allclose(equalise(clip, torch.zeros(1, EQ_POINTS)), clip, atol=1e-5)
    tilted = equalise(clip, torch.tensor([[0.0] * (EQ_POINTS - 2) + [12.0, 12.0]]))
    before, after = np.abs(np.fft.rfft(clip[0].numpy())), np.abs(np.fft.rfft(tilted[0].numpy()))
    assert abs(after[200] / before[200] - 1) < 0.05  # 1-second clip: bin k is k Hz
    assert 2.5 < after[6000] / before[6000] < 4.0  # +12 dB at the top of the band (16 kHz clip: 6 kHz is near it)
    short = [tone(440, 1.0), tone(880, 0.5)]
    aug = Augment(gain_db=0, time_shift=False, eq_db=12.0)
    a, valid = crop_batch(short, [0, 1], 16000, torch.Generator().manual_seed(3), aug)
    b, _ = crop_batch(short, [0, 1], 16000, torch.Generator().manual_seed(3), aug)
    assert torch.equal(a, b) and valid.tolist() == [16000, 8000] and a[1, 8000:].abs().max() == 0
    assert not torch.allclose(a[0], torch.from_numpy(short[0]), atol=1e-3)
    with pytest.raises(ValueError, match="eq_db"):
        Augment(eq_db=-1.0)


def model(encoder: EncoderConfig, seed: int, rate: int, window: float = 1.0) -> WavBriVL:
    torch.manual_seed(seed)
    frontend = FrontEndConfig(n_mels=32, window_seconds=window, hop_seconds=window / 2, sample_rate=rate)
    return WavBriVL(WavBriVLConfig(BackboneConfig("wavbrivl-tiny-clip", None, id="x"), frontend, encoder,
                                   embed_dim=encoder.embed_dim))


def small(channels: list[int]) -> EncoderConfig:
    return EncoderConfig(stem_channels=8, channels=channels, blocks=[1] * len(channels), head_hidden=[], embed_dim=8)


def test_a_student_learns_the_teachers_features():
    """A small ResNet student at half the sample rate regresses a differently built teacher's pooled features."""
    teacher = model(small([16, 32]), 1, 16000)
    rng = np.random.default_rng(0)
    waves = [tone(f, rng.uniform(0.5, 2.5), amp=rng.uniform(0.1, 0.6)) for f in rng.uniform(150, 3000, 40)]
    cfg = dict(batch_size=16, lr=3e-3, progress=False, seed=0)
    before = distill_trunk(teacher, model(small([8, 16]), 2, 8000), waves, DistillConfig(steps=0, **cfg))
    after = distill_trunk(teacher, model(small([8, 16]), 2, 8000), waves, DistillConfig(steps=150, **cfg))
    assert after.crops == before.crops >= 40 and np.mean(after.losses[-10:]) < np.mean(after.losses[:10])
    assert after.holdout_r2 > before.holdout_r2 + 0.2 and after.holdout_r2 > 0.3, (before.holdout_r2, after.holdout_r2)
    with pytest.raises(ValueError, match="windows differ"):
        distill_trunk(teacher, model(small([8]), 2, 8000, window=2.0), waves, DistillConfig(steps=1, progress=False))
