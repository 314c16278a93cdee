"""Vetting recordings labelled only by their file name, by listening models, before they join the catalogue.

The world's unlabelled corpus (sound effects from games and programs, used only for distillation) holds files
whose names say what they are: MegaGlest's ``sheep3.wav``, a game's ``explosion2.ogg``. A name is not a listened
label, though: MegaGlest's ``pig_ack*.wav`` are a game unit's spoken acknowledgements, and training on them as
"pig" made the held-out voices land on "pig" (docs/EXPERIMENTS.md). So a candidate joins a concept only when two
listening models agree with its name:

* **aisfx** as it ships (a CNN pretrained on professional sound-effects libraries, the student's teacher), and
* **the current student** (the committed bundle's trunk, distilled from aisfx and trained on this world),

each must place the candidate nearest a *training source* of its named concept: its features (mean over the
model's windows, standardised on the training clips) are compared by cosine with every training source's mean,
and the best source of the named concept must beat the best source of any other concept by ``margin``.
Sources, not concepts, are the unit because a concept's sources differ more than its clips (a farm recording
and a cartoon moo); validation and test sources are never looked at, so vetting cannot leak the held-out sources.

:func:`vet_candidates` decides; ``wavbrivl world everyday vet`` writes the decisions to ``vetted.json`` beside the
catalogue (committed data: every candidate with the rule that named it, both models' margins, and the verdict
with its reason), and the prepare step adds the accepted files to their concepts as training recordings whose
``label_from`` says how their label was decided.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

#: concept -> pattern over ``package/path`` (lower case) of corpus files whose names say they are recordings of it.
#: Broad on purpose where the listening models decide (``pig_`` takes MegaGlest's unit calls too); narrow where a
#: name is known to mislead (hydrogen's "splash" is a cymbal, wesnoth's "drake" a dragon, its horns are signals).
RULES: dict[str, str] = {
    "elephant": r"^megaglest-data/.*/ele\d",
    "pig": r"^megaglest-data/.*/pig_|^pekka-kana-2-data/.*/pig",
    "sheep": r"^megaglest-data/.*/sheep",
    "cow": r"^megaglest-data/.*/cow_",
    "horse": r"/death_horse|/horse[-_]?(neigh|whinny|snort)",
    "wolf": r"/wolf[-_](hit|die|howl)|/[^/]*howl[^/]*$",
    "frog": r"/frog_",
    "crow": r"/crow_",
    "chirping birds": r"/bird\.|/birdy",
    "buzzing insects": r"/(bee\d|wasp)\.",
    "explosion": r"/[^/]*(explo|blast)[^/]*$",
    "gunshot": r"/[^/]*(gunshot|pistol|rifle|shotgun|primary)[^/]*$",
    "water splash": r"^(?!hydrogen).*/[^/]*splash[^/]*$",
    "rain": r"/rain\.",
    "coughing": r"/[^/]*cough[^/]*$",
    "screaming": r"/[^/]*scream[^/]*$",
    "footsteps": r"/[^/]*footstep[^/]*$",
    "clock alarm": r"/alarm\.",
    "clock tick": r"[/_-]tick\.",
    "telephone": r"/[^/]*phone\d",
    "bubbles": r"/bubble\.",
    "door": r"/[^/]*door[-_]?(open|close|slam)[^/]*$",
}
SKIP = re.compile(r"reload")
# The named concept's nearest training source must be at least as close as every other concept's (margin 0: the
# file is heard nearest its own concept by both models). How many files each margin lets in: docs/EXPERIMENTS.md.
MARGIN = 0.0
MAX_WINDOWS = 13  # the first ~15 s of a clip, as the bundle's evaluation hears it
LABEL_FROM_NAME = "file name, vetted by listening models (aisfx and the student agree)"


@dataclass
class Candidate:
    """A corpus file a rule names as a recording of ``concept``."""

    audio: Path  # the world's decoded copy
    package: str
    version: str
    licence: str
    path: str  # catalogue path notation inside the package
    seconds: float
    md5: str
    concept: str
    rule: str


@dataclass
class Verdict:
    package: str
    version: str
    licence: str
    path: str
    seconds: float
    md5: str
    concept: str
    rule: str
    accepted: bool
    reason: str
    aisfx: dict[str, Any]  # margin, nearest concept, nearest source
    student: dict[str, Any]


def find_candidates(world, rules: dict[str, str] | None = None) -> list[Candidate]:
    """Corpus files a rule names, for heard concepts only (never-heard ones stay pictures and words), leaving out
    packages that hold the concept's validation or test source, so those sources stay new to the encoder."""
    import csv

    from .catalogue import load_corpus

    rules = RULES if rules is None else rules
    md5 = {(e["package"], e["path"]): e["md5"] for e in load_corpus()}
    held: dict[str, set[str]] = {}
    for r in world.rows:
        if r.split in ("val", "test"):
            held.setdefault(r.label, set()).add(r.meta.get("package", ""))
    with open(world.root / "corpus.csv", newline="", encoding="utf-8") as f:
        corpus = list(csv.DictReader(f))
    out = []
    for concept, pattern in rules.items():
        if not world.concept(concept).heard:
            continue
        for c in corpus:
            key = f"{c['package']}/{c['path']}".lower()
            if re.search(pattern, key) and not SKIP.search(key) and c["package"] not in held.get(concept, set()):
                out.append(Candidate(world.root / c["audio"], c["package"], c["version"], c["licence"], c["path"],
                                     float(c["seconds"]), md5.get((c["package"], c["path"]), ""), concept, pattern))
    return out


