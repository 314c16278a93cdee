"""The audio encoder: a CNN trunk over the front end's features, then a projection head.

The two parts are ``trunk`` and ``head``. Inside them the layout is Wav2CLIP's (torchvision's ResNet names,
``head.sequential.*`` for the MLP), so a Wav2CLIP state dict loads into the ``wav2clip`` architecture once its
two top-level names are mapped (:data:`WAV2CLIP_NAMES`): Wav2CLIP calls the trunk ``audio_encoder`` and the
head ``audio_transform``. Checkpoints saved before the rename carry those names too; they load unchanged.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Mapping, TypeVar

import torch
from torch import nn


@dataclass
class EncoderConfig:
    """Architecture of the trainable audio encoder.

    The default is a small 4-stage ResNet (about 1.2 M parameters) sized for a 2-core CPU: a CNN
    on 64 mel bands is enough to align sound to a frozen image space and many times cheaper than
    Wav2CLIP's ResNet-18 on a 257-bin linear spectrogram (see ``benchmarks/embed.py``).
    ``arch="twostream"`` (:class:`TwoStreamTrunk`) suits sounds whose meaning splits into *which
    frequencies* and *what happens over time*; it reads ``stem_channels``, ``channels`` and
    ``contour_channels`` only.
    """

    arch: str = "resnet"
    stem_channels: int = 32
    stem_kernel: int = 3
    stem_pool: str = "avg2"
    channels: list[int] = field(default_factory=lambda: [32, 64, 128, 256])
    blocks: list[int] = field(default_factory=lambda: [1, 1, 1, 1])
    pool: str = "avgmax"
    head_hidden: list[int] = field(default_factory=lambda: [512])
    dropout: float = 0.1
    embed_dim: int = 512
    contour_channels: int = 0

    @classmethod
    def aisfx(cls, embed_dim: int, head_hidden: list[int] | None = None, dropout: float = 0.1) -> "EncoderConfig":
        """The aisfx network (Ma & Lerch 2022; :class:`AisfxTrunk`, 512-d) under a projection head."""
        return cls(arch="aisfx", stem_channels=64, channels=[64, 128, 256, 512], blocks=[2, 2, 2, 2], pool="meanmax",
                   head_hidden=list(head_hidden or []), dropout=dropout, embed_dim=embed_dim)

    @classmethod
    def wav2clip(cls) -> "EncoderConfig":
        """Wav2CLIP's layout: ResNet-18 trunk, 512-d average pool, MLP 512 -> 512 -> 512."""
        return cls(
            arch="wav2clip",
            stem_channels=64,
            stem_kernel=7,
            stem_pool="max3",
            channels=[64, 128, 256, 512],
            blocks=[2, 2, 2, 2],
            pool="avg",
            head_hidden=[512],
            dropout=0.1,
            embed_dim=512,
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class BasicBlock(nn.Module):
    """The standard two-convolution residual block (torchvision naming, so Wav2CLIP's trunk keys match)."""

    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample: nn.Module | None = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNetTrunk(nn.Module):
    """Stem, four residual stages, global pooling: features ``[B, 1, F, T]`` -> ``[B, C]``."""

    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, cfg.stem_channels, cfg.stem_kernel, 2, cfg.stem_kernel // 2, bias=False)
        self.bn1 = nn.BatchNorm2d(cfg.stem_channels)
        self.relu = nn.ReLU(inplace=True)
        # Wav2CLIP's 3x3 max pool is kept for its layout; the default 2x2 average pool does the same
        # downsampling at a quarter of the cost on CPU (max_pool2d was a third of the encoder's time).
        pools = {"max3": lambda: nn.MaxPool2d(3, 2, 1), "avg2": lambda: nn.AvgPool2d(2, 2), "none": nn.Identity}
        if cfg.stem_pool not in pools:
            raise ValueError(f"unknown stem_pool {cfg.stem_pool!r}; choose one of {', '.join(pools)}")
        self.maxpool = pools[cfg.stem_pool]()
        inplanes = cfg.stem_channels
        for i, (planes, count) in enumerate(zip(cfg.channels, cfg.blocks)):
            stride = 1 if i == 0 else 2
            blocks = [BasicBlock(inplanes, planes, stride)] + [BasicBlock(planes, planes) for _ in range(count - 1)]
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
            inplanes = planes
        self.num_stages = len(cfg.channels)
        self.pool = cfg.pool
        self.out_channels = inplanes
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for i in range(self.num_stages):
            x = getattr(self, f"layer{i + 1}")(x)
        if self.pool == "avg":
            return x.mean(dim=(2, 3))
        # Mean over frequency, then mean + max over time: max keeps short events audible in long windows.
        x = x.mean(dim=2)
        return x.mean(dim=2) + x.amax(dim=2)


class TwoStreamTrunk(nn.Module):
    """A spectral stream and a temporal stream, pooled apart and concatenated: ``[B, 1, F, T]`` -> ``[B, C]``.

    Why: a single CNN learns *joint* detectors (this pitch with that rhythm), so a pitch and a rhythm it
    has only heard apart land on whatever combination it did hear. Here the spectral stream sees only
    the clip's time-pooled spectrum (which frequencies sound: register, timbre) and the temporal stream
    only sees the spectrogram through small-kernel convolutions max-pooled over frequency (what happens
    over time, wherever in frequency: rhythm, glides, length). Under a linear head the embedding is then
    a sum of a "what" term and a "when" term, the same additive form as a caption's words, and an unheard
    pair of known parts lands between them.
    """

    def __init__(self, cfg: EncoderConfig, n_freq: int) -> None:
        super().__init__()
        c = cfg.stem_channels
        spec_c, spec_out = c, cfg.channels[-1]
        self.spectral = nn.Sequential(
            nn.Conv1d(2, spec_c, 5, padding=2), nn.BatchNorm1d(spec_c), nn.ReLU(inplace=True),
            nn.Conv1d(spec_c, spec_c, 5, stride=2, padding=2), nn.BatchNorm1d(spec_c), nn.ReLU(inplace=True),
            nn.Flatten(), nn.Linear(spec_c * ((n_freq + 1) // 2), spec_out), nn.ReLU(inplace=True),
        )
        chans = [c, *cfg.channels]
        # Stride 2 at once: the full-resolution map costs most of the step, and 10-20 ms frames are finer than the
        # rhythms this stream is for.
        layers: list[nn.Module] = [nn.Conv2d(1, c, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True)]
        layers += [nn.Conv2d(c, c, 3, stride=(2, 1), padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True)]
        self.local = nn.Sequential(*layers)
        temporal: list[nn.Module] = []
        for a, b in zip(chans[:-1], chans[1:]):
            temporal += [nn.Conv1d(a, b, 5, stride=2, padding=2, bias=False), nn.BatchNorm1d(b), nn.ReLU(inplace=True)]
        self.temporal = nn.Sequential(*temporal)
        self.out_channels = spec_out + chans[-1]
        self.contour: nn.Module | None = None
        if cfg.contour_channels:
            k = cfg.contour_channels
            self.contour = nn.Sequential(
                nn.Conv1d(2, k, 5, padding=2), nn.BatchNorm1d(k), nn.ReLU(inplace=True),
                nn.Conv1d(k, k, 5, padding=2), nn.BatchNorm1d(k), nn.ReLU(inplace=True),
            )
            self.out_channels += k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        spectrum = torch.cat([x.mean(dim=3), x.amax(dim=3)], dim=1)  # [B, 2, F]
        what = self.spectral(spectrum)
        when = self.temporal(self.local(x).amax(dim=2))  # [B, C, T']
        parts = [what, when.mean(dim=2) + when.amax(dim=2)]
        if self.contour is not None:
            # The spectrum's local form (a narrow peak, a smeared band), max-pooled over frequency so it does
            # not say where: the spectral stream's linear layer is tied to frequency positions and cannot
            # carry "smeared = glide" to a register where it never heard a glide.
            parts.append(self.contour(spectrum).amax(dim=2))
        return torch.cat(parts, dim=1)


class AisfxConvBlock(nn.Module):
    """Two 3x3 convolutions (no bias) with batch norm and ReLU, then a max pool (aisfx's ``ConvBlock``)."""

    def __init__(self, cin: int, cout: int, pool: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, 1, 1, bias=False)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.bn2 = nn.BatchNorm2d(cout)
        self.pool = pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.bn2(self.conv2(x)))
        return nn.functional.max_pool2d(x, self.pool) if self.pool > 1 else x


class AisfxTrunk(nn.Module):
    """aisfx's ``EmbeddingNet('max', 3, 1, 64)``: four conv blocks (64/128/256/512 channels, 2x2 max pools after
    the first three), mean over frequency, max over time -> ``[B, 512]``. Parameter names are the published
    checkpoint's (``conv_block1.conv1.weight`` ...), so its weights load strictly.

    It reads features time-first (``[B, 1, frames, bands]``), the layout it was trained on; the front end's
    ``[B, 1, bands, frames]`` is transposed here.
    """

    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        c = [cfg.stem_channels * m for m in (1, 2, 4, 8)]
        self.conv_block1 = AisfxConvBlock(1, c[0], 2)
        self.conv_block2 = AisfxConvBlock(c[0], c[1], 2)
        self.conv_block3 = AisfxConvBlock(c[1], c[2], 2)
        self.conv_block4 = AisfxConvBlock(c[2], c[3], 1)
        self.out_channels = c[3]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.transpose(2, 3)
        for block in (self.conv_block1, self.conv_block2, self.conv_block3, self.conv_block4):
            x = block(x)
        return x.mean(dim=3).amax(dim=2)


class MLPHead(nn.Module):
    """Linear -> ReLU -> Dropout -> ... -> Linear, laid out as Wav2CLIP's ``MLPLayers``."""

    def __init__(self, units: list[int], dropout: float) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for u0, u1 in zip(units[:-1], units[1:]):
            layers += [nn.Linear(u0, u1), nn.ReLU(), nn.Dropout(dropout)]
        self.sequential = nn.Sequential(*layers[:-2])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.sequential(x)


ARCHS = ("resnet", "wav2clip", "twostream", "aisfx")
#: Wav2CLIP's names for the two parts (also in checkpoints written before the rename) -> this encoder's.
WAV2CLIP_NAMES = {"audio_encoder.": "trunk.", "audio_transform.": "head."}
T = TypeVar("T")


def renamed_keys(state: Mapping[str, T], prefix: str = "") -> dict[str, T]:
    """``state`` with the parts' Wav2CLIP names under ``prefix`` (``audio_encoder.*``, ``audio_transform.*``)
    renamed to this encoder's (``trunk.*``, ``head.*``); every other key unchanged, order kept."""
    out = {}
    for key, value in state.items():
        for old, new in WAV2CLIP_NAMES.items():
            if key.startswith(prefix + old):
                key = prefix + new + key[len(prefix + old):]
                break
        out[key] = value
    return out


def _load_old_names(module: nn.Module, state: dict[str, Any], prefix: str, *_: Any) -> None:
    """A load-time hook: the committed bundles (and any checkpoint saved before the rename) store Wav2CLIP's
    names, and their weights are not rewritten just to rename keys, so every load maps them."""
    if any(key.startswith(prefix + old) for old in WAV2CLIP_NAMES for key in state):
        renamed = renamed_keys(state, prefix)
        state.clear()
        state.update(renamed)


class AudioEncoder(nn.Module):
    """Features -> embedding ``[B, embed_dim]`` (not normalised: :class:`~wavbrivl.WavBriVL` does that)."""

    def __init__(self, config: EncoderConfig, n_freq: int | None = None) -> None:
        super().__init__()
        if config.arch not in ARCHS:
            raise ValueError(f"unknown encoder arch {config.arch!r} (expected one of {', '.join(ARCHS)})")
        self.config = config
        if config.arch == "twostream":
            if not n_freq:
                raise ValueError("the 'twostream' encoder needs the front end's number of frequency bins")
            self.trunk: nn.Module = TwoStreamTrunk(config, n_freq)
        elif config.arch == "aisfx":
            self.trunk = AisfxTrunk(config)
        else:
            self.trunk = ResNetTrunk(config)
        self.head = MLPHead([self.trunk.out_channels, *config.head_hidden, config.embed_dim], config.dropout)
        self.register_load_state_dict_pre_hook(_load_old_names)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(self.trunk(features))
