"""What the demo serves: flags and environment variables resolved to one :class:`DemoConfig`."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from wavbrivl.space import DEFAULT_BUNDLE_NAME

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_BUNDLE = REPO_ROOT / "assets" / DEFAULT_BUNDLE_NAME
DISABLED = {"none", "off", "false", "0", ""}


@dataclass
class DemoConfig:
    """What to serve. ``None`` means "the default": the default bundle and the folders inside it.

    ``index`` / ``generator``: a path or hub id, ``"none"`` to switch the feature off, or ``None`` for the
    bundle's own ``index/`` / ``generator/`` when present.
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
        env: dict[str, Any] = {
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
        """The checkpoint given, else the default bundle, else the only bundle under ``assets/`` (a Space
        exported with another bundle: ``wavbrivl space export --bundle NAME`` ships that one alone)."""
        if self.checkpoint:
            return self.checkpoint
        if (DEFAULT_BUNDLE / "config.json").is_file():
            return str(DEFAULT_BUNDLE)
        bundles = sorted(p.parent for p in (REPO_ROOT / "assets").glob("*/config.json"))
        if len(bundles) == 1:
            return str(bundles[0])
        raise FileNotFoundError(
            f"no checkpoint given and the default bundle ({DEFAULT_BUNDLE.relative_to(REPO_ROOT)}) is not there: pass "
            "--checkpoint PATH_OR_HUB_ID (or set WAVBRIVL_CHECKPOINT)"
        )

    def resolved_device(self) -> str:
        """The device given, else CUDA when there is one, except on ZeroGPU hardware: there CUDA may only run
        inside ``@spaces.GPU`` calls, and search and labels (milliseconds on a CPU) are not worth a GPU slot per
        visitor, so the models stay on the CPU unless ``--device`` / ``WAVBRIVL_DEVICE`` says otherwise."""
        if self.device:
            return self.device
        if os.environ.get("SPACES_ZERO_GPU", "").lower() == "true":
            return "cpu"
        return "cuda" if torch.cuda.is_available() else "cpu"

    def part(self, name: str) -> str | None:
        """The pipeline's ``index=`` / ``generator=`` argument: None (off), "auto", or a path."""
        value = getattr(self, name)
        if value is None:
            return "auto"
        return None if value.strip().lower() in DISABLED else value


def parse_labels(text: str | list[str] | None) -> list[str]:
    """One label per line or comma-separated; blanks and repeats dropped, order kept."""
    if text is None:
        return []
    parts = text if isinstance(text, list) else text.replace(",", "\n").splitlines()
    return list(dict.fromkeys(label for label in (str(p).strip() for p in parts) if label))
