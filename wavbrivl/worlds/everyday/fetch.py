"""Fetch step: get each needed Debian package and extract only the files the catalogue lists.

For each package: use its .deb from the debs folder or ``apt-get download`` it (``apt-get update`` once if
apt does not know it), extract the listed paths with ``dpkg-deb --fsys-tarfile | tar -x -T list`` (symlinks
inside the package are followed and replaced by copies), open containers and keep only the listed members,
render SoundFont notes and glyphs, check every file with a known md5, and delete what was only needed on the
way (containers, SoundFonts, fonts: 0ad's ``public.zip`` alone is 3.3 GB). A finished package is marked with
``.fetched.json`` (version + a hash of its file list) and skipped next time. One failing package is reported
and the others go on; nothing is installed.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .catalogue import PackageSpec, local_path, md5_matches
from .containers import extract_members
from .render import render_glyphs, render_soundfont

MARKER = ".fetched.json"
AISFX_WHEEL = "aisfx==0.1.2"


class FetchError(RuntimeError):
    """A package could not be fetched or extracted; the message names the package and the file."""


@dataclass
class PackageResult:
    package: str
    version: str = ""
    status: str = "failed"  # extracted | up to date | failed
    missing: list[str] = field(default_factory=list)  # catalogue paths not found (or not rendered)
    damaged: list[str] = field(default_factory=list)  # catalogue paths whose md5 did not match (deleted)
    notes: list[str] = field(default_factory=list)
    error: str = ""
    seconds: float = 0.0


@dataclass
class Fetcher:
    """Where .debs are found and whether they may be downloaded; apt's lists are refreshed at most once."""

    debs: Path
    download: bool = True
    _updated: bool = False

    def find_deb(self, package: str, version: str) -> Path | None:
        """The package's .deb in the debs folder, preferring the catalogued version."""
        candidates = sorted(self.debs.glob(f"{package}_*.deb"))
        for deb in candidates:
            if deb_field(deb, "Version") == version:
                return deb
        return candidates[-1] if candidates else None

    def get_deb(self, package: str, version: str) -> Path:
        deb = self.find_deb(package, version)
        if deb or not self.download:
            if deb is None:
                raise FetchError(f"{package}: no {package}_*.deb in {self.debs} (and downloading is off)")
            return deb
        self.debs.mkdir(parents=True, exist_ok=True)
        errors = []
        for attempt in (f"{package}={version}", package, "update", f"{package}={version}", package):
            if attempt == "update":
                if self._updated:
                    break
                say(f"  apt-get update (apt did not find {package})")
                subprocess.run(["apt-get", "update"], capture_output=True)
                self._updated = True
                continue
            r = subprocess.run(["apt-get", "download", attempt], cwd=self.debs, capture_output=True, text=True)
            deb = self.find_deb(package, version)
            if r.returncode == 0 and deb:
                return deb
            errors.append(f"apt-get download {attempt}: {r.stderr.strip()[-300:]}")
        raise FetchError(f"{package}: could not download ({'; '.join(errors)})")


def deb_field(deb: Path, name: str) -> str:
    r = subprocess.run(["dpkg-deb", "-f", str(deb), name], capture_output=True, text=True)
    if r.returncode != 0:
        raise FetchError(f"{deb}: not a readable .deb ({r.stderr.strip()[-300:]})")
    return r.stdout.strip()


def _tar_extract(deb: Path, dest: Path, paths: list[str]) -> None:
    with tempfile.NamedTemporaryFile("w", suffix=".lst", delete=False) as f:
        f.write("".join(f"./{p}\n" for p in paths))
        listing = f.name
    try:
        dpkg = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        tar = subprocess.run(["tar", "-x", "-C", str(dest), "--no-same-owner", "-T", listing], stdin=dpkg.stdout,
                             capture_output=True, text=True)
        dpkg.stdout.close()
        err = dpkg.stderr.read().decode(errors="replace")
        if dpkg.wait() != 0:
            raise FetchError(f"{deb}: dpkg-deb cannot read it ({err.strip()[-300:]})")
        if tar.returncode not in (0, 2):  # 2: some listed paths are not in the package (reported as missing)
            raise FetchError(f"{deb}: tar failed ({tar.stderr.strip()[-300:]})")
    finally:
        Path(listing).unlink()


def extract_paths(deb: Path, dest: Path, paths: list[str]) -> list[str]:
    """Extract exact ``paths`` from the .deb into ``dest``; return the ones not found.

    Packages often ship symlinks (megaglest's tilesets, openclipart): their targets inside the package are
    extracted too and each link is replaced by a copy, so every requested path is a regular file."""
    dest.mkdir(parents=True, exist_ok=True)
    _tar_extract(deb, dest, paths)
    for _ in range(5):  # a link's target may itself be a link
        targets = {t for t in (_dangling_target(dest, p) for p in paths) if t}
        if not targets:
            break
        _tar_extract(deb, dest, sorted(targets))
    for p in paths:
        full = dest / p
        if full.is_symlink() and full.exists():
            real = full.resolve()
            full.unlink()
            shutil.copy2(real, full)
    return [p for p in paths if not (dest / p).is_file()]


def _dangling_target(dest: Path, path: str) -> str | None:
    """The first path along ``path``'s chain of symlinks that is not extracted yet (None if it resolves or if
    ``path`` is no link at all: a plain missing file is just missing)."""
    for hop in range(10):
        full = dest / path
        if not full.is_symlink():
            return None if hop == 0 or full.exists() else path
        link = os.readlink(full)
        path = link.lstrip("/") if link.startswith("/") else os.path.normpath(os.path.join(os.path.dirname(path), link))
    return None


