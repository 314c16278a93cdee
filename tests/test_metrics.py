"""Ranking metrics and generation judging: the one rank every report counts from, ties and small class sets."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from wavbrivl.judging import paint, paint_and_judge, tower_judge
from wavbrivl.metrics import class_hits, class_ranks, ranks_of_positives, retrieval_metrics
from wavbrivl.zeroshot import ZeroShotClassifier


def test_a_tie_ranks_the_positive_below_the_negative():
    sim = torch.tensor([[0.5, 0.5, 0.1], [0.9, 0.2, 0.9], [0.1, 0.3, 0.2]])
    positive = torch.tensor([[True, False, False], [False, False, True], [False, True, False]])
    assert ranks_of_positives(sim, positive).tolist() == [2, 2, 1]
    several = torch.tensor([[False, True, True], [True, False, True], [True, True, True]])
    assert ranks_of_positives(sim, several).tolist() == [2, 1, 1]  # the best-ranked positive counts
    m = retrieval_metrics(sim, positive, ks=(1, 2))
    assert m["R@1"] == pytest.approx(1 / 3) and m["R@2"] == 1.0 and m["MRR"] == pytest.approx((0.5 + 0.5 + 1) / 3)
    assert m["median_rank"] == 2.0 and (m["queries"], m["gallery"]) == (3, 3)
    with pytest.raises(ValueError, match="at least one positive"):
        ranks_of_positives(sim, torch.zeros(3, 3, dtype=torch.bool))


def test_class_hits_count_ties_against_and_any_k_past_the_classes_hits():
    scores = torch.tensor([[0.9, 0.1, 0.0], [0.2, 0.2, 0.6], [0.3, 0.3, 0.3], [0.1, 0.5, 0.4]])
    truth = [0, 1, 2, 2]
    assert class_ranks(scores, truth).tolist() == [1, 3, 3, 2]  # rows 1 and 2: tied with a rival, ranked below it
    hits = class_hits(scores, truth, ks=(1, 2, 5))
    assert hits == {"top1": [True, False, False, False], "top2": [True, False, False, True],
                    "top5": [True, True, True, True]}
    assert class_hits(scores, truth).keys() == {"top1", "top5"}
    assert class_hits(scores.double(), torch.tensor(truth))["top1"] == hits["top1"]  # float64 scores are not rounded


def test_float64_scores_apart_below_float32_precision_stay_apart():
    scores = torch.tensor([[0.5 + 1e-12, 0.5]], dtype=torch.float64)
    assert class_ranks(scores, [0]).tolist() == [1] and class_ranks(scores, [1]).tolist() == [2]


class Painter:
    """A generator standing in for a pipeline: each picture records the embedding row and seed it was painted from."""

    def __init__(self) -> None:
        self.batches: list[int] = []

    def generate_from_embedding(self, emb: torch.Tensor, *, seed: int, steps: int = 0) -> list[tuple[float, int, int]]:
        self.batches.append(len(emb))
        return [(float(row[0]), seed, steps) for row in emb]


def test_pictures_are_painted_in_batches_seeded_by_position():
    emb = torch.arange(5, dtype=torch.float32)[:, None]
    painter = Painter()
    pictures = paint(painter, emb, seed=10, batch=2, steps=3)
    assert painter.batches == [2, 2, 1]
    assert pictures == [(0.0, 10, 3), (1.0, 10, 3), (2.0, 12, 3), (3.0, 12, 3), (4.0, 14, 3)]
    assert paint(Painter(), emb[2:4], seed=12, batch=2, steps=3) == pictures[2:4]  # the same place, the same pictures
    shown, verdicts = paint_and_judge(Painter(), emb, {"count": len, "first": lambda p: p[0][0]}, seed=10, batch=2, steps=3)
    assert shown == pictures and verdicts == {"count": 5, "first": 0.0}


def test_the_tower_judge_names_pictures_through_the_image_tower():
    classifier = ZeroShotClassifier(["red", "blue", "green"], torch.eye(3))
    seen = {"red": [1.0, 0.0, 0.0], "blue": [0.0, 1.0, 0.0], "muddy": [0.6, 0.0, 0.8]}
    pipeline = SimpleNamespace(model=SimpleNamespace(embed_image=lambda images: torch.tensor([seen[i] for i in images])))
    judge = tower_judge(pipeline, classifier, [0, 1, 0], ks=(1, 2))
    assert judge(["red", "blue", "muddy"]) == {"top1": [True, True, False], "top2": [True, True, True]}
