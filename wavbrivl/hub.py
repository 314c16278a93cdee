"""Parts a bundle names on the Hugging Face Hub instead of carrying them: fetched into the cache, checked.

Why name instead of carry: real backbones and generators are gigabytes under their own licences. A bundle's
card names them (``hub`` in ``bundle.json``: :class:`HubParts`), and the generator sources this project knows
are data too (``generators.json``: :class:`GeneratorSource`), so no repo id is hard-coded in a code path and a
removed repo (Stability AI took Stable Diffusion 2.x off the Hub in November 2025) is a one-line edit. Parts are
fetched into the ordinary Hugging Face cache with huggingface_hub (its progress bars, its offline mode), so one
download serves every bundle and every tool.

Why checksums: a cache file can be truncated or replaced. A SHA-256 pinned in the card or the source is
checked; a file with no pin has its SHA-256 recorded in a ledger beside the cache at first download and is
verified against it on every later use (re-hashed only when its size or modification time changed, so a
start-up does not re-read gigabytes). A mismatch is refused, naming the file.

Why one message: offline (``HF_HUB_OFFLINE=1``) or with the Hub unreachable, every missing part is collected
and reported together, with the offline bundle that works without any of them (:data:`OFFLINE_BUNDLE`).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Sequence

log = logging.getLogger(__name__)

#: The bundle that runs with nothing from the Hub (it ships in the repository).
OFFLINE_BUNDLE = "assets/everyday"
LEDGER_NAME = "wavbrivl-sha256.json"
URL_CACHE = "wavbrivl-urls"
SOURCES_FILE = Path(__file__).with_name("generators.json")
#: The embedding space IP-Adapter SD 1.5 and Stable unCLIP 2.1 consume (their image encoder's).
VIT_H_SPACE = "ViT-H-14/laion2b_s32b_b79k"
#: Where that space's open_clip model lives on the Hub (config and weights; open_clip's own ``hf_hub`` for the tag).
VIT_H_REPO = "laion/CLIP-ViT-H-14-laion2B-s32B-b79K"


class HubAssetError(RuntimeError):
    """A named part that cannot be had (missing, offline) or is refused (checksum); one line says which and why.

    ``missing``: ``(part, why)`` for each part that could not be had, for callers that word their own message
    (the app's real mode says what it serves instead)."""

    def __init__(self, message: str, missing: Sequence[tuple[str, str]] = ()) -> None:
        super().__init__(message)
        self.missing = list(missing)


def offline() -> bool:
    """Whether the Hub must not be contacted: ``HF_HUB_OFFLINE`` now, or as huggingface_hub read it at import."""
    from huggingface_hub import constants

    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes") or bool(constants.HF_HUB_OFFLINE)


def _local(local_files_only: bool | None) -> bool:
    return offline() if local_files_only is None else local_files_only


# ============================================================================ what a card names
@dataclass
class GeneratorSource:
    """A generator made of hub parts: a base pipeline (the first of ``repos`` that exists), and for
    ``kind="ip-adapter"`` the IP-Adapter weights and optionally the LCM-LoRA few-step weights.

    ``sha256`` pins files as ``"repo/path/in/repo": hexdigest``. ``space_id`` is the embedding space the
    generator consumes (IP-Adapter SD 1.5 and unCLIP 2.1: OpenCLIP ViT-H-14, the ``vit-h-14`` preset).
    """

    name: str
    kind: str  # "ip-adapter" | "unclip"
    repos: list[str]
    adapter_repo: str = ""
    adapter_file: str = "models/ip-adapter_sd15.safetensors"
    adapter_scale: float = 1.0
    lcm_lora_repo: str = ""  # empty: no few-step mode
    lcm_lora_file: str = "pytorch_lora_weights.safetensors"
    space_id: str = VIT_H_SPACE
    sha256: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in ("ip-adapter", "unclip"):
            raise ValueError(f"generator source {self.name!r}: kind must be 'ip-adapter' or 'unclip', not {self.kind!r}")
        if not self.repos:
            raise ValueError(f"generator source {self.name!r}: 'repos' lists no candidate repo")
        if self.kind == "ip-adapter" and not self.adapter_repo:
            raise ValueError(f"generator source {self.name!r}: an ip-adapter source needs 'adapter_repo'")

    @property
    def needs_gpu(self) -> bool:
        """Only the few-step (LCM-LoRA) IP-Adapter mode paints in reasonable time on a CPU."""
        return not (self.kind == "ip-adapter" and self.lcm_lora_repo)

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "generator source") -> "GeneratorSource":
        if not isinstance(data, dict):
            raise ValueError(f"{where}: expected a JSON object or a known source name")
        unknown = sorted(set(data) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"{where} has unknown field(s) {', '.join(map(repr, unknown))}")
        try:
            return cls(**data)
        except TypeError as exc:
            raise ValueError(f"{where}: {exc}") from None


