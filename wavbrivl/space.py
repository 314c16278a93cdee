"""A Hugging Face Space from this checkout: a clean tree with only what the Space runs, and its upload.

Why a separate tree instead of pushing the repository: the Hub refuses a push whose history holds binary
files stored outside Git LFS/Xet, or any file over 10 MiB outside LFS; this repository's history holds
several rebuilt bundles, and a Space needs none of the tests, benchmarks, docs or world builders. The export
is a plain folder (no git history): ``app.py``, ``demo/``, ``wavbrivl/`` (without the world builders),
``requirements.txt`` (without the editable install of the checkout), the chosen bundle(s) under ``assets/``,
the README with its front matter, and ``.gitattributes`` whose rules route every binary kind through LFS.
:func:`push_space` uploads it with ``huggingface_hub.upload_folder``, which stores binaries the way the
Hub requires; it checks the token and the connection first, so a push that cannot work uploads nothing.
"""
from __future__ import annotations

import fnmatch
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Sequence

import yaml

from .bundle import BUNDLE_FILE, BundleCard, current_bundle_path
from .pairs import PAIRS_DIR

#: The bundle under ``assets/`` the demo serves and an export ships when none is named (``demo/config.py`` reads it).
DEFAULT_BUNDLE_NAME = "everyday"
#: The Hub's limit for a file stored outside LFS.
HUB_MAX_PLAIN_BYTES = 10 * 1024 * 1024

TOP_FILES = ("app.py", "requirements.txt", ".gitattributes")
PACKAGES = ("demo", "wavbrivl")
#: Inside the packages: build and cache leftovers, and the world builders (bundles are data; the Space loads one).
SKIPPED = ("__pycache__", "*.pyc", "*.pyo", "*.egg-info", ".*", "wavbrivl/worlds")
_HUB_MODEL_URL = re.compile(r"^https?://(?:huggingface\.co|hf\.co)/(?!datasets/|spaces/)([\w.-]+/[\w.-]+)")
_MD_LINK = re.compile(r"(!?)\[([^\]]*)\]\(([^)\s]+)\)")


class SpaceError(RuntimeError):
    """An export or push that cannot be done; the message says what to do."""


def source_root() -> Path:
    """The checkout holding this package (``app.py`` beside ``wavbrivl/``)."""
    root = Path(__file__).resolve().parent.parent
    if not (root / "app.py").is_file() or not (root / "demo").is_dir():
        raise SpaceError(f"{root} holds no app.py and demo/: run the export from a checkout of the wavbrivl repository")
    return root