def spec_hash(spec: PackageSpec) -> str:
    return hashlib.sha1(json.dumps(spec.key(), sort_keys=True).encode()).hexdigest()


def is_up_to_date(spec: PackageSpec, root: Path) -> dict | None:
    """The package's marker if it was extracted from the same version and file list and its files are there."""
    marker = root / spec.package / MARKER
    if not marker.is_file():
        return None
    record = json.loads(marker.read_text())
    if record.get("spec_sha1") != spec_hash(spec):
        return None
    gone = set(record.get("missing", [])) | set(record.get("damaged", []))
    if any(not local_path(root, spec.package, p).is_file() for p in spec.all_paths() if p not in gone):
        return None
    return record


def fetch_package(spec: PackageSpec, root: Path, fetcher: Fetcher) -> PackageResult:
    """Extract one package (see the module docstring). Raises :class:`FetchError` for a package-level failure."""
    start = time.monotonic()
    record = is_up_to_date(spec, root)
    if record:
        return PackageResult(spec.package, record["version"], "up to date", record.get("missing", []),
                             record.get("damaged", []), seconds=time.monotonic() - start)
    dest = root / spec.package
    result = PackageResult(spec.package)
    deb = fetcher.get_deb(spec.package, spec.version)
    result.version = deb_field(deb, "Version")
    if result.version != spec.version:
        result.notes.append(f"version {result.version} differs from the catalogued {spec.version}; files may differ")
    wanted = set(spec.all_paths())
    intermediates = sorted(spec.files - wanted) + sorted(spec.members)  # containers, SoundFonts, fonts
    not_found = set(extract_paths(deb, dest, sorted(spec.files | set(spec.members))))
    missing = sorted(p for p in spec.files if p in not_found and p in wanted)
    for container, members in sorted(spec.members.items()):
        if container in not_found:
            missing += [f"{container}!{m}" for m in sorted(members)]
            continue
        try:
            missing += [f"{container}!{m}" for m in extract_members(dest / container, members, dest / (container + ".d"))]
        except (OSError, ValueError, zipfile.BadZipFile) as exc:
            raise FetchError(f"{spec.package}: cannot open {container} ({exc})") from None
    missing += _render(spec, root, dest, not_found)
    result.damaged = sorted(p for p, md5 in spec.md5.items() if p not in missing
                            and local_path(root, spec.package, p).is_file()
                            and not md5_matches(md5, local_path(root, spec.package, p)))
    for p in result.damaged:
        local_path(root, spec.package, p).unlink()
    for p in intermediates:
        (dest / p).unlink(missing_ok=True)
    result.missing, result.status, result.seconds = sorted(missing), "extracted", time.monotonic() - start
    marker = {"package": spec.package, "version": result.version, "deb": deb.name, "spec_sha1": spec_hash(spec),
              "missing": result.missing, "damaged": result.damaged}
    (dest / MARKER).write_text(json.dumps(marker, indent=1))
    return result


def _render(spec: PackageSpec, root: Path, dest: Path, not_found: set[str]) -> list[str]:
    """Render the package's SoundFont notes and glyphs; return the catalogue paths that could not be made."""
    failed: list[str] = []
    groups: dict[str, list[str]] = {}
    for path in spec.renders | spec.glyphs:
        groups.setdefault(path.split("#", 1)[0], []).append(path)
    for source, paths in sorted(groups.items()):
        if source in not_found:
            failed += paths
            continue
        out_dir = local_path(root, spec.package, paths[0]).parent
        if paths[0] in spec.renders:
            failed += render_soundfont(dest / source, paths, out_dir)
        else:
            failed += render_glyphs(dest / source, paths, out_dir)
    return failed


def fetch_aisfx_wheel(cache: Path) -> str:
    """Download (not install) the aisfx wheel: the build converts its pretrained weights. Returns a status line."""
    wheels = cache / "wheels"
    if list(wheels.glob("aisfx-0.1.2-*.whl")):
        return "aisfx wheel: up to date"
    r = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", AISFX_WHEEL, "-d", str(wheels)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise FetchError(f"aisfx: pip download {AISFX_WHEEL} failed ({r.stderr.strip()[-300:]})")
    return "aisfx wheel: downloaded"


def say(message: str) -> None:
    print(message, flush=True)  # progress of a long fetch shows even when the output goes to a file


def fetch_all(specs: dict[str, PackageSpec], cache: Path, fetcher: Fetcher, *, log=say) -> list[PackageResult]:
    """Fetch every package; failures are logged and returned, never raised, so the others go on."""
    root = cache / "extracted"
    results = []
    for spec in specs.values():
        try:
            result = fetch_package(spec, root, fetcher)
        except (FetchError, OSError, RuntimeError, ValueError) as exc:
            result = PackageResult(spec.package, spec.version, error=str(exc))
        results.append(result)
        detail = result.error or f"{result.version}  missing={len(result.missing)} damaged={len(result.damaged)}"
        log(f"{spec.package:32s} {result.status:10s} {detail}  ({result.seconds:.1f} s)")
        for note in result.notes:
            log(f"  note: {note}")
    (cache / "fetch.json").write_text(json.dumps([asdict(r) for r in results], indent=1))
    return results
