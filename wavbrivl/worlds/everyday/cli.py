"""``wavbrivl world everyday fetch|prepare|build|eval``: get the everyday world's files from Debian, build its world
folder, train the bundle, and evaluate it."""
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
    b = sub.add_parser("build", help="train the bundle (backbone, audio encoder, generator) from CACHE/world, evaluate it")
    b.add_argument("--cache", required=True, help="the cache `fetch` filled (world/ and wheels/)")
    b.add_argument("--out", default="assets/everyday")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--reduced", action="store_true", help="a CI-sized build (a few steps of everything)")
    b.set_defaults(func=run_build)
    v = sub.add_parser("vet", help="decide which name-labelled corpus files join the catalogue, by listening models")
    v.add_argument("--cache", required=True, help="the cache `fetch` filled (world/ and wheels/)")
    v.add_argument("--bundle", default="assets/everyday", help="the bundle whose student listens (the current one)")
    v.add_argument("--margin", type=float, default=None, help="cosine margin each model must give the named concept")
    v.add_argument("--out", help="where to write vetted.json (default: beside the catalogue, committed data)")
    v.set_defaults(func=run_vet)
    e = sub.add_parser("eval", help="re-run a bundle's evaluation on the world's held-out recordings")
    e.add_argument("--cache", required=True)
    e.add_argument("--bundle", default="assets/everyday")
    e.add_argument("--out", required=True, help="report folder")
    e.set_defaults(func=run_eval)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cache", required=True, help="cache folder: extracted/, world/, wheels/ go here")
    p.add_argument("--reduced", action="store_true", help="a CI-sized subset (small packages, 10 concepts)")
    p.add_argument("--corpus-hours", type=float, default=3.0, help="cap on the unlabelled corpus")
    p.add_argument("--catalogue", help=argparse.SUPPRESS)  # tests: a fixture catalogue.json
    p.add_argument("--corpus", help=argparse.SUPPRESS)
    p.add_argument("--packages", help=argparse.SUPPRESS)
    p.add_argument("--vetted", help=argparse.SUPPRESS)  # tests: a fixture vetted.json
    p.add_argument("--libraries", metavar="FILE",
                   help="curated sound libraries whose recordings join their concepts as training sources, e.g. "
                        "wavbrivl/worlds/everyday/libraries.json (Scratch 1.4's); none by default: measured, it did "
                        "not improve the bundle (docs/EXPERIMENTS.md)")


def select(args: argparse.Namespace) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any]]:
    """The catalogue, corpus and packages to use (the committed ones unless overridden), reduced if asked."""
    from .catalogue import HERE, load_corpus, load_json, reduced, with_libraries, with_vetted

    catalogue = load_json("catalogue.json", args.catalogue)
    libraries = getattr(args, "libraries", None)
    if libraries:  # curated sound libraries, only when asked for: their own names are the labels
        catalogue = with_libraries(catalogue, load_json("libraries.json", libraries))
    vetted = getattr(args, "vetted", None) or (None if args.catalogue else HERE / "vetted.json")
    if vetted and Path(vetted).is_file():  # name-labelled corpus files the listening models agreed with
        catalogue = with_vetted(catalogue, load_json("vetted.json", vetted))
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


def run_build(args: argparse.Namespace) -> int:
    from .build import EverydaySettings, build_everyday

    settings = EverydaySettings.reduced() if args.reduced else EverydaySettings()
    settings.seed = args.seed
    cache = Path(args.cache)
    report = build_everyday(cache / "world", args.out, cache=cache, settings=settings)
    from .report import report_lines

    print("\n".join(report_lines(report)))
    print(f"built {args.out} in {report['build']['timings']['total_s']:.0f} s")
    return 0


def run_vet(args: argparse.Namespace) -> int:
    from ...model import WavBriVL
    from .build import AISFX_WHEEL, teacher_model
    from .catalogue import HERE
    from .vetting import MARGIN, find_candidates, vet_candidates, vetted_document
    from .world import EverydayWorld

    cache = Path(args.cache)
    world = EverydayWorld.load(cache / "world")
    student = WavBriVL.from_pretrained(args.bundle).eval()
    teacher = teacher_model(student.config.backbone, student.embed_dim, cache / "wheels" / AISFX_WHEEL)
    candidates = find_candidates(world)
    margin = MARGIN if args.margin is None else args.margin
    start = time.monotonic()
    verdicts = vet_candidates(world, candidates, {"aisfx": teacher, "student": student}, margin)
    doc = vetted_document(verdicts, margin)
    out = Path(args.out) if args.out else HERE / "vetted.json"
    out.write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    counts: dict[str, list[int]] = {}
    for v in verdicts:
        counts.setdefault(v.concept, [0, 0])[0 if v.accepted else 1] += 1
    for concept, (ok, no) in sorted(counts.items()):
        print(f"  {concept:18s} accepted {ok:3d}  rejected {no:3d}")
    print(f"vetted {len(verdicts)} candidates in {time.monotonic() - start:.0f} s: {len(doc['accepted'])} accepted, "
          f"{len(doc['rejected'])} rejected -> {out}")
    return 0


def run_eval(args: argparse.Namespace) -> int:
    from .evaluate import evaluate_bundle
    from .report import report_lines, write_report
    from .world import EverydayWorld

    bundle = Path(args.bundle)
    built = json.loads((bundle / "report.json").read_text())["build"]["settings"]
    report = evaluate_bundle(bundle, EverydayWorld.load(Path(args.cache) / "world"), seed=built["seed"],
                             judge_steps=built["judge_steps"], judge_size=built.get("judge_size", 64),
                             caption_weight=built.get("caption_weight", 0.5), per_concept=built.get("judge_per_concept", 2))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_report(report, out)
    print("\n".join(report_lines(report)))
    return 0