def window_features(model, paths: Sequence[Path], max_windows: int = MAX_WINDOWS) -> list[torch.Tensor]:
    """Each clip's trunk features (before any projection head) per window ``[windows, C]``, its first
    ``max_windows`` windows: what a listening model hears of it."""
    from ...audio import iter_windows

    with torch.inference_mode():
        return [model.audio_encoder.trunk(model.frontend(torch.stack(
            [w for w, _ in iter_windows(p, model.config.frontend)][:max_windows]))) for p in paths]


def trunk_features(model, paths: Sequence[Path], max_windows: int = MAX_WINDOWS) -> np.ndarray:
    """Each clip's trunk features averaged over its first ``max_windows`` windows."""
    return np.stack([f.mean(0).numpy() for f in window_features(model, paths, max_windows)])


def source_margins(train: np.ndarray, train_labels: Sequence[str], train_sources: Sequence[str],
                   queries: np.ndarray, named: Sequence[str]) -> list[dict[str, Any]]:
    """For each query: how much closer (cosine, on features standardised over the training clips) its nearest
    training source of the named concept is than its nearest source of any other concept, and what that is."""
    mean, std = train.mean(0), train.std(0) + 1e-6
    z = (train - mean) / std
    keys = sorted(set(zip(train_labels, train_sources)))
    pairs = list(zip(train_labels, train_sources))
    centroids = np.stack([z[[i for i, k in enumerate(pairs) if k == key]].mean(0) for key in keys])
    centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
    q = (queries - mean) / std
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    sims = q @ centroids.T
    labels = np.array([k[0] for k in keys])
    out = []
    for row, concept in zip(sims, named):
        own, other = row[labels == concept], row[labels != concept]
        best = int(np.argmax(row))
        out.append({"margin": round(float(own.max() - other.max()), 4), "nearest_concept": str(labels[best]),
                    "nearest_source": keys[best][1]})
    return out


def vet_candidates(world, candidates: list[Candidate], listeners: dict[str, Any], margin: float = MARGIN) -> list[Verdict]:
    """Accept a candidate when every listening model (``{"aisfx": model, "student": model}``) puts its named
    concept's nearest training source ``margin`` closer than any other concept's."""
    train = [r for r in world.rows if r.split == "train" and world.concept(r.label).heard]
    labels, sources = [r.label for r in train], [r.meta.get("source", "") for r in train]
    heard_by: dict[str, list[dict[str, Any]]] = {}
    for name, model in listeners.items():
        heard_by[name] = source_margins(trunk_features(model, [r.audio for r in train]), labels, sources,
                                        trunk_features(model, [c.audio for c in candidates]), [c.concept for c in candidates])
    verdicts = []
    for i, c in enumerate(candidates):
        views = {name: heard_by[name][i] for name in listeners}
        accepted, reason = decide(c.concept, views, margin)
        verdicts.append(Verdict(c.package, c.version, c.licence, c.path, c.seconds, c.md5, c.concept, c.rule, accepted,
                                reason, views.get("aisfx", {}), views.get("student", {})))
    return verdicts


def decide(concept: str, views: dict[str, dict[str, Any]], margin: float) -> tuple[bool, str]:
    """Accepted when every listening model's margin for the named concept is at least ``margin``; the reason names
    what each model that disagreed heard instead."""
    failed = [f"{name} hears it nearest {v['nearest_concept']} ({v['nearest_source']}), margin {v['margin']:+.3f}"
              for name, v in views.items() if v["margin"] < margin]
    return not failed, "; ".join(failed) or f"every model hears it nearest {concept} (margin >= {margin:g})"


def vetted_document(verdicts: list[Verdict], margin: float) -> dict[str, Any]:
    """``vetted.json``: the rule, the margin and every verdict, accepted first."""
    return {"format": 1, "margin": margin, "label_from": LABEL_FROM_NAME, "rules": RULES,
            "accepted": [asdict(v) for v in verdicts if v.accepted],
            "rejected": [asdict(v) for v in verdicts if not v.accepted]}


def accepted_recordings(vetted: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Catalogue-style audio entries (per concept) for the accepted files: training recordings of a source of their
    own (``<package>:named-files``), whose ``label_from`` records how the label was decided."""
    out: dict[str, list[dict[str, Any]]] = {}
    for v in vetted.get("accepted", []):
        out.setdefault(v["concept"], []).append({
            "package": v["package"], "version": v["version"], "path": v["path"], "licence": v["licence"],
            "source": f"{v['package'].removesuffix('-data')}:named-files", "kind": "recording", "seconds": v["seconds"],
            "md5": v["md5"],
            "label_from": vetted.get("label_from", LABEL_FROM_NAME), "split": "train"})
    return out
