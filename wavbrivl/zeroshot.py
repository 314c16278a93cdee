"""Zero-shot classification: the one implementation the demo, the CLI and the evaluation share.

Each class is a unit vector: the mean of its prompts' text embeddings (CLIP's prompt ensembling), where the
prompts are the class name put through templates ("the sound of a {}", ...) or a list given per class. A
clip's scores are its cosine similarities to the classes; its probabilities are a softmax over those scores
times the backbone's own temperature (``FrozenBackbone.logit_scale``), as CLIP computes them. Two callers that
pass the same labels and templates therefore rank the same clip the same way.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F

#: Prompt templates averaged per class when neither the caller nor the bundle names any. ``{}`` is the class.
DEFAULT_TEMPLATES = ("the sound of a {}", "a photo of a {}", "a {}", "{}")

TextEncoder = Callable[[Sequence[str]], torch.Tensor]


def check_templates(templates: Sequence[str]) -> None:
    if not templates or any("{}" not in t for t in templates):
        raise ValueError(f"every template needs a '{{}}' where the class name goes: {list(templates)}")


def class_prompts(name: str, templates: Sequence[str]) -> list[str]:
    """``chirping_birds`` -> "the sound of a chirping birds", ... (underscores read as spaces)."""
    readable = name.replace("_", " ").strip()
    return [t.format(readable) for t in templates]


@dataclass
class ZeroShotClassifier:
    """Class names, their unit text embeddings ``[C, D]``, and the temperature probabilities use."""

    labels: list[str]
    embeddings: torch.Tensor
    logit_scale: float = 100.0

    @classmethod
    def from_prompts(cls, encode_text: TextEncoder, prompts: Mapping[str, Sequence[str]],
                     logit_scale: float = 100.0) -> "ZeroShotClassifier":
        """One class per key, its embedding the mean of its prompts' (e.g. every caption naming it)."""
        labels = list(prompts)
        if not labels:
            raise ValueError("zero-shot classification needs at least one label")
        flat = [p for name in labels for p in prompts[name]]
        if any(not prompts[name] for name in labels):
            raise ValueError(f"every label needs at least one prompt: {[n for n in labels if not prompts[n]]}")
        emb = F.normalize(encode_text(flat).float(), dim=-1)
        owners = torch.tensor([i for i, name in enumerate(labels) for _ in prompts[name]])
        summed = torch.zeros(len(labels), emb.shape[1]).index_add_(0, owners, emb)
        return cls(labels, F.normalize(summed, dim=-1), float(logit_scale))

    @classmethod
    def from_labels(cls, encode_text: TextEncoder, labels: Sequence[str], templates: Sequence[str] = DEFAULT_TEMPLATES,
                    logit_scale: float = 100.0) -> "ZeroShotClassifier":
        """Each label put through every template, the prompts' embeddings averaged (prompt ensembling)."""
        check_templates(templates)
        return cls.from_prompts(encode_text, {name: class_prompts(name, templates) for name in labels}, logit_scale)

    def scores(self, audio: torch.Tensor) -> torch.Tensor:
        """Cosine similarities ``[N, C]`` of unit audio embeddings ``[N, D]`` (or ``[D]``) to the classes."""
        a = F.normalize(torch.as_tensor(audio, dtype=torch.float32).reshape(-1, self.embeddings.shape[1]), dim=-1)
        return a @ self.embeddings.T

    def probabilities(self, audio: torch.Tensor) -> torch.Tensor:
        """Softmax over the classes of the temperature-scaled scores, ``[N, C]``."""
        return torch.softmax(self.logit_scale * self.scores(audio), dim=-1)