def known_sources() -> dict[str, GeneratorSource]:
    """The generator sources this project configures (``wavbrivl/generators.json``), by name."""
    data = json.loads(SOURCES_FILE.read_text())
    return {name: GeneratorSource.from_dict({"name": name, **spec}, f"{SOURCES_FILE.name}: {name}")
            for name, spec in data.items() if not name.startswith("_")}


def default_sources(space_id: str, gpu: bool) -> list[str]:
    """The source names that serve ``space_id`` when none is configured (``generators.json``'s ``_defaults``): on a
    GPU host full-quality first, on a CPU-only host only few-step ones; empty for a space no source consumes."""
    defaults = json.loads(SOURCES_FILE.read_text()).get("_defaults", {})
    return list(defaults.get(space_id, {}).get("gpu" if gpu else "cpu", []))


def source_repos(source: GeneratorSource) -> list[str]:
    """Every hub repo a source may download from: its candidate base repos, adapter and LCM-LoRA."""
    return list(dict.fromkeys([*source.repos, *filter(None, [source.adapter_repo, source.lcm_lora_repo])]))


def generator_source(value: str | dict[str, Any] | GeneratorSource) -> GeneratorSource:
    """A source given by name (from :func:`known_sources`), as a card's inline object, or as is."""
    if isinstance(value, GeneratorSource):
        return value
    if isinstance(value, str):
        sources = known_sources()
        if value not in sources:
            raise ValueError(f"unknown generator source {value!r} (known: {', '.join(sources)})")
        return sources[value]
    return GeneratorSource.from_dict(value)


@dataclass
class HubParts:
    """The ``hub`` section of a card: parts resolved at run time instead of shipped in the bundle.

    ``backbone``: ``hf-hub:org/name`` or an open_clip ``model/tag`` (e.g. ``ViT-H-14/laion2b_s32b_b79k``);
    ``generators``: alternatives, first that resolves is used (a name from ``generators.json`` or an inline
    :class:`GeneratorSource`); ``wav2clip_url`` / ``wav2clip_sha256``: the published Wav2CLIP checkpoint, for a
    bundle whose audio encoder is Wav2CLIP's; ``sha256``: pins, ``"repo/path": hexdigest`` (or ``url: hex``).
    """

    backbone: str = ""
    generators: list[Any] = field(default_factory=list)
    wav2clip_url: str = ""
    wav2clip_sha256: str = ""
    sha256: dict[str, str] = field(default_factory=dict)

    def sources(self) -> list[GeneratorSource]:
        """The card's generator sources, with the card's pins added to each."""
        out = []
        for entry in self.generators:
            source = generator_source(entry)
            out.append(GeneratorSource(**{**asdict(source), "sha256": {**source.sha256, **self.sha256}}))
        return out

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["generators"] = [g if isinstance(g, str) else asdict(generator_source(g)) for g in self.generators]
        return data


