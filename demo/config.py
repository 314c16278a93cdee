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
    #: A preset name (``vit-h-14``): serve that real space (:mod:`wavbrivl.real`); None: the bundle as it is.
    real: str | None = None

    @classmethod
    def from_env(cls, **overrides: Any) -> "DemoConfig":
        """Defaults from ``WAVBRIVL_*`` environment variables; explicit (non-None) overrides win."""
        env: dict[str, Any] = {
            "checkpoint": os.environ.get("WAVBRIVL_CHECKPOINT"),
            "index": os.environ.get("WAVBRIVL_INDEX"),
            "generator": os.environ.get("WAVBRIVL_GENERATOR"),
            "device": os.environ.get("WAVBRIVL_DEVICE"),
            "real": os.environ.get("WAVBRIVL_REAL") or None,
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
        return self.offline_bundle()

    def offline_bundle(self) -> str:
        """The bundle that runs with nothing from the Hub: the default one, else the only one under ``assets/``."""
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
        if on_zerogpu():
            return "cpu"
        return "cuda" if torch.cuda.is_available() else "cpu"

    def resolved_generator_device(self) -> str:
        """Where the generator goes: the device given, else CUDA on ZeroGPU hardware (ZeroGPU wants models placed on
        ``cuda`` at start-up; ``spaces`` moves them onto the GPU it attaches inside each ``@spaces.GPU`` call), else
        the models' device."""
        if not self.device and on_zerogpu():
            return "cuda"
        return self.resolved_device()

    def has_gpu(self) -> bool:
        """Whether pictures are painted on a GPU here (which generator sources suit the host)."""
        return self.resolved_generator_device().startswith("cuda")

    def real_sources(self) -> tuple[str | None, str | None]:
        """Real mode's ``(hub bundle id or None, configured generator)``: the generator is None for the space's
        defaults, ``""`` for none, else the value given (a source name, folder or hub id)."""
        from wavbrivl.real import is_hub_id

        generator = None if self.generator is None else ("" if self.generator.strip().lower() in DISABLED else self.generator)
        return (self.checkpoint if is_hub_id(self.checkpoint) else None), generator

    def part(self, name: str) -> str | None:
        """The pipeline's ``index=`` / ``generator=`` argument: None (off), "auto", or a path."""
        value = getattr(self, name)
        if value is None:
            return "auto"
        return None if value.strip().lower() in DISABLED else value


def on_zerogpu() -> bool:
    """Running on Hugging Face ZeroGPU hardware (the Space sets ``SPACES_ZERO_GPU``)."""
    return os.environ.get("SPACES_ZERO_GPU", "").lower() in ("true", "1")


def parse_labels(text: str | list[str] | None) -> list[str]:
    """One label per line or comma-separated; blanks and repeats dropped, order kept."""
    if text is None:
        return []
    parts = text if isinstance(text, list) else text.replace(",", "\n").splitlines()
    return list(dict.fromkeys(label for label in (str(p).strip() for p in parts) if label))
