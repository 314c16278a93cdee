"""The shapes bundle (assets/shapes): a reduced rebuild from scratch, and the committed bundle against its targets."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image, ImageChops

from wavbrivl.bundle import BundleCard
from wavbrivl.data import read_manifest
from wavbrivl.pipeline import WavBriVLPipeline
from wavbrivl.worlds.shapes.build import ShapesSettings, build_shapes, picture_set
from wavbrivl.worlds.shapes.world import COLOURS, write_world

REPO = Path(__file__).resolve().parent.parent
BUNDLE = REPO / "assets" / "shapes"


def test_compatibility_loss_is_clip_loss_with_one_positive_and_spreads_over_true_captions():
    import open_clip
    import torch

    from wavbrivl.losses import multi_positive_clip_loss as compatibility_clip_loss

    g = torch.Generator().manual_seed(0)
    img = torch.nn.functional.normalize(torch.randn(6, 8, generator=g), dim=-1)
    txt = torch.nn.functional.normalize(torch.randn(6, 8, generator=g), dim=-1)
    scale = torch.tensor(10.0)
    plain = open_clip.ClipLoss()(img, txt, scale)
    assert torch.allclose(compatibility_clip_loss(img, txt, scale, torch.eye(6, dtype=torch.bool)), plain)
    # Captions 0 and 1 are true of pictures 0 and 1 alike: pictures that sit on the "other" true caption are
    # not penalised as plain CLIP loss would penalise them.
    both = torch.eye(6, dtype=torch.bool)
    both[:2, :2] = True
    swapped = txt.clone()
    swapped[[0, 1]] = txt[[1, 0]]
    own_pair_only = torch.eye(6, dtype=torch.bool)
    assert compatibility_clip_loss(swapped, txt, scale, both) < 0.9 * compatibility_clip_loss(swapped, txt, scale, own_pair_only)


@pytest.mark.slow
def test_reduced_bundle_builds_from_scratch_and_beats_chance(tmp_path):
    out = tmp_path / "shapes"
    report = build_shapes(out, ShapesSettings.reduced())
    # Every part is present, in safetensors, and loads through the public entry points.
    for name in ("config.json", "audio_encoder.safetensors", "bundle.json", "report.json", "report.md", "generated.png",
                 "index/index.json", "gallery/manifest.csv", "gallery/captions.txt"):
        assert (out / name).is_file(), name
    assert list((out / "backbone").glob("*.safetensors")) and list((out / "generator").rglob("*.safetensors"))
    assert not list(out.rglob("*.bin")) and not list(out.rglob("*.pt")) and not list(out.rglob("*.ckpt"))
    assert len(list((out / "examples").glob("*.wav"))) == 3
    pipeline = WavBriVLPipeline.from_pretrained(out, device="cpu")  # the whole bundle through the public entry point
    example = pipeline.card.examples[0]
    assert len(pipeline.search(out / example.file, 3).images) == 3
    assert pipeline.generate(out / example.file, steps=2).size == (32, 32)
    assert len(pipeline.card.labels) == 24 and pipeline.card.templates == ["{}"] and pipeline.card.display_name("ja")
    # Clearly above chance after a few hundred steps on a fraction of the data.
    seen = report["seen"]
    assert seen["audio_to_image"]["R@5"] > 3 * seen["audio_to_image"]["chance_R@1"]
    assert seen["zeroshot_colour"] > 0.5 and seen["zeroshot_size"] > 0.7  # chance 1/4 and 1/2
    assert report["unseen"]["audio_to_image"]["R@5"] > 2 * report["unseen"]["audio_to_image"]["chance_R@1"]
    assert report["build"]["skipped_rows"] == 0 and report["build"]["timings"]["total_s"] > 0
    assert json.loads((out / "report.json").read_text())["seen"] == seen


def test_generator_targets_are_the_backbone_pictures_posed_canonically(tmp_path):
    rows = read_manifest(write_world(tmp_path / "w", n_per_combo=2, seed=5))
    pics, attrs = picture_set(rows, 2, 5)
    posed, posed_attrs = picture_set(rows, 2, 5, canonical=True)
    assert posed_attrs == attrs and len(posed) == len(pics) > len([r for r in rows if r.split != "test"])
    for pic, target, a in zip(pics, posed, attrs):
        # Position i is the same scene (a shape never reaches the corners, so they are pure background) ...
        for corner in ((0, 0), (0, 62), (62, 0), (62, 62)):
            box = (corner[1], corner[0], corner[1] + 2, corner[0] + 2)
            assert ImageChops.difference(pic.crop(box), target.crop(box)).getbbox() is None
        # ... with its shape, in the attributes' colour, in the middle.
        assert sum(abs(v - c) for v, c in zip(target.getpixel((32, 32)), COLOURS[a["colour"]])) < 80
    assert any(ImageChops.difference(p, t).getbbox() for p, t in zip(pics, posed))
    with pytest.raises(ValueError, match="n_per_combo=3"):
        picture_set(rows, 3, 5, canonical=True)


def test_the_old_folder_and_names_still_work_for_one_release():
    """``assets/starter``, the bundle's folder before it was named after its world, loads the shapes bundle with a
    warning naming the new folder; the build's old Python names import, with a warning naming the new ones."""
    import torch

    from wavbrivl import WavBriVL
    from wavbrivl.worlds.shapes import build

    old_path = REPO / "assets" / "starter"
    with pytest.warns(FutureWarning, match="assets/shapes"):
        old = WavBriVL.from_pretrained(old_path)
    example = sorted((BUNDLE / "examples").glob("*.wav"))[0]
    assert old.root == BUNDLE
    assert torch.equal(old.embed_audio(example), WavBriVL.from_pretrained(BUNDLE).embed_audio(example))
    with pytest.warns(FutureWarning, match="assets/shapes"):
        pipe = WavBriVLPipeline.from_pretrained(old_path, device="cpu", index=None, generator=None)
    assert pipe.model.root == BUNDLE and pipe.card == BundleCard.load(BUNDLE)
    for old_name, new_name in build.RENAMED.items():
        with pytest.warns(FutureWarning, match=new_name):
            assert getattr(build, old_name) is getattr(build, new_name)
    with pytest.raises(AttributeError):
        build.StarterNothing  # noqa: B018