# ============================================================================ checksums
def _ledger_path() -> Path:
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE) / LEDGER_NAME


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def verify(path: str | os.PathLike, key: str, sha256: str | None = None) -> Path:
    """Check ``path`` (known as ``key``, e.g. ``repo@revision/file``) against its pinned SHA-256, else against
    the one recorded at its first use (recording it then); :class:`HubAssetError` names the file on a mismatch."""
    path = Path(path)
    ledger_file = _ledger_path()
    try:
        ledger = json.loads(ledger_file.read_text())
    except (OSError, json.JSONDecodeError):
        ledger = {}
    st = path.stat()
    entry = ledger.get(key)
    same = entry is not None and entry.get("size") == st.st_size and entry.get("mtime_ns") == st.st_mtime_ns
    digest = entry["sha256"] if same else _sha256(path)
    expected = (sha256 or "").lower() or (entry or {}).get("sha256")
    if expected and digest != expected:
        how = "pinned" if sha256 else "recorded at its first download"
        raise HubAssetError(f"{key}: SHA-256 {digest[:16]}... does not match the {how} {expected[:16]}...; the file "
                            f"{path} is refused (delete it from the cache and download it again)")
    if not same or entry.get("sha256") != digest:
        ledger[key] = {"sha256": digest, "size": st.st_size, "mtime_ns": st.st_mtime_ns}
        ledger_file.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=ledger_file.parent, delete=False, suffix=".tmp") as tmp:
            json.dump(ledger, tmp, indent=1, sort_keys=True)
        os.replace(tmp.name, ledger_file)
    return path


def _revision_of(path: Path, filename: str) -> str:
    """The snapshot (commit) folder a cached file sits in: ``.../snapshots/<rev>/<filename>``."""
    snapshot = path
    for _ in Path(filename).parts:
        snapshot = snapshot.parent
    return snapshot.name


def reason_missing(exc: Exception) -> str:
    """A short reason a hub part could not be had, for the one message."""
    from huggingface_hub.errors import GatedRepoError, LocalEntryNotFoundError, RepositoryNotFoundError

    if isinstance(exc, GatedRepoError):
        return "gated: accept its licence on the Hub and log in"
    if isinstance(exc, RepositoryNotFoundError):
        return "no such repo on the Hub (removed, renamed or private)"
    if isinstance(exc, LocalEntryNotFoundError):
        return "not in the local cache" + (" and HF_HUB_OFFLINE is set" if offline() else " and the Hub is unreachable")
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {first}"[:200]


def missing_message(missing: Sequence[tuple[str, str]]) -> str:
    """One line: every part that cannot be had, why, and what works without them."""
    parts = "; ".join(f"{what} ({why})" for what, why in missing)
    hint = ("download them once with a network connection (they go to the Hugging Face cache), or run the offline "
            f"bundle {OFFLINE_BUNDLE} (python app.py with no arguments), which needs none of them")
    return f"missing from the Hugging Face Hub/cache: {parts}. To fix: {hint}"


# ============================================================================ fetching
def hub_file(repo: str, filename: str, *, sha256: str | None = None, local_files_only: bool | None = None) -> Path:
    """One file of a hub repo, from the cache or downloaded (with progress), checked (see :func:`verify`)."""
    from huggingface_hub import hf_hub_download

    path = Path(hf_hub_download(repo, filename, local_files_only=_local(local_files_only)))
    return verify(path, f"{repo}@{_revision_of(path, filename)}/{filename}", sha256)


def hub_pipeline(repo: str, *, pins: dict[str, str] | None = None, local_files_only: bool | None = None) -> Path:
    """A diffusers pipeline repo's snapshot folder (``DiffusionPipeline.download``: only the files the pipeline
    loads), every file checked; the folder is what ``from_pretrained`` then reads."""
    from diffusers import DiffusionPipeline

    folder = Path(DiffusionPipeline.download(repo, local_files_only=_local(local_files_only)))
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = path.relative_to(folder).as_posix()
        verify(path, f"{repo}@{folder.name}/{rel}", (pins or {}).get(f"{repo}/{rel}"))
    return folder


