"""The folders every world's bundle build uses: a scratch folder for its runs, and a staging folder that replaces
the bundle only once it is whole, so a build that fails half-way never leaves a broken bundle behind."""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..model import WavBriVL


@dataclass(frozen=True)
class BuildFolders:
    out: Path
    work: Path
    staging: Path

    @classmethod
    def prepare(cls, out: str | Path, work: str | Path | None = None) -> "BuildFolders":
        """A fresh scratch folder (default: ``.NAME-work`` beside ``out``) and an empty staging place."""
        out = Path(out)
        work = Path(work) if work else out.parent / f".{out.name}-work"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        staging = out.parent / f".{out.name}-staging"
        shutil.rmtree(staging, ignore_errors=True)
        return cls(out, work, staging)

    def save_models(self, model: "WavBriVL", pipe: Any, info: dict[str, Any]) -> None:
        """The audio model (with ``info`` in its config) and its generator, into staging."""
        from ..generate import Generator  # diffusers: loaded when a build gets this far, not by the CLI

        model.config.info.update(info)
        model.save_pretrained(self.staging)
        Generator(pipe, space_id=model.backbone_id, embed_dim=model.embed_dim, embed_norm=model.config.image_embed_norm
                  ).save_pretrained(self.staging / "generator")

    def swap_in(self) -> None:
        """Replace ``out`` with the finished staging folder and drop the scratch folder."""
        if self.out.exists():
            shutil.rmtree(self.out)
        self.staging.rename(self.out)
        shutil.rmtree(self.work, ignore_errors=True)
