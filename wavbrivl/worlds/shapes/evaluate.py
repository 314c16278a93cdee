"""The shapes world's evaluation: retrieval and zero-shot from sounds, seen and never-heard pairs apart, and
generation consistency.

In this world a sound fixes a picture's colour, shape and size but not its background or position, so an
audio->image hit is any gallery picture with the sound's three attributes (chance = that fraction of the
gallery, reported beside each figure); exact-pair recall is reported too. Zero-shot and the judge of generated
pictures use the pipeline's zero-shot classifier with, per attribute value, every canonical caption naming it.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ...judging import paint_and_judge
from ...metrics import class_ranks, retrieval_metrics
from ...zeroshot import ZeroShotClassifier
from .world import ATTRIBUTES, all_combinations, caption_for


def attribute_classifiers(pipeline) -> dict[str, ZeroShotClassifier]:
    """Per attribute, one class per value: the mean text embedding of every canonical caption naming it."""
    keys = list(ATTRIBUTES)
    return {
        attr: ZeroShotClassifier.from_prompts(pipeline.embed_text, {
            v: [caption_for(*c) for c in all_combinations() if c[keys.index(attr)] == v] for v in values
        })
        for attr, values in ATTRIBUTES.items()
    }


def evaluate_bundle(
    pipeline, rows, gallery_paths, gallery_labels, *, n_generations: int = 240, seed: int = 0,
    pair_of_row: list[int] | None = None,
) -> dict[str, Any]:
    """Seen/unseen retrieval, zero-shot attribute accuracy from audio, and generation consistency.

    ``rows`` are manifest rows of the world (with ``seen``, ``colour``, ``shape``, ``size``);
    ``pair_of_row[i]`` is the gallery position of row i's own picture (default: the same position).
    """
    model = pipeline.model
    audio = model.embed_audio_many([r.audio for r in rows], batch_size=64)
    keep = audio.indices
    pairs = [(pair_of_row or list(range(len(rows))))[i] for i in keep]
    rows = [rows[i] for i in keep]
    images = model.embed_image([str(p) for p in gallery_paths])
    labels = [r.label for r in rows]
    sim = audio.embeddings @ images.T
    classifiers = attribute_classifiers(pipeline)
    report: dict[str, Any] = {"clips": len(rows), "skipped": [str(e) for _, e in audio.errors],
                              "gallery_images": len(gallery_paths)}
    for group in ("seen", "unseen"):
        mask = np.array([(r.meta["seen"] == "True") == (group == "seen") for r in rows])
        if not mask.any():
            continue
        q = torch.from_numpy(mask)
        same_label = torch.tensor([[a == b for b in gallery_labels] for a in np.array(labels)[mask]])
        exact = torch.zeros(len(rows), len(gallery_paths), dtype=torch.bool)
        exact[torch.arange(len(rows)), torch.tensor(pairs)] = True
        exact = exact[q]
        entry = {"clips": int(mask.sum())}
        entry["audio_to_image"] = retrieval_metrics(sim[q], same_label)
        entry["audio_to_image"]["chance_R@1"] = float(same_label.float().mean())
        entry["audio_to_image_exact_pair"] = retrieval_metrics(sim[q], exact)
        for attr, classifier in classifiers.items():
            truth = [classifier.labels.index(r.meta[attr]) for r in np.array(rows, dtype=object)[mask]]
            entry[f"zeroshot_{attr}"] = float((class_ranks(classifier.scores(audio.embeddings[q]), truth) == 1).float().mean())
        report[group] = entry
    # Generation consistency: generated pictures classified by the frozen image tower. Half the sounds are
    # drawn from seen and half from unseen combinations, and each group is reported on its own too.
    rng = np.random.default_rng(seed)
    seen_idx = [i for i, r in enumerate(rows) if r.meta["seen"] == "True"]
    unseen_idx = [i for i, r in enumerate(rows) if r.meta["seen"] != "True"]
    half = n_generations // 2
    picks = np.concatenate([rng.permutation(seen_idx)[: n_generations - min(half, len(unseen_idx))],
                            rng.permutation(unseen_idx)[:half]]).astype(int) if rows else np.zeros(0, dtype=int)
    truth = {attr: [c.labels.index(rows[int(k)].meta[attr]) for k in picks] for attr, c in classifiers.items()}

    def tower(images: list) -> dict[str, np.ndarray]:
        """Whether the frozen image tower names each attribute of each picture first."""
        emb = model.embed_image(images)
        return {attr: class_ranks(c.scores(emb), truth[attr]).numpy() == 1 for attr, c in classifiers.items()}

    generated, verdicts = paint_and_judge(pipeline, audio.embeddings[torch.from_numpy(picks)], {"tower": tower},
                                          seed=seed, steps=25)
    named = verdicts["tower"]
    per_attr = {attr: float(hit.mean()) for attr, hit in named.items()}
    match = np.logical_and.reduce([np.ones(len(picks), dtype=bool), *named.values()])
    seen_mask = np.array([rows[int(k)].meta["seen"] == "True" for k in picks], dtype=bool)
    report["generation"] = {"samples": int(len(picks)), "consistency": float(match.mean()), "per_attribute": per_attr,
                            "seen": float(match[seen_mask].mean()) if seen_mask.any() else None,
                            "unseen": float(match[~seen_mask].mean()) if (~seen_mask).any() else None}
    show = sorted(set(range(min(4, len(picks)))) | set(range(max(0, len(picks) - 4), len(picks))))  # 4 seen, 4 unseen
    report["_generated_examples"] = [(rows[int(picks[j])].label, generated[j]) for j in show]
    return report


def report_table(report: dict[str, Any]) -> list[str]:
    """Markdown lines: seen/unseen retrieval and zero-shot, then generation consistency."""
    lines = ["| split | clips | audio→image R@1 (chance) | R@5 | zero-shot colour | shape | size |",
             "|---|---|---|---|---|---|---|"]
    for group in ("seen", "unseen"):
        if group in report:
            e = report[group]
            a = e["audio_to_image"]
            lines.append(f"| {group} | {e['clips']} | {a['R@1']:.3f} ({a['chance_R@1']:.3f}) | {a['R@5']:.3f} | "
                         f"{e['zeroshot_colour']:.3f} | {e['zeroshot_shape']:.3f} | {e['zeroshot_size']:.3f} |")
    g = report.get("generation")
    if g:
        lines.append("")
        lines.append(f"Generation consistency (all three attributes of the generated picture match the sound, judged by the "
                     f"frozen image tower): **{g['consistency']:.3f}** over {g['samples']} sounds "
                     f"(seen {g.get('seen') or 0:.3f}, unseen {g.get('unseen') or 0:.3f}); per attribute "
                     + ", ".join(f"{k} {v:.3f}" for k, v in g["per_attribute"].items()) + ".")
    return lines


def write_report(report: dict[str, Any], out: Path) -> None:
    """``report.json``, ``report.md`` and ``generated.png`` (sound -> generated picture grid)."""
    from ...plots import generated_grid_png

    examples = report.pop("_generated_examples", [])
    if examples:
        generated_grid_png(examples, out / "generated.png")
    (out / "report.json").write_text(json.dumps(report, indent=2, default=float) + "\n")
    (out / "report.md").write_text("\n".join(report_table(report)) + "\n")


def evaluate_world_manifest(pipeline, manifest: str | Path, out: str | Path, *, seed: int = 0,
                            n_generations: int = 240) -> dict[str, Any]:
    """Evaluate a bundle on a shapes-world manifest's test split (``wavbrivl world shapes eval``); writes
    ``report.json``, ``report.md`` and ``generated.png`` into ``out`` and returns the report."""
    from ...data import read_manifest

    rows = [r for r in read_manifest(manifest) if r.split == "test"]
    if not rows:
        raise ValueError(f"{manifest}: no rows in the 'test' split")
    for r in rows:
        if not {"seen", "colour", "shape", "size"} <= set(r.meta) or not r.images:
            raise ValueError(f"{manifest}:{r.line}: not a shapes-world row (needs image, seen, colour, shape, size)")
    report = evaluate_bundle(pipeline, rows, [r.images[0] for r in rows], [r.label for r in rows],
                             n_generations=n_generations, seed=seed)
    report["data"] = {"manifest": str(manifest), "split": "test"}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_report(report, out)
    return report
