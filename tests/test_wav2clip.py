"""The Wav2CLIP converter, tested on a random state dict laid out exactly like the published checkpoint."""
from __future__ import annotations

import numpy as np
import torch
import torchaudio
import torchvision
from torch import nn

from wavbrivl import WavBriVL
from wavbrivl.cli import main
from wavbrivl.wav2clip import import_wav2clip

from .conftest import tone


def wav2clip_layout_state(seed: int = 0) -> tuple[dict[str, torch.Tensor], nn.Module, nn.Module]:
    """A ResNet-18 (1 input channel, fc 512->1000, STFT window buffer) + MLP 512->512->512, as Wav2CLIP saves."""
    torch.manual_seed(seed)
    resnet = torchvision.models.resnet18(num_classes=1000)
    resnet.conv1 = nn.Conv2d(1, 64, 7, 2, 3, bias=False)
    for m in resnet.modules():  # non-trivial BN statistics so the test sees them used
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    mlp = nn.Sequential(nn.Linear(512, 512), nn.ReLU(), nn.Dropout(0.1), nn.Linear(512, 512))
    state = {f"audio_encoder.{k}": v for k, v in resnet.state_dict().items()}
    state["audio_encoder.spectrogram.window"] = torch.hann_window(512)
    state.update({f"audio_transform.sequential.{k}": v for k, v in mlp.state_dict().items()})
    return state, resnet.eval(), mlp.eval()


def reference_embedding(wave: torch.Tensor, resnet: nn.Module, mlp: nn.Module) -> torch.Tensor:
    """Wav2CLIP's forward pass written independently (per-sample normalisation, as wavbrivl documents)."""
    spec = torchaudio.transforms.Spectrogram(n_fft=512, hop_length=353)(wave[None, None])
    x = torch.log(spec + 1e-7)
    x = (x - x.mean()) / (x.std(unbiased=False) + 1e-5)
    return trunk_and_head(x, resnet, mlp)


def trunk_and_head(x: torch.Tensor, resnet: nn.Module, mlp: nn.Module) -> torch.Tensor:
    """Normalised spectrogram ``[B, 1, F, T]`` -> unit embeddings: ResNet-18 without fc, average pool, the MLP."""
    r = resnet
    x = r.maxpool(r.relu(r.bn1(r.conv1(x))))
    x = r.avgpool(r.layer4(r.layer3(r.layer2(r.layer1(x))))).flatten(1)
    return torch.nn.functional.normalize(mlp(x), dim=-1)


def test_import_matches_the_original_architecture(tmp_path):
    state, resnet, mlp = wav2clip_layout_state()
    path = tmp_path / "Wav2CLIP.ckpt"
    torch.save({"state_dict": state, "epoch": 7}, path)
    model = import_wav2clip(path, tmp_path / "w2c")
    assert model.backbone_id == "ViT-B-32/openai" and model.embed_dim == 512
    wave = torch.from_numpy(tone(440, 10.0) + 0.01 * np.random.default_rng(0).standard_normal(160000).astype(np.float32))
    ours = model.embed_audio(wave, sample_rate=16000)
    assert torch.allclose(ours[0], reference_embedding(wave, resnet, mlp)[0], atol=1e-4)
    loaded = WavBriVL.from_pretrained(tmp_path / "w2c")
    assert torch.equal(loaded.embed_audio(wave, sample_rate=16000), ours)


def test_cli_import_and_errors(tmp_path, capsys):
    state, _, _ = wav2clip_layout_state(1)
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in state.items()}, tmp_path / "w.safetensors")
    assert main(["import-wav2clip", str(tmp_path / "w.safetensors"), str(tmp_path / "out")]) == 0
    assert "ViT-B-32/openai" in capsys.readouterr().out
    # Wrong layout, unsafe pickle and missing file: one readable line, exit code 1.
    torch.save({"state_dict": {"audio_transform.sequential.0.weight": torch.zeros(3, 3)}}, tmp_path / "wrong.ckpt")
    assert main(["import-wav2clip", str(tmp_path / "wrong.ckpt"), str(tmp_path / "o2")]) == 1
    assert "do not match the Wav2CLIP layout" in capsys.readouterr().err
    torch.save({"state_dict": state, "hparams": argparse_namespace()}, tmp_path / "pickled.ckpt")
    assert main(["import-wav2clip", str(tmp_path / "pickled.ckpt"), str(tmp_path / "o3")]) == 1
    assert "weights-only" in capsys.readouterr().err
    assert main(["import-wav2clip", str(tmp_path / "nope.ckpt"), str(tmp_path / "o4")]) == 1
    assert "no such file" in capsys.readouterr().err


def argparse_namespace():
    import argparse

    return argparse.Namespace(lr=0.1)


def documented_wav2clip(wave: torch.Tensor, resnet: nn.Module, mlp: nn.Module) -> torch.Tensor:
    """Wav2CLIP as its authors ran it, rebuilt from its documented behaviour: the whole 16 kHz clip in one pass,
    |STFT|² (n_fft 512, hop 353, periodic Hann, centred), ``log(x + 1e-7)``, normalised by the tensor's
    mean and std, ResNet-18 (1-channel stem, no fc), average pool, MLP 512 -> 512 -> 512. No padding."""
    stft = torch.stft(wave, n_fft=512, hop_length=353, window=torch.hann_window(512, periodic=True), center=True,
                      pad_mode="reflect", return_complex=True)
    x = torch.log(stft.abs() ** 2 + 1e-7)[None, None]
    x = (x - x.mean()) / (x.std() + 1e-5)
    return trunk_and_head(x, resnet, mlp)[0]


def test_short_clips_run_whole_as_the_original_did(tmp_path):
    """A clip shorter than Wav2CLIP's 10-s window is not padded into it (padding would enter the average pool)."""
    state, resnet, mlp = wav2clip_layout_state(2)
    torch.save({"state_dict": state}, tmp_path / "w.ckpt")
    model = import_wav2clip(tmp_path / "w.ckpt")
    noise = np.random.default_rng(1).standard_normal(160000).astype(np.float32)
    waves = [torch.from_numpy(tone(330, s) + 0.05 * noise[: int(s * 16000)]) for s in (5.0, 7.5, 10.0)]
    together = model.embed_audio(waves, sample_rate=16000)  # clips of three lengths in one call
    with torch.inference_mode():
        for wave, ours in zip(waves, together):
            cosine = float(ours @ documented_wav2clip(wave, resnet, mlp))
            assert cosine >= 0.99999, (wave.numel() / 16000, cosine)
            assert torch.allclose(ours, model.embed_audio(wave, sample_rate=16000)[0], atol=1e-5)
    # The project's own encoders keep their fixed, padded windows.
    from wavbrivl.audio import FrontEndConfig, iter_windows

    assert FrontEndConfig().pads_short_clips and not model.config.frontend.pads_short_clips
    [(window, valid)] = list(iter_windows(waves[0].numpy(), model.config.frontend, source_rate=16000))
    assert window.numel() == valid == 80000
