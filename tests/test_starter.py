"""The offline starter bundle: a reduced rebuild from scratch, and the committed bundle against its targets."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image, ImageChops

from wavbrivl import WavBriVL
from wavbrivl.generate import Generator
from wavbrivl.index import GalleryIndex
from wavbrivl.starter import StarterSettings, build_starter

REPO = Path(__file__).resolve().parent.parent
BUNDLE = REPO / "assets" / "starter"


def test_reduced_bundle_builds_from_scratch_and_beats_chance(tmp_path):
    out = tmp_path / "starter"
    report = build_starter(out, StarterSettings.reduced())
    # Every part is present, in safetensors, and loads through the public entry points.
    for name in ("config.json", "audio_encoder.safetensors", "report.json", "report.md", "generated.png", "index/index.json",
                 "gallery/manifest.csv", "gallery/captions.txt"):
        assert (out / name).is_file(), name
    assert list((out / "backbone").glob("*.safetensors")) and list((out / "generator").rglob("*.safetensors"))
    assert not list(out.rglob("*.bin")) and not list(out.rglob("*.pt")) and not list(out.rglob("*.ckpt"))
    assert len(list((out / "examples").glob("*.wav"))) == 3
    model = WavBriVL.from_pretrained(out)
    index = GalleryIndex.load(out / "index")
    hits = index.search(model.embed_audio(next((out / "examples").glob("*.wav"))), k=3)
    assert len(hits[0]) == 3
    Generator.from_pretrained(out / "generator", device="cpu")
    # Clearly above chance after a few hundred steps on a fraction of the data.
    seen = report["seen"]
    assert seen["audio_to_image"]["R@5"] > 3 * seen["audio_to_image"]["chance_R@1"]
    assert seen["zeroshot_colour"] > 0.5 and seen["zeroshot_size"] > 0.7  # chance 1/6 and 1/2
    assert report["unseen"]["audio_to_image"]["R@5"] > 2 * report["unseen"]["audio_to_image"]["chance_R@1"]
    assert report["build"]["skipped_rows"] == 0 and report["build"]["timings"]["total_s"] > 0
    assert json.loads((out / "report.json").read_text())["seen"] == seen


@pytest.fixture(scope="module")
def committed_report(tmp_path_factory):
    """``wavbrivl eval --task world`` on the committed bundle, over its regenerated held-out world."""
    if not (BUNDLE / "config.json").is_file():
        pytest.fail(f"{BUNDLE} is missing: rebuild it with `wavbrivl starter build --out assets/starter`")
    tmp = tmp_path_factory.mktemp("committed")
    run = lambda *a: subprocess.run([sys.executable, "-m", "wavbrivl", *a], capture_output=True, text=True, timeout=900, cwd=REPO)
    made = run("starter", "world", "--bundle", str(BUNDLE), "--out", str(tmp / "world"))
    assert made.returncode == 0, made.stderr
    ev = run("eval", "--checkpoint", str(BUNDLE), "--task", "world", "--data", str(tmp / "world" / "manifest.csv"),
             "--out", str(tmp / "report"))
    assert ev.returncode == 0, ev.stderr
    return json.loads((tmp / "report" / "report.json").read_text()), tmp


def test_committed_bundle_meets_its_targets(committed_report):
    report, _ = committed_report
    world = report["world"]
    assert report["clips"]["skipped"] == 0
    assert world["seen"]["audio_to_image"]["R@1"] >= 0.9, world["seen"]["audio_to_image"]
    assert world["unseen"]["audio_to_image"]["R@1"] >= 0.5, world["unseen"]["audio_to_image"]
    for attr in ("colour", "shape", "size"):
        assert world["seen"][f"zeroshot_{attr}"] >= 0.9, (attr, world["seen"])
        assert world["unseen"][f"zeroshot_{attr}"] >= 0.6, (attr, world["unseen"])
    assert world["generation"]["consistency"] >= 0.8, world["generation"]


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
