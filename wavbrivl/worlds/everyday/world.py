"""Reading a prepared everyday world folder (written by ``wavbrivl world everyday fetch``).

The folder holds ``manifest.csv`` (one row per recording: audio, its concept's pictures, label, split and the
source it came from), ``pictures.csv`` (one row per drawing: its concept, captions and split: ``fit`` for the
picture models, ``gallery`` held out), ``corpus.csv`` (unlabelled recordings for distillation),
``concepts.json``, and the data card (``DATA.md``, ``data_card.json``, ``LICENSES/``).
"""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from PIL import Image

from ...data import PairedRow, read_manifest
from .catalogue import concept_caption


@dataclass
class Picture:
    path: Path
    label: str
    captions: list[str]
    split: str  # "fit" (the picture models learn from it) or "gallery" (held out: the index shows it)
    meta: dict[str, str] = field(default_factory=dict)


@dataclass
class Concept:
    name: str
    aliases: list[str]
    group: str
    live: bool  # a person at a laptop can make this sound
    heard: bool  # its recordings reach the audio encoder's training (False: pictures and captions only)
    caption: str = ""  # how a person would describe hearing it ("a dog barking"): the training caption and the label


@dataclass
class EverydayWorld:
    root: Path
    rows: list[PairedRow]
    pictures: list[Picture]
    corpus: list[Path]
    concepts: list[Concept]

    @classmethod
    def load(cls, root: str | Path) -> "EverydayWorld":
        root = Path(root)
        for name in ("manifest.csv", "pictures.csv", "corpus.csv", "concepts.json"):
            if not (root / name).is_file():
                raise FileNotFoundError(f"{root / name}: not a prepared everyday world (run `wavbrivl world everyday fetch`)")
        with open(root / "pictures.csv", newline="", encoding="utf-8") as f:
            pictures = [Picture(root / r["image"], r["label"], [c for c in r.get("captions", "").split("|") if c], r["split"],
                                {k: v for k, v in r.items() if k not in ("image", "label", "captions", "split")})
                        for r in csv.DictReader(f)]
        with open(root / "corpus.csv", newline="", encoding="utf-8") as f:
            corpus = [root / r["audio"] for r in csv.DictReader(f)]
        concepts = [Concept(c["name"], list(c.get("aliases", [])), c.get("group", ""), bool(c.get("live")), bool(c.get("heard")),
                            concept_caption(c)) for c in json.loads((root / "concepts.json").read_text(encoding="utf-8"))]
        return cls(root, read_manifest(root / "manifest.csv"), pictures, corpus, concepts)

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.concepts]

    @property
    def captions(self) -> list[str]:
        """The concepts' captions, in the order of :attr:`names`: the bundle's zero-shot labels."""
        return [c.caption for c in self.concepts]

    def concept(self, name: str) -> Concept:
        return next(c for c in self.concepts if c.name == name)

    def split(self, split: str) -> list[PairedRow]:
        return [r for r in self.rows if r.split == split]


def load_pictures(paths: list[Path], size: int) -> torch.Tensor:
    """Pictures as a uint8 tensor ``[N, 3, size, size]``."""
    return torch.stack([torch.from_numpy(np.asarray(Image.open(p).convert("RGB").resize((size, size), Image.BICUBIC)).copy())
                        for p in paths]).permute(0, 3, 1, 2).contiguous()


def load_recordings(paths: list[Path], max_seconds: float = 30.0) -> list[np.ndarray]:
    """The world's recordings (44.1 kHz mono PCM16 files), first ``max_seconds`` of each, as float32."""
    out = []
    for p in paths:
        with sf.SoundFile(p) as f:
            out.append(f.read(int(max_seconds * f.samplerate), dtype="float32", always_2d=True).mean(axis=1))
    return out
