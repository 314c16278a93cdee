"""WavBriVLPipeline: one object composing model, index, generator and card; what each call returns."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from wavbrivl import AudioError, WavBriVLPipeline
from wavbrivl.bundle import BundleCard, BundleError, ExampleSound
from wavbrivl.index import IndexFormatError
from wavbrivl.pipeline import FeatureUnavailable
from wavbrivl.worlds.shapes.world import render_sound
from wavbrivl.worlds.shapes.demo_world import build_demo_world

from .conftest import write_wav


@pytest.fixture(scope="module")
def bundle(tmp_path_factory, tiny_model):
    world = build_demo_world(tmp_path_factory.mktemp("bundle"), tiny_model)
    BundleCard(name="Tiny test world", labels=[it.caption for it in world["items"][:5]], templates=["{}"],
               examples=[ExampleSound(f"examples/{p.name}", p.stem, heard=True)
                         for p in sorted((world["ckpt"] / "examples").glob("*.wav"))]).save(world["ckpt"])
    return world


@pytest.fixture(scope="module")
def pipe(bundle):
    return WavBriVLPipeline.from_pretrained(bundle["ckpt"], device="cpu")


def test_a_bundle_loads_whole(pipe, bundle):
    assert pipe.index is not None and pipe.generator is not None and pipe.problems == {}
    assert pipe.name == "Tiny test world" and len(pipe.card.labels) == 5
    assert pipe.backbone_id == pipe.model.backbone_id == pipe.index.backbone_id == pipe.generator.space_id


def test_search_is_the_index_on_the_sound_embedding(pipe, bundle):
    wav = bundle["ckpt"] / pipe.card.examples[0].file
    hits = pipe.search(wav, 4)
    expected = pipe.index.search(pipe.model.embed_audio(wav), 4, kind="image")[0]
    assert [h.path for h in hits.images] == [e.path for e in expected] and len(hits.captions) == 4
    assert hits.index_size == 24
    only_text = pipe.search(wav, 3, kinds=("text",))
    assert only_text.images == [] and len(only_text.captions) == 3


def test_classify_uses_the_cards_labels_and_templates(pipe, bundle):
    wav = bundle["ckpt"] / pipe.card.examples[0].file
    probs = pipe.classify(wav)
    assert set(probs) == set(pipe.card.labels) and abs(sum(probs.values()) - 1) < 1e-5
    assert list(probs.values()) == sorted(probs.values(), reverse=True)
    text = pipe.model.embed_text(pipe.card.labels)  # template "{}": the label itself
    expected = torch.softmax(pipe.model.backbone.logit_scale * (text @ pipe.model.embed_audio(wav)[0]), 0)
    assert all(abs(probs[label] - float(p)) < 1e-5 for label, p in zip(pipe.card.labels, expected))
    other = pipe.classify(wav, ["a dog", "a cat"], templates=["a photo of {}", "{}"])
    assert set(other) == {"a dog", "a cat"}
    with pytest.raises(ValueError, match="'{}'"):
        pipe.classify(wav, ["a dog"], templates=["no slot"])


def test_the_condition_mixes_sound_and_prompt_one_way(pipe, bundle):
    wav = bundle["ckpt"] / pipe.card.examples[0].file
    sound = pipe.embed(wav)
    text = pipe.embed_text(["a large blue square"])[0]
    assert torch.allclose(pipe.condition(wav)[0], sound, atol=1e-6)
    assert torch.allclose(pipe.condition(wav, "a large blue square", 0.0)[0], sound, atol=1e-6)
    assert torch.allclose(pipe.condition(None, "a large blue square", 1.0)[0], text, atol=1e-6)
    half = pipe.condition(wav, "a large blue square", 0.5)[0]
    assert torch.allclose(half, torch.nn.functional.normalize(sound + text, dim=0), atol=1e-6)
    assert torch.allclose(pipe.condition(wav, "", 0.7)[0], sound, atol=1e-6)  # no prompt: the sound alone
    with pytest.raises(ValueError, match="a sound, or a prompt"):
        pipe.condition(None, "", 0.5)


def test_generate_takes_the_cards_defaults_and_is_seeded(pipe, bundle):
    wav = bundle["ckpt"] / pipe.card.examples[0].file
    steps = []
    a = pipe.generate(wav, steps=2, progress=lambda i, n: steps.append((i, n)))
    b = pipe.generate(wav, steps=2, seed=0)  # the card's default seed is 0
    c = pipe.generate(wav, steps=2, seed=1)
    assert a.size == (16, 16) and steps == [(1, 2), (2, 2)]
    assert np.array_equal(np.asarray(a), np.asarray(b)) and not np.array_equal(np.asarray(a), np.asarray(c))


def test_embeddings_are_cached_per_input(pipe, bundle, tmp_path, monkeypatch):
    calls = []
    original = type(pipe.model).embed_audio
    monkeypatch.setattr(type(pipe.model), "embed_audio", lambda self, *a, **k: calls.append(1) or original(self, *a, **k))
    wav = write_wav(tmp_path / "a.wav", render_sound(bundle["items"][4], 16000, 3.0))
    first = pipe.embed(wav)
    pipe.search(wav, 2)
    pipe.classify(wav)
    assert len(calls) == 1
    write_wav(wav, render_sound(bundle["items"][5], 16000, 3.5))  # the file changed: embedded anew
    assert not torch.equal(pipe.embed(wav), first) and len(calls) == 2
    rate, data = 16000, (render_sound(bundle["items"][4], 16000, 3.0) * 32767).astype(np.int16)
    pipe.embed((rate, data))
    pipe.embed((rate, data.copy()))
    assert len(calls) == 3  # the same samples, another array object: one embedding


def test_bad_audio_raises_with_its_reason(pipe):
    with pytest.raises(AudioError) as info:
        pipe.embed((16000, np.zeros(16000, np.int16)))
    assert info.value.reason == "silent"


def test_save_pretrained_writes_a_self_contained_bundle(pipe, bundle, tmp_path):
    out = pipe.save_pretrained(tmp_path / "saved")
    moved = tmp_path / "elsewhere"
    shutil.move(str(out), moved)  # pictures travel inside the bundle's index
    again = WavBriVLPipeline.from_pretrained(moved, device="cpu")
    wav = bundle["ckpt"] / pipe.card.examples[0].file
    assert [h.score for h in again.search(wav, 5).images] == pytest.approx([h.score for h in pipe.search(wav, 5).images])
    assert all(str(moved) in h.path for h in again.search(wav, 5).images)
    assert again.card == pipe.card and again.generator is not None
    assert again.classify(wav) == pytest.approx(pipe.classify(wav))


def test_without_parts_search_and_generation_say_why(bundle):
    bare = WavBriVLPipeline.from_pretrained(bundle["ckpt"], device="cpu", index=None, generator=None)
    wav = bundle["ckpt"] / bare.card.examples[0].file
    with pytest.raises(FeatureUnavailable, match="no gallery index"):
        bare.search(wav)
    with pytest.raises(FeatureUnavailable, match="no image generator"):
        bare.generate(wav)
    assert len(bare.classify(wav)) == 5


def test_damaged_parts_fail_loudly_or_switch_off(bundle, tmp_path):
    damaged = tmp_path / "damaged"
    shutil.copytree(bundle["ckpt"], damaged)
    shard = next((damaged / "index").glob("emb-*.npy"))
    shard.write_bytes(shard.read_bytes()[:-40])
    card = json.loads((damaged / "bundle.json").read_text())
    del card["name"]
    (damaged / "bundle.json").write_text(json.dumps(card))
    with pytest.raises(BundleError, match="bundle.json: the field 'name'"):
        WavBriVLPipeline.from_pretrained(damaged, device="cpu")
    lenient = WavBriVLPipeline.from_pretrained(damaged, device="cpu", strict=False)
    assert lenient.index is None and "checksum mismatch" in lenient.problems["index"] and str(shard) in lenient.problems["index"]
    assert "'name'" in lenient.problems["card"] and lenient.name == "damaged"  # defaults, named after the folder
    assert lenient.generator is not None  # what still works keeps working
    (damaged / "bundle.json").unlink()
    with pytest.raises(IndexFormatError, match="checksum"):
        WavBriVLPipeline.from_pretrained(damaged, device="cpu")


def test_an_embedded_sound_stands_in_for_its_audio(pipe, bundle):
    """What the demo hands over once a visitor's recording is deleted: the same answers as the audio itself."""
    from wavbrivl.pipeline import SoundEmbedding

    wav = bundle["ckpt"] / pipe.card.examples[0].file
    sound = SoundEmbedding(pipe.embed(wav))
    assert [h.path for h in pipe.search(sound, 4).images] == [h.path for h in pipe.search(wav, 4).images]
    assert pipe.classify(sound) == pipe.classify(wav)
    same = [np.asarray(pipe.generate(s, seed=3, steps=2)) for s in (sound, wav)]
    assert np.array_equal(*same)