def url_file(url: str, *, sha256: str | None = None, local_files_only: bool | None = None) -> Path:
    """A file named by URL (the Wav2CLIP checkpoint), kept in the Hugging Face cache folder and checked; offline
    it must already be there."""
    from huggingface_hub import constants

    name = re.sub(r"[^\w.-]", "_", Path(url.split("?")[0]).name) or "download"
    target = Path(constants.HF_HUB_CACHE) / URL_CACHE / hashlib.sha256(url.encode()).hexdigest()[:16] / name
    if not target.is_file():
        if _local(local_files_only):
            raise HubAssetError(missing_message([(url, "not in the local cache and HF_HUB_OFFLINE is set")]))
        import torch.hub

        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            torch.hub.download_url_to_file(url, str(target), progress=True)
        except Exception as exc:  # noqa: BLE001 - any transport failure is the same to the person waiting
            raise HubAssetError(missing_message([(url, f"{type(exc).__name__}: {exc}")])) from None
    return verify(target, url, sha256)


@dataclass
class ResolvedSource:
    """Where a :class:`GeneratorSource`'s parts are on this machine, and which candidate repo was used."""

    source: GeneratorSource
    repo: str
    folder: Path
    adapter: Path | None = None
    lcm_lora: Path | None = None

    def describe(self) -> str:
        extra = [f"{self.source.adapter_repo} ({self.source.adapter_file})"] if self.adapter else []
        extra += [f"{self.source.lcm_lora_repo} (LCM-LoRA, few steps)"] if self.lcm_lora else []
        return " + ".join([self.repo, *extra])


def resolve_source(source: GeneratorSource, *, local_files_only: bool | None = None) -> ResolvedSource:
    """Find every part of ``source`` (the first candidate base repo that exists, cache first); all that is
    missing is reported in one :class:`HubAssetError`. A checksum mismatch is refused at once."""
    from huggingface_hub import hf_hub_download

    local = _local(local_files_only)
    missing: list[tuple[str, str]] = []
    repo, tried = None, []
    for candidate in source.repos:
        try:
            hf_hub_download(candidate, "model_index.json", local_files_only=local)
            repo = candidate
            break
        except Exception as exc:  # noqa: BLE001 - each candidate's reason goes into the one message
            tried.append((candidate, reason_missing(exc)))
    if repo is None:
        missing.extend(tried)
    elif tried:
        log.info("generator %r: %s not available (%s); using %s", source.name, tried[0][0], tried[0][1], repo)

    def part(repo_id: str, filename: str) -> Path | None:
        try:
            return hub_file(repo_id, filename, sha256=source.sha256.get(f"{repo_id}/{filename}"), local_files_only=local)
        except HubAssetError:
            raise
        except Exception as exc:  # noqa: BLE001 - collected, reported once
            missing.append((f"{repo_id}/{filename}", reason_missing(exc)))
            return None

    adapter = part(source.adapter_repo, source.adapter_file) if source.kind == "ip-adapter" else None
    lora = part(source.lcm_lora_repo, source.lcm_lora_file) if source.lcm_lora_repo else None
    if repo is None or missing:
        label = f"generator {source.name!r}"
        label += f" (none of {', '.join(source.repos)})" if repo is None and len(source.repos) > 1 else ""
        raise HubAssetError(f"{label}: " + missing_message(missing), [(f"{label}: {what}", why) for what, why in missing])
    folder = hub_pipeline(repo, pins=source.sha256, local_files_only=local)
    return ResolvedSource(source, repo, folder, adapter, lora)


def backbone_files(ref: str) -> tuple[str, list[str]]:
    """The hub repo and the weight files (safetensors first) open_clip reads for a backbone reference."""
    if ref.startswith("hf-hub:"):
        return ref[len("hf-hub:"):], ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
    import open_clip

    model, _, tag = ref.partition("/")
    cfg = open_clip.get_pretrained_cfg(model, tag) if tag else {}
    if not cfg.get("hf_hub"):
        raise ValueError(f"backbone {ref!r}: not 'hf-hub:org/name' nor an open_clip model/tag with hub weights")
    repo, filename = os.path.split(cfg["hf_hub"])  # open_clip's form: "org/name/" or "org/name/file"
    return repo, [filename] if filename else ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]


