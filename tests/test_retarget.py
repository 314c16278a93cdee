"""``wavbrivl retarget``: a bundle's own pairs train a fresh head into another frozen space, end to end."""
from __future__ import annotations

import json

import pytest

from wavbrivl import WavBriVLPipeline
from wavbrivl.cli import main

from .pairs_fixtures import CONCEPTS, build_bundle


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return build_bundle(tmp_path_factory.mktemp("retarget"))


def test_retarget_into_the_tiny_preset_then_again_from_the_cache(bundle, tmp_path, capsys):
    cache = tmp_path / "cache"
    args = ["retarget", "--bundle", str(bundle), "--backbone", "tiny", "--out", str(tmp_path / "new"),
            "--cache-dir", str(cache), "--device", "cpu", "--no-progress"]
    assert main(args) == 0
    assert "space wavbrivl-tiny-clip/random-seed0 (32-d)" in capsys.readouterr().out
    pipe = WavBriVLPipeline.from_pretrained(tmp_path / "new", device="cpu")
    assert pipe.backbone_id == "wavbrivl-tiny-clip/random-seed0" != WavBriVLPipeline.from_pretrained(bundle).backbone_id
    assert pipe.model.config.image_embed_norm > 0 and pipe.generator is None  # the source's generator reads another space
    example = str(tmp_path / "new" / pipe.card.examples[0].file)  # the source's example sounds come along
    hits = pipe.search(example, k=3)
    assert len(hits.images) == 3 and hits.index_size == 8 and all(h.caption for h in hits.images)
    assert set(pipe.classify(example)) == set(CONCEPTS)
    report = json.loads((tmp_path / "new" / "report.json").read_text())
    assert report["data"]["split"] == "test" and report["zeroshot"]["clips"] == 4 and "audio_to_image" in report["retrieval"]
    assert report["retarget"]["embedding_cache"]["pictures_embedded"] == 20
    assert report["retarget"]["train_recipe"]["queue_size"] == 32 and report["retarget"]["train_recipe"]["max_steps"] == 6
    assert (tmp_path / "new" / "report.md").read_text().startswith("# Retargeted bundle")
    assert pipe.training_pairs.info["rows"] == 20  # the new bundle can be retargeted again
    assert not [p.name for p in pipe.card.parts if p.files == ["generator/"]]
    # A second run finds every picture and caption in the cache.
    again = WavBriVLPipeline.from_pretrained(bundle, device="cpu").retarget("tiny", tmp_path / "new", steps=2,
                                                                            cache_dir=cache, device="cpu", progress=False)
    second = json.loads((again.model.root / "report.json").read_text())["retarget"]
    assert second["embedding_cache"] == {"pictures": 20, "pictures_embedded": 0, "pictures_cached": 20, "captions": 4}


def test_retarget_within_the_bundles_own_space_keeps_its_generator(bundle, tmp_path):
    pipe = WavBriVLPipeline.from_pretrained(bundle, device="cpu").retarget(
        "bundle", tmp_path / "same", steps=3, seed=1, cache_dir=tmp_path / "cache", device="cpu", progress=False)
    assert pipe.backbone_id == "wavbrivl-tiny-clip/random-seed1" and pipe.generator is not None
    assert (tmp_path / "same" / "backbone").is_dir()
    assert pipe.card.generator == WavBriVLPipeline.from_pretrained(bundle).card.generator
    bell = str(bundle / "examples" / "bell.wav")
    assert list(pipe.classify(bell)) and pipe.search(bell).images


def test_a_bundle_without_pairs_is_refused_by_name(tmp_path, capsys):
    plain = build_bundle(tmp_path, with_pairs=False)
    assert main(["retarget", "--bundle", str(plain), "--backbone", "tiny", "--out", str(tmp_path / "x")]) == 1
    err = capsys.readouterr().err
    assert str(plain) in err and "no training pairs (pairs/)" in err and not (tmp_path / "x").exists()
    with pytest.raises(ValueError, match="--backbone 'ViT-nope'"):
        WavBriVLPipeline.from_pretrained(build_bundle(tmp_path / "b")).retarget("ViT-nope", tmp_path / "y")


def test_the_published_wav2clip_trunk_under_a_new_head(bundle, tmp_path):
    """``--trunk wav2clip:CKPT``: the imported Wav2CLIP trunk (here random weights in its exact layout) carries the head."""
    import torch

    from .test_wav2clip import wav2clip_layout_state

    state, _, _ = wav2clip_layout_state(4)
    torch.save({"state_dict": state}, tmp_path / "Wav2CLIP.ckpt")
    pipe = WavBriVLPipeline.from_pretrained(bundle, device="cpu").retarget(
        "tiny", tmp_path / "w2c", trunk=f"wav2clip:{tmp_path / 'Wav2CLIP.ckpt'}", steps=1, cache_dir=tmp_path / "cache",
        device="cpu", progress=False)
    assert pipe.model.config.frontend.kind == "wav2clip" and pipe.embed_dim == 32
    trunk = {k[len("audio_encoder."):]: v for k, v in state.items() if k.startswith("audio_encoder.layer4")}
    ours = pipe.model.audio_encoder.trunk.state_dict()
    assert trunk and all(torch.equal(ours[k], v) for k, v in trunk.items())  # the trunk is Wav2CLIP's, untouched by training
    assert pipe.classify(str(bundle / "examples" / "bell.wav"))
