"""The evaluation protocols peers report: zero-shot classification, linear probe, cross-modal retrieval.

Everything here works on a :class:`~wavbrivl.pipeline.WavBriVLPipeline` whose ``model`` is any *embedder*
(an object with ``embed_audio_many``, ``embed_text``, ``embed_image``, ``backbone_id`` and ``embed_dim``; a
:class:`~wavbrivl.model.WavBriVL` is one). Zero-shot scoring is the pipeline's own classifier, the one the
demo uses, so a clip gets the same label here as on the page. Audio embeddings of a dataset are computed once
per run (:func:`embed_dataset`, cached on disk under the report folder keyed by model and data) and then
shared by every task.

Denominators are explicit: a clip that cannot be decoded is listed (file, reason) in the report and is
not counted in any figure; the report says how many were left out. A task the data cannot support (one clip
per class for a linear probe, no pictures for retrieval) raises :class:`TaskSkipped`; ``run_evaluation`` with
``skip_unavailable=True`` reports it with its reason and runs the others.
"""
from __future__ import annotations

import hashlib
import json
import logging
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .calibration import calibration_figures, class_indices
from .datasets import EvalDataset, EvalRow
from .metrics import class_ranks, ranks_of_positives, retrieval_metrics
from .zeroshot import ZeroShotClassifier

log = logging.getLogger(__name__)

TASKS = ("zeroshot", "linear", "retrieval")


class TaskSkipped(ValueError):
    """The data cannot support this task (the message says why); other tasks can still run."""


class Embedder(Protocol):
    backbone_id: str
    embed_dim: int

    def embed_audio_many(self, sources: Sequence[Any], *, batch_size: int = ..., progress: bool = ...) -> Any: ...

    def embed_text(self, texts: Sequence[str]) -> torch.Tensor: ...

    def embed_image(self, images: Sequence[Any]) -> torch.Tensor: ...


@dataclass
class EvalEmbeddings:
    """Audio embeddings of the clips that could be read, in dataset order, and the ones that could not."""

    audio: torch.Tensor  # [len(rows), D], unit norm
    rows: list[EvalRow]
    skipped: list[dict[str, str]] = field(default_factory=list)  # {"audio": path, "reason": message}


# ------------------------------------------------------------------------------------------- embeddings
def model_digest(model: Embedder) -> str:
    """A short hash of the trainable weights: a cache entry never outlives a retrained encoder."""
    h = hashlib.sha256(str(model.backbone_id).encode())
    module = getattr(model, "audio_encoder", None)
    if isinstance(module, torch.nn.Module):
        for name, tensor in sorted(module.state_dict().items()):
            h.update(name.encode())
            h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def embed_dataset(
    model: Embedder, data: EvalDataset, *, cache_dir: str | Path | None = None, batch_size: int = 32, progress: bool = True
) -> EvalEmbeddings:
    """Embed every clip once; bad clips are listed, not fatal. Reuses ``cache_dir`` when model and data match."""
    from safetensors.torch import load_file, save_file

    paths = [r.audio for r in data.rows]
    key = hashlib.sha256(f"{model_digest(model)}|{json.dumps(data.fingerprint(), sort_keys=True)}".encode()).hexdigest()[:20]
    cache = Path(cache_dir) / f"audio-{key}" if cache_dir else None
    if cache and (cache / "done.json").is_file():
        try:
            meta = json.loads((cache / "done.json").read_text())
            tensors = load_file(str(cache / "audio.safetensors"))
            kept = tensors["indices"].tolist()
            if tensors["embeddings"].shape[0] == len(kept) == meta["kept"]:
                log.info("reusing cached audio embeddings %s", cache)
                return EvalEmbeddings(tensors["embeddings"], [data.rows[i] for i in kept], meta["skipped"])
        except Exception as exc:  # a damaged cache is rebuilt, never trusted
            log.warning("ignoring damaged embedding cache %s: %s", cache, exc)
    result = model.embed_audio_many(paths, batch_size=batch_size, progress=progress)
    skipped = [{"audio": str(paths[i]), "reason": str(err)} for i, err in result.errors]
    out = EvalEmbeddings(result.embeddings.float(), [data.rows[i] for i in result.indices], skipped)
    if cache:
        cache.mkdir(parents=True, exist_ok=True)
        save_file({"embeddings": out.audio.contiguous(), "indices": torch.tensor(result.indices, dtype=torch.int64)},
                  str(cache / "audio.safetensors"))
        (cache / "done.json").write_text(json.dumps({"kept": len(result.indices), "skipped": skipped}) + "\n")
    return out