# ---------------------------------------------------------------------------------------------- export
def export_space(out: str | os.PathLike, bundles: Sequence[str] = (DEFAULT_BUNDLE_NAME,), *,
                 source: str | os.PathLike | None = None, force: bool = False, pairs: bool = True,
                 real: str | None = None) -> Path:
    """Write the Space tree for ``bundles`` (folder names under ``assets/``) to ``out``; returns ``out``.

    ``pairs=False`` leaves each bundle's training pairs (``pairs/``) out: the Space does not need them to run,
    only to retarget the bundle to another embedding space (which ``real`` mode does at first boot).

    ``real``: a preset (``vit-h-14``) the Space is meant to serve with ``WAVBRIVL_REAL``: the README's front matter
    then suggests ZeroGPU hardware, lists the hub repos that mode downloads (``models``) and preloads the files
    known to exist (``preload_from_hub``), and its body says how to switch the mode on. No weights are copied.

    The tree is written beside ``out`` and renamed into place, so a failed export leaves nothing half-written.
    ``out`` must not exist unless ``force`` (then it must look like an earlier export, and is replaced).
    """
    src = Path(source).resolve() if source else source_root()
    out = Path(out).resolve()
    names = list(dict.fromkeys(bundles)) or [DEFAULT_BUNDLE_NAME]
    if len(names) > 1 and DEFAULT_BUNDLE_NAME not in names:
        raise SpaceError(f"with several bundles the Space serves the default one ({DEFAULT_BUNDLE_NAME!r}), which is not among "
                         f"{names}: add it, or export a single bundle (the Space then serves that one)")
    folders = [_checked_bundle(src, name) for name in names]
    if out == src or src.is_relative_to(out) or out.is_relative_to(src / "assets"):
        raise SpaceError(f"{out}: choose an output folder outside the checkout's assets/ and not above the checkout")
    if out.exists() and any(out.iterdir()):
        if not force:
            raise SpaceError(f"{out} exists and is not empty: choose a new folder, or pass --force to replace an earlier export")
        if not ((out / "app.py").is_file() and (out / ".gitattributes").is_file()):
            raise SpaceError(f"{out} does not look like an earlier Space export (no app.py and .gitattributes); not replacing it")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        for name in TOP_FILES:
            if not (src / name).is_file():
                raise SpaceError(f"{src / name}: missing; the Space needs it")
        shutil.copy2(src / "app.py", staging / "app.py")
        shutil.copy2(src / ".gitattributes", staging / ".gitattributes")
        (staging / "requirements.txt").write_text(space_requirements((src / "requirements.txt").read_text()))
        for package in PACKAGES:
            _copy_tree(src / package, staging / package, src)
        for folder in folders:
            left_out = () if pairs else (folder.relative_to(src).joinpath(PAIRS_DIR).as_posix(),)
            _copy_tree(folder, staging / "assets" / folder.name, src, left_out)
        cards = [BundleCard.load(f) for f in folders if (f / BUNDLE_FILE).is_file()]
        readme = space_readme((src / "README.md").read_text(encoding="utf-8"), cards, staging, real=real)
        (staging / "README.md").write_text(readme, encoding="utf-8")
        problems = files_outside_lfs(staging)
        if problems:
            raise SpaceError("the Hub would refuse these files; add a rule for their kind to .gitattributes: "
                             + "; ".join(problems[:5]))
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return out


def _checked_bundle(src: Path, name: str) -> Path:
    if "/" in name or "\\" in name or name.startswith("."):
        raise SpaceError(f"--bundle takes a folder name under assets/, not {name!r}")
    folder = current_bundle_path(src / "assets" / name)
    name = folder.name
    if not (folder / "config.json").is_file():
        found = sorted(p.parent.name for p in (src / "assets").glob("*/config.json"))
        raise SpaceError(f"assets/{name}: not a bundle (no config.json); bundles here: {', '.join(found) or 'none'}")
    if (folder / BUNDLE_FILE).is_file():
        BundleCard.load(folder)  # a card the page cannot read is an error now, not on the Space
    index = folder / "index" / "index.json"
    if index.is_file():
        outside = [p for p in _index_paths(index.parent) if not p.resolve().is_relative_to(folder.resolve())]
        if outside:
            raise SpaceError(f"assets/{name}/index lists pictures outside the bundle (e.g. {outside[0]}); export the index "
                             "self-contained first (WavBriVLPipeline.save_pretrained copies them inside)")
    return folder


def _index_paths(index_dir: Path) -> list[Path]:
    paths = []
    for meta in sorted(index_dir.glob("meta-*.jsonl")):
        for line in meta.read_text().splitlines():
            if line.strip() and (path := json.loads(line).get("path")):
                paths.append(index_dir / path)
    return paths


def _skipped(path: Path, root: Path, also: Sequence[str] = ()) -> bool:
    rel = path.relative_to(root).as_posix()
    return any(fnmatch.fnmatch(path.name, pattern) or rel == pattern for pattern in SKIPPED) or rel in also


def _copy_tree(src: Path, dst: Path, root: Path, also_skipped: Sequence[str] = ()) -> None:
    """Copy ``src`` to ``dst`` without :data:`SKIPPED` and the ``also_skipped`` paths (relative to ``root``)."""
    for path in sorted(src.rglob("*")):
        if any(_skipped(parent, root, also_skipped) for parent in [path, *path.parents]
               if parent.is_relative_to(root) and parent != root):
            continue
        target = dst / path.relative_to(src)
        if path.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        elif path.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)


def space_requirements(text: str) -> str:
    """``requirements.txt`` for the Space: the checkout's, without installing the checkout itself (``-e .``):
    the Space runs ``app.py`` from its folder, so ``wavbrivl`` and ``demo`` import from there."""
    lines = [line for line in text.splitlines() if not re.match(r"^\s*(-e|--editable)\s+\.\s*$", line)]
    return "\n".join(lines).rstrip() + "\n"