def test_the_gallery_map_is_a_deterministic_linear_projection(pipe, bundle, tiny_model):
    from wavbrivl.embedding_map import EmbeddingMap

    emap = pipe.gallery_map()
    assert pipe.gallery_map() is emap  # computed once per pipeline
    emb, records = pipe.index.embeddings("image")
    assert emap.points.shape == (12, 2) and emap.labels == [r["caption"] or Path(r["path"]).stem for r in records]
    assert np.allclose(emap.axes @ emap.axes.T, np.eye(2), atol=1e-6)  # orthonormal axes
    assert np.allclose(emap.project(emb), emap.points, atol=1e-5)  # a new embedding is placed as the pictures were
    assert 0 < emap.explained[1] <= emap.explained[0] < 1
    again = EmbeddingMap.fit(emb, emap.labels)  # same gallery, same map: no seed, no mirrored axes
    assert np.allclose(again.points, emap.points)
    # A sound lands on it with its nearest pictures: the same ones the search returns first.
    wav = bundle["ckpt"] / pipe.card.examples[0].file
    xy, nearest = emap.place(pipe.embed(wav), 3)
    assert xy.shape == (2,) and len(nearest) == 3
    top = [h.meta["sha256"] for h in pipe.search(wav, 3).images]
    assert [records[emap.rows[i]]["sha256"] for i in nearest] == top
    with pytest.raises(ValueError, match="32-d embeddings cannot be placed on a map of 64-d"):
        EmbeddingMap.fit(np.random.default_rng(0).standard_normal((5, 64)), list("abcde")).project(emb[0])


def test_the_map_figure_keeps_nothing_global(pipe, bundle):
    import matplotlib.pyplot as plt

    from wavbrivl.plots import sound_map_figure

    emap = pipe.gallery_map()
    xy, nearest = emap.place(pipe.embed(bundle["ckpt"] / pipe.card.examples[0].file), 4)
    before = plt.get_fignums()
    fig = sound_map_figure(emap.points, xy, nearest, emap.labels)
    assert plt.get_fignums() == before  # the object API: nothing for pyplot to hold on to between requests
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert texts and set(texts) <= {emap.labels[i] for i in nearest} and len(texts) == len(set(texts))