# -------------------------------------------------------------------------------------------- zero-shot
def zero_shot(audio: torch.Tensor, labels: Sequence[str], classifier: ZeroShotClassifier) -> dict[str, Any]:
    """Top-1/top-5 accuracy, per-class accuracy, the confusion matrix (rows: truth, columns: prediction), and the
    mean top-1 probability and expected calibration error of the probabilities the classifier gives."""
    from sklearn.metrics import confusion_matrix

    class_names = classifier.labels
    truth = class_indices(class_names, labels)
    scores = classifier.scores(audio)
    calibration = calibration_figures(scores, truth, classifier.logit_scale)
    k = min(5, len(class_names))
    ranks = class_ranks(scores, truth)
    cm = confusion_matrix(truth.numpy(), scores.argmax(dim=1).numpy(), labels=list(range(len(class_names))))
    per_class = {c: float(cm[i, i] / cm[i].sum()) for i, c in enumerate(class_names) if cm[i].sum()}
    return {
        "top1": float((ranks <= 1).float().mean()),
        f"top{k}": float((ranks <= k).float().mean()),
        "chance": 1.0 / len(class_names),
        # How sure the probabilities sound against how often they are right (see wavbrivl.calibration).
        "mean_top1_prob": calibration["mean_top1_prob"],
        "ece": calibration["ece"],
        "logit_scale": classifier.logit_scale,
        "clips": len(labels),
        "classes": list(class_names),
        "per_class": per_class,
        "confusion": cm.tolist(),
    }


# ----------------------------------------------------------------------------------------- linear probe
def probe_folds(rows: Sequence[EvalRow], labels: Sequence[str], seed: int = 0,
                n_splits: int = 5) -> tuple[str, list[tuple[np.ndarray, np.ndarray, str]]]:
    """The protocol and its (train indices, test indices, name) folds.

    Official folds when every row has one (leave one fold out, as ESC-50 and UrbanSound8K publish);
    otherwise the dataset's own train/test split when it has both; otherwise stratified K-fold.
    """
    from sklearn.model_selection import StratifiedKFold

    idx = np.arange(len(rows))
    folds = [r.fold for r in rows]
    if rows and all(folds):
        names = sorted(set(folds), key=lambda f: (len(f), f))
        if len(names) < 2:
            raise TaskSkipped("the dataset has a single fold: nothing to cross-validate against")
        return "official folds (leave one fold out)", [(idx[np.array(folds) != f], idx[np.array(folds) == f], f"fold {f}")
                                                       for f in names]
    splits = np.array([r.split for r in rows])
    if (splits == "test").any() and (splits == "train").any():
        return "dataset split (train -> test)", [(idx[splits == "train"], idx[splits == "test"], "test")]
    counts = np.unique(np.asarray(labels), return_counts=True)[1]
    k = int(min(n_splits, counts.min()))
    if k < 2:
        raise TaskSkipped("the linear probe needs at least 2 clips per class (or official folds / a train+test split)")
    skf = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    return f"stratified {k}-fold", [(tr, te, f"split {i + 1}") for i, (tr, te) in enumerate(skf.split(idx, labels))]