def resolve_parts(parts: HubParts, *, local_files_only: bool | None = None
                  ) -> tuple[dict[str, Path], ResolvedSource | None, str | None]:
    """Fetch or find what a card names: ``({"backbone": path, "wav2clip": path}, generator or None, why no
    generator)``. A missing backbone or Wav2CLIP checkpoint raises one :class:`HubAssetError` naming every
    missing part (generators included); missing generators alone are returned as the reason, so the caller
    can run without one."""
    local = _local(local_files_only)
    missing: list[tuple[str, str]] = []
    found: dict[str, Path] = {}
    if parts.backbone:
        repo, names = backbone_files(parts.backbone)
        errors = []
        for name in names:
            try:
                found["backbone"] = hub_file(repo, name, sha256=parts.sha256.get(f"{repo}/{name}"), local_files_only=local)
                break
            except HubAssetError:
                raise
            except Exception as exc:  # noqa: BLE001 - the first file's reason is reported
                errors.append(reason_missing(exc))
        if "backbone" not in found:
            missing.append((f"backbone {parts.backbone} ({repo})", errors[0]))
    if parts.wav2clip_url:
        try:
            found["wav2clip"] = url_file(parts.wav2clip_url, sha256=parts.wav2clip_sha256 or parts.sha256.get(parts.wav2clip_url),
                                         local_files_only=local)
        except HubAssetError as exc:
            if "SHA-256" in str(exc):
                raise
            missing.append((f"Wav2CLIP checkpoint {parts.wav2clip_url}",
                            "not in the local cache" if local else "download failed"))
    generator, reasons = None, []
    for source in parts.sources():
        try:
            generator = resolve_source(source, local_files_only=local)
            break
        except HubAssetError as exc:
            if "SHA-256" in str(exc):
                raise
            reasons.append(str(exc).split(". To fix:")[0].replace("missing from the Hugging Face Hub/cache: ", ""))
    why_no_generator = None
    if parts.generators and generator is None:
        why_no_generator = missing_message([("generators", " | ".join(reasons))])
    if missing:
        missing += [("generators", " | ".join(reasons))] if reasons and generator is None else []
        raise HubAssetError(missing_message(missing), missing)
    return found, generator, why_no_generator


# ============================================================================ pushing a bundle
def push_bundle(folder: str | os.PathLike, repo_id: str, *, client: tuple[Any, str] | None = None, private: bool = False) -> str:
    """Upload a bundle folder to the model repo ``repo_id`` (created if needed) with ``upload_folder``; returns
    its URL. The token and the connection are checked first (:func:`wavbrivl.space.hub_client`), so a push
    that cannot work uploads nothing; failures are :class:`~wavbrivl.space.SpaceError` with one line."""
    from huggingface_hub import constants

    from .bundle import BUNDLE_FILE, BundleCard, current_bundle_path
    from .space import SpaceError, check_repo_id, hub_client

    folder = current_bundle_path(folder)
    if not (folder / "config.json").is_file():
        raise SpaceError(f"{folder}: not a bundle (no config.json); nothing was uploaded")
    if (folder / BUNDLE_FILE).is_file():
        BundleCard.load(folder)  # a card that cannot be read is an error here, not for whoever downloads it
    check_repo_id(repo_id, what="--repo takes a model repo id")
    api, user = client or hub_client()
    try:
        api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
        api.upload_folder(folder_path=str(folder), repo_id=repo_id, repo_type="model",
                          commit_message=f"Upload wavbrivl bundle (by {user})")
    except Exception as exc:  # noqa: BLE001 - one line; the Hub applies a commit whole or not at all
        raise SpaceError(f"uploading to {repo_id} failed ({type(exc).__name__}: {exc})") from None
    return f"{constants.ENDPOINT}/{repo_id}"
