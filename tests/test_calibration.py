"""Temperature scaling of the zero-shot classifier: the fit, the ECE, the card field and the pipeline using it."""
from __future__ import annotations

import json

import pytest
import torch

from wavbrivl.bundle import BundleCard, BundleError, Calibration
from wavbrivl.calibration import (calibration_figures, expected_calibration_error, fit_calibration, fit_logit_scale,
                                  negative_log_likelihood)
from wavbrivl.pipeline import SoundEmbedding, WavBriVLPipeline


def sampled(scale: float, n: int = 4000, classes: int = 10, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Cosine-like scores and labels drawn from ``softmax(scale * scores)``: the scale that generated them is the
    one a correct fit recovers."""
    g = torch.Generator().manual_seed(seed)
    scores = torch.rand(n, classes, generator=g) * 0.6 - 0.3
    targets = torch.multinomial(torch.softmax(scale * scores, dim=1), 1, generator=g)[:, 0]
    return scores, targets


def test_the_fit_recovers_the_scale_that_generated_the_labels():
    scores, targets = sampled(20.0)
    fitted = fit_logit_scale(scores, targets)
    assert 17.0 < fitted < 23.0
    # It is the NLL's minimum: both neighbours are worse.
    nll = negative_log_likelihood(scores, targets, fitted)
    assert nll < negative_log_likelihood(scores, targets, fitted * 1.2)
    assert nll < negative_log_likelihood(scores, targets, fitted / 1.2)
    # Calibrated probabilities: the mean top-1 probability matches top-1 accuracy, the ECE is small.
    after = calibration_figures(scores, targets, fitted)
    assert abs(after["mean_top1_prob"] - after["top1"]) < 0.03 and after["ece"] < 0.04
    overconfident = calibration_figures(scores, targets, 100.0)
    assert overconfident["mean_top1_prob"] > overconfident["top1"] + 0.2 and overconfident["ece"] > 0.2
    assert overconfident["top1"] == after["top1"]  # the ranking, hence accuracy, never moves


def test_the_fit_stays_in_its_bounds():
    scores = torch.eye(3).repeat(10, 1)
    assert 50.0 < fit_logit_scale(scores, torch.arange(3).repeat(10)) <= 1000.0  # always right: sharp (the NLL is flat near 0)
    always_wrong = torch.tensor([1, 2, 0]).repeat(10)
    assert fit_logit_scale(scores, always_wrong) == pytest.approx(1.0, rel=1e-3)  # as soft as allowed
    with pytest.raises(ValueError, match="need scores"):
        fit_logit_scale(torch.zeros(3), torch.zeros(3))


def test_expected_calibration_error_by_hand():
    # Four clips at 0.9 (three right) and two at 0.6 (one right): |0.75-0.9|*4/6 + |0.5-0.6|*2/6 = 0.1 + 0.0333
    probs = torch.tensor([[0.9, 0.1]] * 4 + [[0.6, 0.4]] * 2)
    targets = torch.tensor([0, 0, 0, 1, 0, 1])
    assert expected_calibration_error(probs, targets) == pytest.approx(0.1 + 0.1 / 3)
    # Right as often as it says: no error. 15 bins of width 1/15: 0.6 and 0.9 sit in different bins.
    assert expected_calibration_error(torch.tensor([[0.5, 0.5]] * 2), torch.tensor([0, 1])) == pytest.approx(0.0)
    assert expected_calibration_error(torch.tensor([[1.0, 0.0]]), torch.tensor([0])) == 0.0


def test_the_card_keeps_the_scale_and_old_cards_mean_the_backbone_s(tmp_path, tiny_model):
    old = {"format": "wavbrivl-bundle", "format_version": 1, "name": "old"}
    card = BundleCard.from_dict(old)
    assert card.calibration == Calibration(logit_scale=None, unsure_below=0.4)
    pipe = WavBriVLPipeline(tiny_model, card=card)
    assert pipe.logit_scale == pytest.approx(float(tiny_model.backbone.logit_scale))

    card.calibration = Calibration(logit_scale=12.5, unsure_below=0.3, fitted_on="test")
    card.save(tmp_path)
    assert json.loads((tmp_path / "bundle.json").read_text())["calibration"]["logit_scale"] == 12.5
    assert BundleCard.load(tmp_path).calibration == card.calibration
    for bad in ({"logit_scale": -1.0}, {"unsure_below": 2}, {"temperature": 1.0}):
        with pytest.raises(BundleError, match="calibration"):
            BundleCard.from_dict(old | {"calibration": bad})


def test_the_pipeline_classifies_with_the_card_s_scale(tiny_model):
    labels = ["a small red circle", "a large blue square", "a small yellow triangle"]
    pipe = WavBriVLPipeline(tiny_model, card=BundleCard(name="t", labels=labels, templates=["{}"]))
    audio = torch.nn.functional.normalize(torch.randn(1, tiny_model.embed_dim), dim=-1)
    cosines = pipe.zero_shot_classifier().scores(audio)[0]
    sound = SoundEmbedding(audio[0])
    default = pipe.classify(sound)
    assert float(tiny_model.backbone.logit_scale) > 3.0
    pipe.card.calibration.logit_scale = 3.0  # a new scale gives a new classifier, not the cached one
    calibrated = pipe.classify(sound)
    expected = torch.softmax(3.0 * cosines, 0)
    assert all(calibrated[name] == pytest.approx(float(p), abs=1e-5) for name, p in zip(labels, expected))
    assert list(calibrated) == list(default) and max(calibrated.values()) < max(default.values())  # same order, softer


def test_fit_calibration_through_the_pipeline(tiny_model):
    """The function the everyday build calls: the pipeline's own classifier, a scale, and figures before/after."""
    labels = ["a small red circle", "a large blue square", "a small yellow triangle", "a tiny green star"]
    pipe = WavBriVLPipeline(tiny_model, card=BundleCard(name="t", labels=labels, templates=["{}", "the sound of {}"]))
    classes = pipe.zero_shot_classifier().embeddings
    g = torch.Generator().manual_seed(1)
    truth = torch.arange(len(labels)).repeat(15)
    audio = torch.nn.functional.normalize(classes[truth] + 0.9 * torch.randn(len(truth), classes.shape[1], generator=g), dim=-1)
    fit = fit_calibration(pipe, audio, [labels[i] for i in truth])
    report = fit.report
    assert report["clips"] == 60 and report["classes"] == 4 and report["ece_bins"] == 15
    assert report["after"]["logit_scale"] == fit.logit_scale and report["before"]["logit_scale"] == pipe.backbone_logit_scale
    assert report["after"]["nll"] <= report["before"]["nll"] + 1e-9 and report["after"]["top1"] == report["before"]["top1"]
    assert report["temperature"] == pytest.approx(pipe.logit_scale / fit.logit_scale)
    with pytest.raises(ValueError, match="not among the classes"):
        fit_calibration(pipe, audio[:1], ["a dog"])