@pytest.fixture(scope="module")
def committed_report(tmp_path_factory):
    """``wavbrivl world shapes eval`` on the committed bundle, over its regenerated held-out world."""
    if not (BUNDLE / "config.json").is_file():
        pytest.fail(f"{BUNDLE} is missing: rebuild it with `wavbrivl world shapes build --out assets/shapes`")
    tmp = tmp_path_factory.mktemp("committed")
    run = lambda *a: subprocess.run([sys.executable, "-m", "wavbrivl", *a], capture_output=True, text=True, timeout=900, cwd=REPO)
    made = run("world", "shapes", "regenerate", "--bundle", str(BUNDLE), "--out", str(tmp / "world"))
    assert made.returncode == 0, made.stderr
    ev = run("world", "shapes", "eval", "--bundle", str(BUNDLE), "--data", str(tmp / "world" / "manifest.csv"),
             "--out", str(tmp / "report"))
    assert ev.returncode == 0, ev.stderr
    return json.loads((tmp / "report" / "report.json").read_text()), tmp


@pytest.mark.slow
def test_committed_bundle_meets_its_targets(committed_report):
    """Retrieval, zero-shot and generation meet issue 8's targets, on seen and on never-heard combinations."""
    world, _ = committed_report
    assert world["skipped"] == []
    seen, unseen = world["seen"], world["unseen"]
    assert seen["audio_to_image"]["R@1"] >= 0.9, seen["audio_to_image"]
    assert unseen["audio_to_image"]["R@1"] >= 0.5, unseen["audio_to_image"]
    for attr in ("colour", "shape", "size"):
        assert seen[f"zeroshot_{attr}"] >= 0.9, (attr, seen)
        assert unseen[f"zeroshot_{attr}"] >= 0.6, (attr, unseen)
    gen = world["generation"]
    assert gen["samples"] == 240, gen
    # All three attributes of the generated picture right (chance 1/24). Measured 0.838 over 240 sounds:
    # the target leaves nine samples of room for another CPU's rounding in sampling.
    assert gen["consistency"] >= 0.8, gen
    # Heard and never-heard sounds each clearly above chance (measured 0.933 and 0.742 over 120 each).
    assert gen["seen"] >= 0.85 and gen["unseen"] >= 0.6, gen
    for attr, floor in GENERATION_FLOORS.items():
        assert gen["per_attribute"][attr] >= floor, (attr, gen)


# Chance: colour 1/4, shape 1/3, size 1/2. Measured: colour 0.963, shape 0.879, size 0.992.
GENERATION_FLOORS = {"colour": 0.9, "shape": 0.8, "size": 0.9}


@pytest.mark.slow
def test_committed_bundle_is_what_its_report_says(committed_report):
    """The regenerated world is the one the bundle was built on: its gallery pictures are identical."""
    _, tmp = committed_report
    import csv

    with open(BUNDLE / "gallery" / "manifest.csv", newline="") as f:
        gallery = list(csv.DictReader(f))
    for row in gallery[:20]:
        a = Image.open(BUNDLE / "gallery" / row["image"]).convert("RGB")
        b = Image.open(tmp / "world" / "images" / row["image"]).convert("RGB")
        assert ImageChops.difference(a, b).getbbox() is None, row["image"]
    sizes = sum(p.stat().st_size for p in BUNDLE.rglob("*") if p.is_file())
    assert sizes < 50 * 1024 * 1024
    stored = json.loads((BUNDLE / "report.json").read_text())
    assert {"seen", "unseen", "generation", "build"} <= set(stored)
    # The new code path reproduces the figures the bundle was built with.
    world, _ = committed_report
    for group in ("seen", "unseen"):
        for key in ("zeroshot_colour", "zeroshot_shape", "zeroshot_size"):
            assert world[group][key] == pytest.approx(stored[group][key], abs=0.005), (group, key)
        for key in ("R@1", "R@5"):
            assert world[group]["audio_to_image"][key] == pytest.approx(stored[group]["audio_to_image"][key], abs=0.005)
    assert world["generation"]["consistency"] == pytest.approx(stored["generation"]["consistency"], abs=0.02)
    card = BundleCard.load(BUNDLE)
    assert [e.heard for e in card.examples].count(False) == 6 and all((BUNDLE / e.file).is_file() for e in card.examples)
