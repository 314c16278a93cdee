"""``wavbrivl world everyday fetch|prepare``: get the everyday world's files from Debian and build its world folder."""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("everyday", help="everyday sounds and drawings from Debian packages")
    sub = p.add_subparsers(dest="world_command", metavar="ACTION", required=True)
    f = sub.add_parser("fetch", help="download/extract the needed package files, then prepare the world folder")
    _common(f)
    f.add_argument("--debs", help="folder of .deb files to use (and to download missing ones into; default CACHE/debs)")
    f.add_argument("--no-download", action="store_true", help="use only the .debs already in --debs")
    f.add_argument("--no-aisfx", action="store_true", help="do not download the aisfx wheel into CACHE/wheels")
    f.add_argument("--no-prepare", action="store_true", help="stop after extracting")
    f.set_defaults(func=run_fetch)
    r = sub.add_parser("prepare", help="build CACHE/world from the extracted files")
    _common(r)
    r.set_defaults(func=run_prepare)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cache", required=True, help="cache folder: extracted/, world/, wheels/ go here")
    p.add_argument("--reduced", action="store_true", help="a CI-sized subset (small packages, 10 concepts)")
    p.add_argument("--corpus-hours", type=float, default=3.0, help="cap on the unlabelled corpus")
    p.add_argument("--catalogue", help=argparse.SUPPRESS)  # tests: a fixture catalogue.json
    p.add_argument("--corpus", help=argparse.SUPPRESS)
    p.add_argument("--packages", help=argparse.SUPPRESS)


def select(args: argparse.Namespace) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any]]:
    """The catalogue, corpus and packages to use (the committed ones unless overridden), reduced if asked."""
    from .catalogue import load_corpus, load_json, reduced

    catalogue = load_json("catalogue.json", args.catalogue)
    corpus = load_corpus(args.corpus)
    packages = load_json("packages.json", args.packages)
    if args.reduced:
        catalogue, corpus = reduced(catalogue, corpus, packages)
    return catalogue, corpus, packages


def run_fetch(args: argparse.Namespace) -> int:
    from .catalogue import file_entries, package_specs
    from .fetch import Fetcher, FetchError, fetch_aisfx_wheel, fetch_all

    cache = Path(args.cache).resolve()
    cache.mkdir(parents=True, exist_ok=True)
    catalogue, corpus, packages = select(args)
    specs = package_specs(file_entries(catalogue, corpus))
    start = time.monotonic()
    results = fetch_all(specs, cache, Fetcher(Path(args.debs or cache / "debs").resolve(), download=not args.no_download))
    elapsed = time.monotonic() - start
    failed = [r for r in results if r.error]
    required = {(f["package"], f["path"]) for c in catalogue["concepts"] for f in c["audio"] + c["pictures"]}
    failed_packages = {r.package for r in failed}
    lost = sorted((r.package, p) for r in results for p in r.missing + r.damaged if (r.package, p) in required)
    lost += sorted(f for f in required if f[0] in failed_packages)
    print(f"\nfetch: {len(results)} packages in {elapsed:.0f} s: {len(results) - len(failed)} ok, {len(failed)} failed; "
          f"{len(lost)} catalogue files missing or damaged")
    for r in failed:
        print(f"  FAILED {r.package}: {r.error}")
    for pkg, path in lost[:50]:
        print(f"  missing {pkg}: {path}")
    problems = bool(failed or lost)
    if not args.no_aisfx:
        try:
            print(fetch_aisfx_wheel(cache))
        except FetchError as exc:
            print(f"  FAILED {exc}")
            problems = True
    if not args.no_prepare:
        code = prepare(args, cache, catalogue, corpus, packages)
        problems = problems or code != 0
    return 1 if problems else 0


def run_prepare(args: argparse.Namespace) -> int:
    catalogue, corpus, packages = select(args)
    return prepare(args, Path(args.cache).resolve(), catalogue, corpus, packages)


def prepare(args: argparse.Namespace, cache: Path, catalogue: dict[str, Any], corpus: list[dict[str, Any]],
            packages: dict[str, Any]) -> int:
    from .dataset import prepare_world

    start = time.monotonic()
    summary = prepare_world(cache, catalogue, corpus, packages, corpus_hours=args.corpus_hours)
    print(json.dumps(summary, indent=1))
    print(f"prepared {cache / 'world'} in {time.monotonic() - start:.0f} s (details: {cache / 'world' / 'DATA.md'})")
    return 0
