"""A bundle served in a real model's embedding space: what ``app.py --real vit-h-14`` (``WAVBRIVL_REAL``) loads.

Why this exists: the bundles in ``assets/`` live in small spaces of their own and run offline; real generators
(IP-Adapter over SD 1.5, Stable unCLIP) consume OpenCLIP ViT-H-14 embeddings. A Space gets there without anyone
training by hand: the default bundle carries its training pairs (``pairs/``), so the first boot retargets it
into the preset's space (:meth:`~wavbrivl.pipeline.WavBriVLPipeline.retarget`, minutes) and keeps the result in a
persistent folder (:func:`real_home`), which later boots load instead of retraining. A bundle already pushed to
the Hub in that space (``--checkpoint user/repo``) is loaded as it is.

Why decide here, once, before loading: every part the real mode needs (the backbone's weights, a generator's
repos) is checked first, so that offline or with the Hub unreachable nothing is retrained for nothing; what is
missing is said in one line (:attr:`RealChoice.notice`) and the source bundle, which needs nothing from the Hub,
is served instead, fully working. The generator is the one configured, else the space's defaults for this host
(``generators.json`` ``_defaults``: IP-Adapter over SD 1.5 on a GPU, its few-step LCM mode on a CPU).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

from .bundle import BUNDLE_FILE, BundleCard
from .hub import (HubAssetError, HubParts, backbone_files, default_sources, generator_source, known_sources, offline,
                  reason_missing, resolve_parts, source_repos)
from .model import CONFIG_NAME, WEIGHTS_NAME
from .pairs import find_pairs
from .presets import get_preset

log = logging.getLogger(__name__)

AUTO = "auto"
#: Written into a kept bundle after its retargeting finished: which source (by content) and preset it came from.
MARKER = "real.json"
StageFn = Callable[[str, float], None]


@dataclass
class RealChoice:
    """What to load: ``checkpoint`` (a folder or hub id) with ``generator`` (a source name, ``"auto"`` or None);
    ``notice``: one line saying why the offline bundle is served instead (None when the real mode runs);
    ``generator_repos``: which repos the generator resolved to, or why none did."""

    checkpoint: str
    generator: str | None
    notice: str | None = None
    generator_repos: str = ""
    retargeted: bool = False


def real_root() -> Path:
    """Where the real mode keeps what it builds: ``$WAVBRIVL_HOME``; else ``/data/wavbrivl`` when ``/data`` is a
    writable folder (a Space with persistent storage: it survives restarts); else ``~/.cache/wavbrivl``."""
    if os.environ.get("WAVBRIVL_HOME"):
        return Path(os.environ["WAVBRIVL_HOME"])
    data = Path("/data")
    if data.is_dir() and os.access(data, os.W_OK):
        return data / "wavbrivl"
    return Path.home() / ".cache" / "wavbrivl"


def real_home(preset: str) -> Path:
    """The kept bundle of ``preset``: ``<real_root>/real/<preset>``."""
    return real_root() / "real" / preset


def backbone_ref(preset: str) -> str:
    """The preset's backbone as a card's ``hub.backbone`` names it (``hf-hub:org/name`` or ``model/tag``)."""
    b = get_preset(preset).backbone
    return b.model_name if b.model_name.startswith("hf-hub:") else f"{b.model_name}/{b.pretrained}"


def hub_repos(preset: str) -> list[str]:
    """Every hub repo the real mode of ``preset`` may download with nothing else configured: the backbone's and
    those of the space's default generator sources (GPU and CPU hosts); for a Space's ``models:`` and preloading."""
    space = get_preset(preset).backbone.id
    repos = [backbone_files(backbone_ref(preset))[0]]
    for name in dict.fromkeys(default_sources(space, gpu=True) + default_sources(space, gpu=False)):
        repos += source_repos(generator_source(name))
    return list(dict.fromkeys(repos))


def preload_entries(preset: str) -> list[str]:
    """``preload_from_hub`` lines (``"repo file,file"``) for the repos of :func:`hub_repos` that ``generators.json``
    lists known files of (``_preload``): fetched when the Space is built, so the first boot downloads less."""
    from .hub import SOURCES_FILE

    known = json.loads(SOURCES_FILE.read_text()).get("_preload", {})
    return [f"{repo} {','.join(known[repo])}" for repo in hub_repos(preset) if known.get(repo)]


def fingerprint(bundle: Path) -> str:
    """A content hash of what a retargeting reads from a bundle (its config, audio weights and pairs' summary):
    a kept bundle is reused only while its source is the same."""
    h = hashlib.sha256()
    for rel in (CONFIG_NAME, WEIGHTS_NAME, "pairs/pairs.json", "pairs/manifest.csv"):
        path = bundle / rel
        h.update(rel.encode())
        if path.is_file():
            h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()[:16]


def is_hub_id(value: str | None) -> bool:
    """``owner/name`` that is not a folder here."""
    return bool(value) and not Path(str(value)).exists() and re.fullmatch(r"[\w.-]+/[\w.-]+", str(value)) is not None


def space_of(bundle: Path) -> str:
    return json.loads((bundle / CONFIG_NAME).read_text())["backbone"]["id"]


def kept_bundle(source: Path, preset: str, home: Path) -> bool:
    """Whether ``home`` holds a finished retargeting of ``source`` into ``preset``'s space."""
    try:
        marker = json.loads((home / MARKER).read_text())
    except (OSError, json.JSONDecodeError):
        return False
    return ((home / CONFIG_NAME).is_file() and marker.get("preset") == preset and marker.get("source") == fingerprint(source)
            and marker.get("space") == get_preset(preset).backbone.id)


def wanted_generators(space: str, configured: str | None, gpu: bool) -> list[str]:
    """Generator source names to try: the configured one, else the space's defaults for this host."""
    if configured is not None:
        return [configured] if configured in known_sources() else []
    return default_sources(space, gpu)


def missing_line(preset: str, missing: list[tuple[str, str]], serving: str) -> str:
    """The one line said when the real mode cannot run: what is missing, why, and what is served instead."""
    where = "the Hugging Face cache (HF_HUB_OFFLINE is set)" if offline() else "the Hugging Face Hub and cache"
    parts = "; ".join(f"{what} ({why})" for what, why in missing)
    return (f"real mode {preset} is off: missing from {where}: {parts}. Serving the offline bundle {serving} instead "
            "(search, labels and pictures, nothing from the Hub).")


def prepare_real(
    preset: str,
    *,
    source: Path,
    hub_bundle: str | None = None,
    generator: str | None = None,
    gpu: bool = False,
    device: str = "cpu",
    steps: int | None = None,
    home: Path | None = None,
    stage: StageFn | None = None,
) -> RealChoice:
    """Decide (and, at first boot, build) what the real mode of ``preset`` serves; see the module docstring.

    ``source``: the bundle to retarget and the offline fallback (the default bundle); ``hub_bundle``: a hub id
    to load instead of retargeting; ``generator``: a configured source name, "none"-like values already mapped
    to ``""`` by the caller mean no generator, None means the space's defaults for this host (``gpu``).
    """
    stage = stage or (lambda text, fraction: None)
    space = get_preset(preset).backbone.id
    fallback = RealChoice(str(source), AUTO)
    sources = [] if generator == "" else wanted_generators(space, generator, gpu)
    passed = generator if generator and generator not in known_sources() else None  # a generator folder or hub id
    if hub_bundle:
        stage(f"getting the bundle {hub_bundle} (Hugging Face Hub/cache)", 0.05)
        from huggingface_hub import snapshot_download

        try:
            folder = Path(snapshot_download(hub_bundle, local_files_only=offline()))
        except Exception as exc:  # noqa: BLE001 - any reason it cannot be had means the same here
            return replace(fallback, notice=missing_line(preset, [(f"bundle {hub_bundle}", reason_missing(exc))], source.name))
        card = BundleCard.load(folder) if (folder / BUNDLE_FILE).is_file() else None
        if generator is None and card is not None and card.hub is not None and card.hub.generators:
            return RealChoice(hub_bundle, AUTO, generator_repos="the bundle's card")  # its own sources, resolved on loading
        if not sources:
            return RealChoice(hub_bundle, passed)
        _, resolved, why = resolve_parts(HubParts(generators=sources))
        # None resolved: the first is still named, so loading records why it cannot paint (the page shows it).
        return RealChoice(hub_bundle, resolved.source.name if resolved else sources[0],
                          generator_repos=resolved.describe() if resolved else (why or ""))

    stage(f"checking the {preset} backbone and generators (Hugging Face Hub/cache)", 0.05)
    try:
        _, resolved, why = resolve_parts(HubParts(backbone=backbone_ref(preset), generators=sources))
    except HubAssetError as exc:
        if "SHA-256" in str(exc):
            raise
        return replace(fallback, notice=missing_line(preset, exc.missing or [("parts", str(exc))], source.name))
    if sources and resolved is None:
        return replace(fallback, notice=missing_line(preset, [("generators", why or "none resolved")], source.name))
    chosen = resolved.source.name if resolved is not None else passed
    repos = resolved.describe() if resolved is not None else ("none configured" if not sources else "")
    log.info("real mode %s: backbone %s; generator %s", preset, backbone_ref(preset), f"{chosen}: {repos}" if chosen else repos)

    if space_of(source) == space:  # already in the space: nothing to retarget
        return RealChoice(str(source), chosen, generator_repos=repos)
    home = home or real_home(preset)
    if kept_bundle(source, preset, home):
        stage(f"loading the {preset} bundle kept in {home}", 0.1)
        return RealChoice(str(home), chosen, generator_repos=repos)
    pairs = find_pairs(source)
    if pairs is None:
        return replace(fallback, notice=f"real mode {preset} is off: the bundle {source.name} carries no training pairs "
                                        f"(pairs/) to retarget, and no {preset} bundle is kept in {home}. Serving {source.name} "
                                        "instead; give a bundle in that space with --checkpoint (WAVBRIVL_CHECKPOINT).")
    rows = pairs.rows
    n_steps = steps or int((pairs.train_recipe or {}).get("max_steps") or 0) or None
    stage(f"retargeting {source.name} into {space} (first boot only: embedding {len({p for r in rows for p in r.images})} "
          f"pictures and {len({r.caption for r in rows if r.caption})} captions, then training the head for "
          f"{n_steps or 'the default number of'} steps; minutes on a CPU)", 0.15)
    from .pipeline import WavBriVLPipeline

    try:
        WavBriVLPipeline.from_pretrained(source, device=device, generator=None).retarget(
            preset, home, steps=steps, cache_dir=real_root() / "embeddings", device=device, progress=False)
    except Exception as exc:  # noqa: BLE001 - the offline bundle still works; say why the real one does not
        log.exception("real mode %s: retargeting failed", preset)
        return replace(fallback, notice=f"real mode {preset} is off: retargeting {source.name} failed ({type(exc).__name__}: "
                                        f"{exc}). Serving {source.name} instead.")
    card = BundleCard.load(home) if (home / BUNDLE_FILE).is_file() else BundleCard.default(source.name, home)
    replace(card, hub=replace(card.hub or HubParts(), backbone=backbone_ref(preset))).save(home)  # later boots check it
    (home / MARKER).write_text(json.dumps({"preset": preset, "space": space, "source": fingerprint(source),
                                           "source_bundle": source.name}, indent=2) + "\n")
    return RealChoice(str(home), chosen, generator_repos=repos, retargeted=True)