def space_readme(readme: str, cards: Sequence[BundleCard], tree: Path, *, real: str | None = None) -> str:
    """The README with honest front matter for the exported tree: ``app_file``, ``models`` as the hub models
    the bundles' cards name as sources (none: no ``models`` key), and links to files the Space lacks unlinked.
    With ``real`` (a preset), what that mode needs: see :func:`export_space` and :func:`real_section`."""
    match = re.match(r"^---\n(.*?)\n---\n", readme, re.S)
    if not match:
        raise SpaceError("README.md has no front matter (--- ... ---): the Space would not know it is a Gradio app")
    meta = yaml.safe_load(match.group(1)) or {}
    meta.update(sdk="gradio", app_file="app.py")
    models = sorted({m.group(1) for card in cards for part in card.parts if (m := _HUB_MODEL_URL.match(part.source or ""))})
    if real:
        from .real import hub_repos, preload_entries

        models = sorted({*models, *hub_repos(real)})
        meta["suggested_hardware"] = "zero-a10g"
        meta["preload_from_hub"] = preload_entries(real)
    if models:
        meta["models"] = models
    else:
        meta.pop("models", None)
    body = readme[match.end():]

    def relink(m: re.Match) -> str:
        bang, text, target = m.groups()
        if re.match(r"^[a-z]+:|^#", target) or (tree / target.split("#")[0]).exists():
            return m.group(0)
        return "" if bang else text  # a picture or a page the Space does not have

    body = _MD_LINK.sub(relink, body)
    if real:
        body = real_section(real) + body
    front = yaml.safe_dump(meta, sort_keys=False, allow_unicode=True, width=1000).strip()
    return f"---\n{front}\n---\n{body}"


def real_section(preset: str) -> str:
    """The README text a Space exported for real mode opens with: the variable that switches it on, where the
    retargeted bundle is kept, what is downloaded, and what happens without the network."""
    from .real import hub_repos

    repos = ", ".join(f"`{r}`" for r in hub_repos(preset))
    return (
        f"\n## Real mode (`{preset}`)\n\n"
        f"Set the Space variable **`WAVBRIVL_REAL={preset}`** (Settings → Variables and secrets) to serve search, labels and "
        f"pictures in the real `{preset}` embedding space; without it the Space serves the bundle in `assets/` as it is.\n\n"
        "| variable | what it does |\n|---|---|\n"
        f"| `WAVBRIVL_REAL` | `{preset}`: switch real mode on |\n"
        "| `WAVBRIVL_CHECKPOINT` | `OWNER/NAME`: load this bundle from the Hub (already in that space) instead of retargeting |\n"
        "| `WAVBRIVL_GENERATOR` | a source of `wavbrivl/generators.json` (`ip-adapter-sd15`, `ip-adapter-sd15-lcm`, `unclip-h`), "
        "or `none` |\n"
        "| `WAVBRIVL_HOME` | where the retargeted bundle is kept (default `/data/wavbrivl` with persistent storage, else "
        "`~/.cache/wavbrivl`) |\n\n"
        "Without `WAVBRIVL_CHECKPOINT`, the first boot retargets the default bundle into that space from its training "
        "pairs (`pairs/`): minutes, said on the page while it runs; later boots load the kept result. The mode downloads "
        f"{repos} into the Hugging Face cache (`preload_from_hub` fetches the files known to exist at build time). On "
        "ZeroGPU hardware pictures are painted inside `@spaces.GPU`; on a CPU Space in the few-step LCM mode. If a part "
        "cannot be had (offline, removed repo), the page says which in one line and serves the offline bundle.\n"
    )


# ---------------------------------------------------------------------------------------------- the Hub's rules
def is_binary(path: Path) -> bool:
    """Binary as the Hub sees it: a NUL byte in the first 8000 bytes (git's test) or bytes that are not UTF-8."""
    head = path.read_bytes()[:8000]
    if b"\0" in head:
        return True
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.start < len(head) - 4  # a multi-byte character cut by the 8000-byte window is still text
    return False


