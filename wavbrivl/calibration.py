"""Confidence that means something: temperature scaling of the zero-shot classifier, and how to measure it.

A zero-shot probability is a softmax over cosine similarities times a scale. The backbone's own scale (CLIP's
``logit_scale``, 100 for most open_clip models) was learnt for image-text batches, not for this audio encoder
and this label set, so "72 %" on the page need not mean right 72 % of the time. Temperature scaling (Guo et al.,
2017) refits that one scalar on labelled validation clips by minimising their negative log-likelihood: the
ranking of labels, hence top-1 accuracy, is unchanged; only how sure the probabilities sound moves.

How well probabilities match accuracy is reported as the expected calibration error (ECE, 15 equal-width bins of
the top-1 probability, the usual choice) next to the mean top-1 probability and top-1 accuracy: a calibrated
classifier has the last two close and the ECE near 0.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

#: The range the fitted scale is searched in: a scale below 1 makes every answer near-uniform over a few hundred
#: cosines in [-1, 1]; above 1000 the softmax is a hard arg-max whatever the data says.
SCALE_BOUNDS = (1.0, 1000.0)
ECE_BINS = 15


def negative_log_likelihood(scores: torch.Tensor, targets: torch.Tensor, logit_scale: float) -> float:
    """Mean NLL of the true classes under ``softmax(logit_scale * scores)``; ``scores`` ``[N, C]`` cosines."""
    logits = float(logit_scale) * scores.double()
    return float(torch.nn.functional.cross_entropy(logits, targets.long()))


def fit_logit_scale(scores: torch.Tensor, targets: torch.Tensor, bounds: tuple[float, float] = SCALE_BOUNDS) -> float:
    """The scale for cosine scores ``[N, C]`` that minimises the NLL of the true classes ``[N]``.

    The NLL is convex in the scale (a log-sum-exp of linear functions of it, minus a linear one), so a bounded
    one-dimensional search finds its minimum; searching the log of the scale keeps the steps even across the
    range. Equivalent to fitting a temperature ``T = backbone_scale / scale`` that divides the backbone's logits.
    """
    from scipy.optimize import minimize_scalar

    if scores.ndim != 2 or len(scores) != len(targets) or not len(targets):
        raise ValueError(f"need scores [N, C] and N targets, got {tuple(scores.shape)} and {len(targets)}")
    scores, targets = scores.detach().cpu().double(), torch.as_tensor(targets).cpu().long()
    lo, hi = (math.log(b) for b in bounds)
    result = minimize_scalar(lambda log_s: negative_log_likelihood(scores, targets, math.exp(log_s)),
                             bounds=(lo, hi), method="bounded", options={"xatol": 1e-4})
    return float(math.exp(result.x))


def expected_calibration_error(probs: torch.Tensor, targets: torch.Tensor, n_bins: int = ECE_BINS) -> float:
    """ECE: the clips binned by their top-1 probability into ``n_bins`` equal-width bins ``(lo, hi]``; per bin the
    gap between its accuracy and its mean top-1 probability, weighted by the bin's share of the clips."""
    confidence, predicted = (t.numpy() for t in torch.as_tensor(probs).float().max(dim=1))
    correct = predicted == np.asarray(targets)
    bins = np.digitize(confidence, np.linspace(0.0, 1.0, n_bins + 1)[1:-1], right=True)
    ece = 0.0
    for b in np.unique(bins):
        inside = bins == b
        ece += inside.mean() * abs(correct[inside].mean() - confidence[inside].mean())
    return float(ece)


def calibration_figures(scores: torch.Tensor, targets: torch.Tensor, logit_scale: float) -> dict[str, float]:
    """ECE, mean top-1 probability, top-1 accuracy and NLL of cosine scores ``[N, C]`` at one scale."""
    probs = torch.softmax(float(logit_scale) * scores.float(), dim=-1)
    targets = torch.as_tensor(targets).long()
    top1_prob, predicted = probs.max(dim=1)
    return {"logit_scale": float(logit_scale), "ece": expected_calibration_error(probs, targets),
            "mean_top1_prob": float(top1_prob.mean()), "top1": float((predicted == targets).float().mean()),
            "nll": negative_log_likelihood(scores, targets, logit_scale)}


@dataclass
class CalibrationFit:
    """A fitted scale and the figures before (the classifier's scale so far) and after, on the fitting clips."""

    logit_scale: float
    report: dict[str, Any]


def calibration_report(pipeline: Any, audio: torch.Tensor, labels: Sequence[str], *, class_labels: Sequence[str] | None = None,
                       templates: Sequence[str] | None = None, fitted_scale: float | None = None) -> dict[str, Any]:
    """Calibration figures of the pipeline's zero-shot classifier on embedded clips ``[N, D]`` with their labels:
    ``before`` at the backbone's own scale (uncalibrated), ``after`` at ``fitted_scale`` or, without one, at the
    scale the bundle's card gives (when it has one). ``temperature`` is what divides the backbone's logits.

    ``class_labels``: the classes (default: the bundle's labels); every one of ``labels`` must be among them.
    """
    classifier = pipeline.zero_shot_classifier(class_labels, templates)
    scores, targets = classifier.scores(audio), class_indices(classifier.labels, labels)
    before = pipeline.backbone_logit_scale
    report: dict[str, Any] = {"clips": len(labels), "classes": len(classifier.labels), "ece_bins": ECE_BINS,
                              "before": calibration_figures(scores, targets, before)}
    after = fitted_scale if fitted_scale is not None else pipeline.card.calibration.logit_scale
    if after is not None:
        report["after"] = calibration_figures(scores, targets, after)
        report["temperature"] = before / after
    return report


def class_indices(classes: Sequence[str], labels: Sequence[str]) -> torch.Tensor:
    """Each label's index among the classes; a label that is not a class is named."""
    unknown = sorted(set(labels) - set(classes))
    if unknown:
        raise ValueError(f"labels not among the classes: {unknown[:5]}")
    index = {c: i for i, c in enumerate(classes)}
    return torch.tensor([index[label] for label in labels])


def fit_calibration(pipeline: Any, audio: torch.Tensor, labels: Sequence[str], *, class_labels: Sequence[str] | None = None,
                    templates: Sequence[str] | None = None) -> CalibrationFit:
    """Fit the zero-shot scale on labelled validation embeddings ``[N, D]`` through the pipeline's own classifier
    (the bundle's labels and templates unless given), and report ECE, mean top-1 probability and top-1 accuracy
    before and after. Store ``logit_scale`` in the card (``card.calibration.logit_scale``) to use it."""
    classifier = pipeline.zero_shot_classifier(class_labels, templates)
    scale = fit_logit_scale(classifier.scores(audio), class_indices(classifier.labels, labels))
    return CalibrationFit(scale, calibration_report(pipeline, audio, labels, class_labels=class_labels,
                                                    templates=templates, fitted_scale=scale))
