"""The world's data card: ``concepts.json``, ``data_card.json`` (every file with package, version, licence,
concept and split), ``DATA.md`` (the same for people) and ``LICENSES/`` (each used package's copyright file).

These travel into the bundle, so its licences and what each concept was trained and tested on stay checkable.
"""
from __future__ import annotations

import json
import shutil
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from .catalogue import concept_caption, copyright_path

MIN_PICTURES = 5


def concept_cards(concepts: list[dict[str, Any]], val_sources: dict[str, str | None], recordings: list[dict[str, Any]],
                  pictures: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rec = Counter((r["label"], r["split"]) for r in recordings)
    pic = Counter((p["label"], p["split"]) for p in pictures)
    sources = defaultdict(set)
    for r in recordings:
        sources[r["label"]].add(r["source"])
    cards = []
    for c in concepts:
        n = c["name"]
        counts = {s: rec[n, s] for s in ("train", "val", "test")} | {s: pic[n, s] for s in ("fit", "gallery")}
        cards.append({"name": n, "aliases": c["aliases"], "caption": concept_caption(c), "group": c["group"], "live": c["live"],
                      "heard": c["heard"],
                      "test_source": c["test_source"], "val_source": val_sources.get(n), "sources": len(sources[n]),
                      "counts": counts, "doubts": c.get("doubts", "")})
    return cards


def problems(cards: list[dict[str, Any]], missing_licences: list[str]) -> list[str]:
    """What a reader of the data should know first: thin or broken concepts and missing licence files."""
    out = []
    for c in cards:
        n, k = c["name"], c["counts"]
        pictures = k["fit"] + k["gallery"]
        if c["heard"] and pictures < MIN_PICTURES:
            out.append(f"{n}: only {pictures} pictures (heard concepts should have {MIN_PICTURES})")
        if not k["fit"]:
            out.append(f"{n}: no picture to pair its recordings with")
        if c["heard"] and not k["test"]:
            out.append(f"{n}: no test recording (its test source {c['test_source']} gave none)")
        if c["heard"] and not k["train"]:
            out.append(f"{n}: no training recording")
    return out + [f"{p}: no copyright file extracted" for p in missing_licences]


def _file_rows(recordings: list[dict[str, Any]], pictures: list[dict[str, Any]],
               corpus: list[dict[str, Any]]) -> list[dict[str, Any]]:
    keys = ("package", "version", "licence", "path", "attribution")
    rows = [{"file": r["audio"], "role": "recording", "concept": r["label"], "split": r["split"], "source": r["source"],
             "kind": r["kind"], "label_from": r.get("label_from", ""), **{k: r[k] for k in keys}} for r in recordings]
    rows += [{"file": p["image"], "role": "picture", "concept": p["label"], "split": p["split"], "kind": p["kind"],
              **{k: p[k] for k in keys}} for p in pictures]
    rows += [{"file": c["audio"], "role": "corpus", "concept": "", "split": "corpus", **{k: c[k] for k in keys}} for c in corpus]
    return [{k: v for k, v in r.items() if v != ""} for r in rows]


def copy_licences(out: Path, used: set[str], extracted: Path) -> list[str]:
    """Copy each used package's Debian copyright file to ``LICENSES/<package>.copyright``; return those missing."""
    folder = out / "LICENSES"
    folder.mkdir(exist_ok=True)
    missing = []
    for pkg in sorted(used):
        source = extracted / pkg / copyright_path(pkg)
        if source.is_file():
            shutil.copyfile(source, folder / f"{pkg}.copyright")
        else:
            missing.append(pkg)
    return missing


def write_data_card(out: Path, concepts: list[dict[str, Any]], val_sources: dict[str, str | None],
                    recordings: list[dict[str, Any]], pictures: list[dict[str, Any]], corpus: list[dict[str, Any]],
                    skipped: list[dict[str, str]], packages: dict[str, Any], extracted: Path) -> dict[str, Any]:
    """Write the four parts of the data card into ``out``; return the summary (counts and problems)."""
    cards = concept_cards(concepts, val_sources, recordings, pictures)
    files = _file_rows(recordings, pictures, corpus)
    used = {f["package"] for f in files}
    missing_licences = copy_licences(out, used, extracted)
    summary = {
        "concepts": {"heard": sum(c["heard"] for c in cards), "never_heard": sum(not c["heard"] for c in cards)},
        "recordings": dict(Counter(r["split"] for r in recordings)),
        "recording_seconds": round(sum(r["seconds"] for r in recordings), 1),
        "pictures": dict(Counter(p["split"] for p in pictures)),
        "corpus": {"clips": len(corpus), "hours": round(sum(c["seconds"] for c in corpus) / 3600, 3)},
        "skipped": len(skipped),
        "problems": problems(cards, missing_licences),
    }
    per_package = {}
    for pkg in sorted(used):
        info = packages.get(pkg, {})
        mine = [f for f in files if f["package"] == pkg]
        per_package[pkg] = {"version": mine[0]["version"], "files": len(mine),
                            "licences": dict(Counter(f["licence"] for f in mine)),
                            "attribution": info.get("attribution", []), "licence_notes": info.get("licence_notes", [])}
    (out / "concepts.json").write_text(json.dumps(cards, indent=1, ensure_ascii=False))
    card = {"world": "everyday", "summary": summary, "never_heard": [c["name"] for c in cards if not c["heard"]],
            "concepts": cards, "packages": per_package, "skipped": skipped, "files": files}
    (out / "data_card.json").write_text(json.dumps(card, indent=1, ensure_ascii=False))
    (out / "DATA.md").write_text(data_markdown(summary, cards, per_package, files, skipped))
    return summary


def data_markdown(summary: dict[str, Any], cards: list[dict[str, Any]], per_package: dict[str, Any],
                  files: list[dict[str, Any]], skipped: list[dict[str, str]]) -> str:
    rec, pic, corpus = summary["recordings"], summary["pictures"], summary["corpus"]
    lines = [
        "# Everyday world: data card", "",
        "Real recordings and drawings of everyday sounds, taken from Debian packages (all in Debian `main`, so under "
        "free licences; each package's copyright file is in `LICENSES/`). Recordings are split by **independent "
        "source** (copies of one take found in several packages count as one source), so no take is both heard in "
        "training and tested. Never-heard concepts have pictures and captions only; their few recordings are test "
        "clips for sounds the model never heard.", "",
        f"- concepts: {summary['concepts']['heard']} heard, {summary['concepts']['never_heard']} never heard",
        f"- recordings: {rec.get('train', 0)} train, {rec.get('val', 0)} val, {rec.get('test', 0)} test "
        f"({summary['recording_seconds'] / 60:.1f} min); mono 44.1 kHz PCM16, silence trimmed, first 30 s",
        f"- pictures: {pic.get('fit', 0)} fit, {pic.get('gallery', 0)} gallery (held out: 25 % of each concept); "
        "128x128, trimmed and centred on white",
        f"- unlabelled corpus: {corpus['clips']} clips, {corpus['hours']:.2f} h (sound effects; copies of concept "
        "recordings removed)",
        f"- skipped files: {summary['skipped']} (listed below)",
        "- derived: `keyboard typing` from bucklespring-data is typing sequences assembled from its single key "
        "press/release clips (one IBM Model M), not recordings of typing", "",
        "Every file with its package, version, licence, concept and split: `data_card.json` (`files`), and the "
        "listing below.", "",
    ]
    if summary["problems"]:
        lines += ["## Problems", ""] + [f"- {p}" for p in summary["problems"]] + [""]
    lines += ["## Concepts", "", "| concept | heard | train | val | test | fit | gallery | sources | test source | val source |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for c in cards:
        k = c["counts"]
        lines.append(f"| {c['name']} | {'yes' if c['heard'] else 'never'} | {k['train']} | {k['val']} | {k['test']} | "
                     f"{k['fit']} | {k['gallery']} | {c['sources']} | {c['test_source'] or '-'} | {c['val_source'] or '-'} |")
    lines += ["", "## Doubts", ""] + [f"- **{c['name']}**: {c['doubts']}" for c in cards if c["doubts"]]
    lines += ["", "## Packages", "", "| package | version | files | licences | attribution |", "|---|---|---|---|---|"]
    for pkg, info in per_package.items():
        licences = ", ".join(f"{k} ({v})" for k, v in info["licences"].items())
        attribution = "; ".join(info["attribution"][:6]) + (" ..." if len(info["attribution"]) > 6 else "")
        lines.append(f"| {pkg} | {info['version']} | {info['files']} | {licences} | {attribution.replace('|', '/')} |")
    lines += ["", "## Files", "", "Per concept and split: package version, licence: files.", ""]
    groups: dict[tuple, list[str]] = defaultdict(list)
    for f in files:
        if f["role"] != "corpus":
            groups[f["concept"], f["split"], f["package"], f["version"], f["licence"]].append(Path(f["file"]).name)
    for (concept, split, pkg, version, licence), names in groups.items():
        lines.append(f"- {concept} / {split} / {pkg} {version}, {licence}: {', '.join(names)}")
    lines += ["", "Corpus files are listed in `corpus.csv` and `data_card.json`.", "", "## Skipped", ""]
    lines += [f"- {s['package']}: `{s['path']}`: {s['reason']}" for s in skipped] or ["- none"]
    return "\n".join(lines) + "\n"