def lfs_patterns(gitattributes: Path) -> list[str]:
    """The patterns of ``.gitattributes`` lines that store files in LFS (``filter=lfs``)."""
    patterns = []
    for line in gitattributes.read_text().splitlines():
        parts = line.split()
        if parts and not parts[0].startswith("#") and "filter=lfs" in parts[1:]:
            patterns.append(parts[0])
    return patterns


def files_outside_lfs(tree: Path) -> list[str]:
    """Files of ``tree`` the Hub would refuse: binary or over 10 MiB, and matched by no LFS rule of its
    ``.gitattributes`` (the patterns this project uses: ``*.ext`` and paths; the export test asks git itself)."""
    patterns = lfs_patterns(tree / ".gitattributes") if (tree / ".gitattributes").is_file() else []
    problems = []
    for path in sorted(p for p in tree.rglob("*") if p.is_file() and ".git" not in p.relative_to(tree).parts):
        rel = path.relative_to(tree).as_posix()
        if any(fnmatch.fnmatch(rel if "/" in pat else path.name, pat.lstrip("/")) for pat in patterns):
            continue
        size = path.stat().st_size
        if size > HUB_MAX_PLAIN_BYTES:
            problems.append(f"{rel} ({size / 2**20:.1f} MiB, over the 10 MiB limit outside LFS)")
        elif is_binary(path):
            problems.append(f"{rel} (binary)")
    return problems


# ---------------------------------------------------------------------------------------------- push
def hub_client(token: str | None = None) -> tuple[Any, str]:
    """An ``HfApi`` with a token the Hub accepts, and the account's name; :class:`SpaceError` with one message
    (and nothing written anywhere) when there is no token, the Hub cannot be reached, or it refuses the token."""
    from huggingface_hub import HfApi, constants, get_token
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    token = token or get_token()
    if not token:
        raise SpaceError("no Hugging Face token: log in with `hf auth login` or set HF_TOKEN (a token with write access), "
                         "then push again; nothing was uploaded")
    api = HfApi(token=token)
    try:
        user = api.whoami()
    except OfflineModeIsEnabled:
        raise SpaceError("HF_HUB_OFFLINE is set, so the Hub cannot be reached: unset it to push; nothing was uploaded") from None
    except HfHubHTTPError as exc:
        status = getattr(exc.response, "status_code", "?")
        raise SpaceError(f"the Hub refused the token (HTTP {status}): log in again with `hf auth login`; "
                         "nothing was uploaded") from None
    except Exception as exc:  # noqa: BLE001 - every transport failure means the same to the person pushing
        raise SpaceError(f"cannot reach the Hugging Face Hub at {constants.ENDPOINT} ({type(exc).__name__}: {exc}); "
                         "check the network and push again; nothing was uploaded") from None
    return api, str(user.get("name", "unknown"))


def push_space(folder: str | os.PathLike, repo_id: str, *, client: tuple[Any, str] | None = None, private: bool = False) -> str:
    """Upload an exported tree to the Space ``repo_id`` (created if needed) with ``upload_folder``, which stores
    binary files the way the Hub requires; returns the Space's URL. ``client``: from :func:`hub_client`
    (checked before the export, so a push that cannot work fails before anything is written)."""
    from huggingface_hub import constants

    check_repo_id(repo_id)
    api, user = client or hub_client()
    try:
        api.create_repo(repo_id, repo_type="space", space_sdk="gradio", private=private, exist_ok=True)
        api.upload_folder(folder_path=str(folder), repo_id=repo_id, repo_type="space",
                          commit_message=f"Update from wavbrivl space export (by {user})")
    except Exception as exc:  # noqa: BLE001 - reported as one line; the Hub applies a commit whole or not at all
        raise SpaceError(f"uploading to the Space {repo_id} failed ({type(exc).__name__}: {exc})") from None
    return f"{constants.ENDPOINT}/spaces/{repo_id}"


def check_repo_id(repo_id: str, what: str = "--push takes a Space id") -> None:
    if not re.fullmatch(r"[\w.-]+/[\w.-]+", repo_id):
        raise SpaceError(f"{what} OWNER/NAME, not {repo_id!r}")