def linear_probe(
    features: torch.Tensor, labels: Sequence[str], rows: Sequence[EvalRow], *, seed: int = 0, C: float = 1.0
) -> dict[str, Any]:
    """Logistic regression on frozen embeddings, mean +/- std accuracy over folds."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    protocol, folds = probe_folds(rows, labels, seed)
    x = features.float().numpy()
    y = np.asarray(labels)
    per_fold = {}
    for train_idx, test_idx, name in folds:
        if len(set(y[train_idx])) < 2:
            raise TaskSkipped(f"linear probe {name}: its training part has a single class")
        clf = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=2000, random_state=seed))
        clf.fit(x[train_idx], y[train_idx])
        per_fold[name] = float((clf.predict(x[test_idx]) == y[test_idx]).mean())
    acc = np.array(list(per_fold.values()))
    return {
        "protocol": protocol,
        "accuracy_mean": float(acc.mean()),
        "accuracy_std": float(acc.std(ddof=1)) if len(acc) > 1 else 0.0,
        "per_fold": per_fold,
        "chance": float(np.unique(y, return_counts=True)[1].max() / len(y)),  # majority-class rate
        "clips": len(y),
        "classes": int(len(set(y))),
    }


# -------------------------------------------------------------------------------------------- retrieval
@dataclass
class RetrievalResult:
    metrics: dict[str, Any]
    ranks: dict[str, torch.Tensor]  # direction -> 1-based rank per query (for recall@K curves)
    audio_to_image_sim: torch.Tensor | None = None
    image_paths: list[Path] = field(default_factory=list)
    image_emb: torch.Tensor | None = None


def retrieval(model: Embedder, audio: torch.Tensor, rows: Sequence[EvalRow]) -> RetrievalResult:
    """Audio<->image and audio<->text retrieval among the given clips.

    Images: every frame of every clip is in the gallery; an audio query hits if ANY frame of its clip is
    ranked first (the same file shared by clips counts for each). Text: the gallery is the distinct
    captions; a caption query's positives are every clip with that caption.
    """
    metrics: dict[str, Any] = {}
    ranks: dict[str, torch.Tensor] = {}
    result = RetrievalResult(metrics, ranks)
    with_images = [i for i, r in enumerate(rows) if r.images]
    if with_images:
        paths = sorted({p for i in with_images for p in rows[i].images})
        col = {p: j for j, p in enumerate(paths)}
        img = F.normalize(model.embed_image([str(p) for p in paths]).float(), dim=-1)
        q = audio[with_images].float()
        pos = torch.zeros(len(with_images), len(paths), dtype=torch.bool)
        for a, i in enumerate(with_images):
            pos[a, [col[p] for p in rows[i].images]] = True
        sim = q @ img.T
        metrics["audio_to_image"] = retrieval_metrics(sim, pos)
        metrics["image_to_audio"] = retrieval_metrics(sim.T, pos.T)
        ranks["audio→image"] = ranks_of_positives(sim, pos)
        ranks["image→audio"] = ranks_of_positives(sim.T, pos.T)
        result.audio_to_image_sim, result.image_paths, result.image_emb = sim, paths, img
    with_text = [i for i, r in enumerate(rows) if r.caption.strip()]
    if with_text:
        captions = sorted({rows[i].caption.strip() for i in with_text})
        col = {c: j for j, c in enumerate(captions)}
        txt = F.normalize(model.embed_text(captions).float(), dim=-1)
        pos = torch.zeros(len(with_text), len(captions), dtype=torch.bool)
        for a, i in enumerate(with_text):
            pos[a, col[rows[i].caption.strip()]] = True
        sim = audio[with_text].float() @ txt.T
        metrics["audio_to_text"] = retrieval_metrics(sim, pos)
        metrics["text_to_audio"] = retrieval_metrics(sim.T, pos.T)
        ranks["audio→text"] = ranks_of_positives(sim, pos)
        ranks["text→audio"] = ranks_of_positives(sim.T, pos.T)
    if not metrics:
        raise TaskSkipped("retrieval needs clips with an image or a caption (a manifest with image/caption columns)")
    for name, m in metrics.items():
        m["chance_R@1"] = 1.0 / m["gallery"] if name.endswith("audio") else None
    return result


# ----------------------------------------------------------------------------------------------- report
def software_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for pkg in ("wavbrivl", "torch", "torchaudio", "open_clip_torch", "numpy", "scikit-learn", "soundfile"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def render_markdown(report: dict[str, Any]) -> str:
    """The short human table of a report (``report.md``)."""
    data = report["data"]
    lines = [f"# Evaluation: {data['name']} ({data['layout']})", "",
             f"Checkpoint `{report['checkpoint']}`, embedding space `{report['backbone_id']}`. "
             f"Clips: {report['clips']['evaluated']} evaluated, {report['clips']['skipped']} unreadable and left out "
             f"of every figure.", ""]
    if "zeroshot" in report:
        z = report["zeroshot"]
        top_k = next(k for k in z if k.startswith("top") and k != "top1")
        lines += ["## Zero-shot classification", "", "| clips | classes | top-1 | " + top_k.replace("top", "top-")
                  + " | chance | mean top-1 probability | ECE |", "|---|---|---|---|---|---|---|",
                  f"| {z['clips']} | {len(z['classes'])} | {z['top1']:.3f} | {z[top_k]:.3f} | {z['chance']:.3f} | "
                  f"{z['mean_top1_prob']:.3f} | {z['ece']:.3f} |", ""]
    if "linear_probe" in report:
        p = report["linear_probe"]
        lines += ["## Linear probe", "", "| protocol | clips | accuracy (mean ± std) | majority class |", "|---|---|---|---|",
                  f"| {p['protocol']} | {p['clips']} | {p['accuracy_mean']:.3f} ± {p['accuracy_std']:.3f} | "
                  f"{p['chance']:.3f} |", ""]
    if "retrieval" in report:
        lines += ["## Retrieval", "", "| direction | queries | gallery | R@1 | R@5 | R@10 | median rank | MRR |",
                  "|---|---|---|---|---|---|---|---|"]
        for name, m in report["retrieval"].items():
            if isinstance(m, dict) and "R@1" in m:
                lines.append(f"| {name.replace('_to_', '→')} | {m['queries']} | {m['gallery']} | {m['R@1']:.3f} | "
                             f"{m['R@5']:.3f} | {m['R@10']:.3f} | {m['median_rank']:.0f} | {m['MRR']:.3f} |")
        lines.append("")
    if report.get("skipped_tasks"):
        lines += ["## Tasks not run", ""] + [f"- **{t}**: {why}" for t, why in report["skipped_tasks"].items()] + [""]
    if report["clips"]["skipped"]:
        lines += ["## Unreadable clips", ""] + [f"- `{s['audio']}`: {s['reason']}" for s in report["clips"]["skipped_files"][:50]]
        if report["clips"]["skipped"] > 50:
            lines.append(f"- ... and {report['clips']['skipped'] - 50} more (see report.json)")
        lines.append("")
    if report.get("plots"):
        lines += ["## Plots", ""] + [f"![{Path(p).stem}]({p})" for p in report["plots"]] + [""]
    return "\n".join(lines)


def run_evaluation(
    pipeline: Any,
    data: EvalDataset,
    tasks: Sequence[str],
    out_dir: str | Path,
    *,
    checkpoint: str = "",
    label_column: str = "label",
    templates: Sequence[str] | None = None,
    split: str | None = None,
    seed: int = 0,
    plots: bool = True,
    progress: bool = True,
    batch_size: int = 32,
    skip_unavailable: bool = False,
) -> dict[str, Any]:
    """Run the tasks, write ``report.json``, ``report.md`` and PNG plots into ``out_dir``; return the report.

    ``pipeline``: a :class:`~wavbrivl.pipeline.WavBriVLPipeline`. ``templates``: zero-shot prompt templates
    (None: the bundle's). ``skip_unavailable``: a task the data cannot support is reported under
    ``skipped_tasks`` with its reason instead of failing the run.
    """
    unknown = sorted(set(tasks) - set(TASKS))
    if unknown or not tasks:
        raise ValueError(f"unknown task(s) {unknown or tasks}: choose from {', '.join(TASKS)}")
    data.check_column(label_column)
    data = data.select_split(split)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    emb = embed_dataset(pipeline.model, data, cache_dir=out / "cache", batch_size=batch_size, progress=progress)
    if not emb.rows:
        raise ValueError(f"{data.source}: none of the {len(data.rows)} clips could be read (first: {emb.skipped[0]['reason']})")
    # Retrieval is reported on a manifest's held-out split unless one was chosen.
    held_out = [i for i, r in enumerate(emb.rows) if r.split == "test"] if split is None else []
    held_out = held_out or list(range(len(emb.rows)))
    report = new_report(data, emb, held_out, backbone_id=pipeline.model.backbone_id, checkpoint=checkpoint, split=split,
                        label_column=label_column, seed=seed)
    run = EvaluationRun(pipeline, emb, held_out, out, label_column, templates, seed, plots, report)
    for task in tasks:
        try:
            {"zeroshot": run.zeroshot, "linear": run.linear, "retrieval": run.retrieval}[task]()
        except TaskSkipped as exc:
            if not skip_unavailable:
                raise
            report["skipped_tasks"][task] = str(exc)
            log.warning("task %s skipped: %s", task, exc)
            continue
        report["tasks"].append(task)
    report["plots"] = [Path(p).name for p in report["plots"]]
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "report.md").write_text(render_markdown(report))
    return report


def new_report(data: EvalDataset, emb: EvalEmbeddings, held_out: Sequence[int], *, backbone_id: str, checkpoint: str,
               split: str | None, label_column: str, seed: int) -> dict[str, Any]:
    """A report before any task has run: what was evaluated, on what, with which software."""
    return {
        "tasks": [],
        "skipped_tasks": {},
        "checkpoint": checkpoint,
        "backbone_id": backbone_id,
        "data": {"name": data.name, "layout": data.layout, "source": str(data.source), "split": split or "all",
                 "retrieval_split": split or ("test" if len(held_out) < len(emb.rows) else "all"),
                 "label_column": label_column, "fingerprint": data.fingerprint()},
        "clips": {"total": len(data.rows), "evaluated": len(emb.rows), "skipped": len(emb.skipped), "skipped_files": emb.skipped},
        "software": software_versions(),
        "seed": seed,
        "plots": [],
    }


@dataclass
class EvaluationRun:
    """What the tasks of one :func:`run_evaluation` share: the embedded clips, the report they fill, and where
    their plots go. Each task method adds its section (and plots) to ``report`` or raises :class:`TaskSkipped`."""

    pipeline: Any
    emb: EvalEmbeddings
    held_out: list[int]  # the clips retrieval is reported on
    out: Path
    label_column: str
    templates: Sequence[str] | None
    seed: int
    plots: bool
    report: dict[str, Any]

    @property
    def labels(self) -> list[str]:
        return [r.value(self.label_column) for r in self.emb.rows]

    def zeroshot(self) -> None:
        labels = self.labels
        if any(not label for label in labels):
            raise TaskSkipped(f"zero-shot needs a {self.label_column!r} on every clip")
        class_names = sorted(set(labels))
        if len(class_names) < 2:
            raise TaskSkipped(f"zero-shot needs at least 2 classes; every clip is {class_names[0]!r}")
        classifier = self.pipeline.zero_shot_classifier(class_names, self.templates)
        templates = list(self.templates or self.pipeline.card.templates)
        self.report["zeroshot"] = zero_shot(self.emb.audio, labels, classifier) | {"templates": templates}
        if self.plots:
            from . import plots as plotting

            self.report["plots"].append(plotting.confusion_matrix_png(self.report["zeroshot"]["confusion"], class_names,
                                                                      self.out / "confusion_matrix.png"))

    def linear(self) -> None:
        self.report["linear_probe"] = linear_probe(self.emb.audio, self.labels, self.emb.rows, seed=self.seed)

    def retrieval(self) -> None:
        rows, audio = [self.emb.rows[i] for i in self.held_out], self.emb.audio[self.held_out]
        res = retrieval(self.pipeline.model, audio, rows)
        self.report["retrieval"] = res.metrics
        if self.plots:
            self.report["plots"] += retrieval_plots(res, rows, audio, self.label_column, self.out, self.seed)


def retrieval_plots(res: RetrievalResult, rows: Sequence[EvalRow], audio: torch.Tensor, label_column: str, out: Path,
                    seed: int) -> list[Path]:
    """Recall@K curves and, when the clips have pictures, the embedding map and the example grid."""
    from . import plots as plotting

    written = [plotting.recall_at_k_png(res.ranks, out / "recall_at_k.png")]
    if res.image_emb is not None:
        clip_of_image = {p: r.value(label_column) for r in rows for p in r.images}
        written.append(plotting.embedding_map_png(
            audio, [r.value(label_column) for r in rows], res.image_emb,
            [clip_of_image[p] for p in res.image_paths], out / "embedding_map.png", seed=seed))
        written.append(plotting.example_grid_png(
            res.audio_to_image_sim, [Path(r.audio).name for r in rows if r.images],
            [set(r.images) for r in rows if r.images], res.image_paths, out / "examples.png", seed=seed))
    return written
