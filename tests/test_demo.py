"""The Gradio demo: handlers on a tiny real model/index/generator, the error paths, and the live named API."""
from __future__ import annotations

import json
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
import torch
from PIL import Image

from demo.config import DemoConfig, parse_labels
from demo.handlers import DemoService
from demo.page import example_files, example_title, page_fields, space_line, status
from wavbrivl.bundle import BundleCard, ExampleSound
from wavbrivl.index import _write_shard
from wavbrivl.zeroshot import DEFAULT_TEMPLATES, ZeroShotClassifier
from wavbrivl.worlds.shapes.world import render_sound
from wavbrivl.worlds.shapes.demo_world import build_demo_world

from .conftest import tone, write_wav
from .demo_world import launch_app


# --------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_model):
    return build_demo_world(tmp_path_factory.mktemp("demo"), tiny_model)


@pytest.fixture(scope="module")
def service(world):
    return DemoService(DemoConfig(checkpoint=str(world["ckpt"]), device="cpu")).load()


@pytest.fixture()
def clip(world) -> tuple[int, np.ndarray]:
    """A 3-second recording as Gradio's microphone hands it: (rate, int16 array)."""
    wave = render_sound(world["items"][0], 16000, 3.0)
    return 16000, (wave * 32767).astype(np.int16)


class Recorder:
    """Collects what a handler reports to its progress bar (Gradio's gr.Progress call signature)."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def __call__(self, progress, desc=None, total=None, unit="steps"):
        self.calls.append((progress, desc))


# --------------------------------------------------------------------------------------------- handlers
def test_loads_defaults_from_checkpoint_folder(service, world, tiny_model):
    assert service.state.error is None
    assert service.pipeline.index is not None and len(service.pipeline.index) == 24
    assert service.pipeline.generator is not None
    info = status(service) + space_line(service)
    assert tiny_model.backbone_id in info and "12 pictures and 12 captions" in info and "generation ready" in info
    # A checkpoint without a card is shown by its folder's name, never by a server path.
    assert page_fields(service, "en")["bundle_name"] == "ckpt" and str(world["root"]) not in info
    # ... and its examples by their file names, as not known to be heard (no card says so).
    first = world["items"][0]
    assert [example_title(service, e) for _, e in example_files(service)][0] == f"✓ 0 {first.colour} {first.shape}"
    assert service.labels == list(BundleCard.default("x").labels)


def test_search_matches_brute_force(service, clip, tiny_model, world):
    gallery, captions, note = service.search(clip, 5)
    captions = captions.values.tolist()
    assert len(gallery) == 5 and len(captions) == 5 and "index of 24 items" in note
    emb = tiny_model.embed_audio(clip)
    images = tiny_model.embed_image([Image.open(p) for p in sorted((world["root"] / "images").glob("*.png"))])
    best = int(torch.argmax(tiny_model.similarity(emb, images)))
    assert Path(gallery[0][0]).name == f"{best:02d}.png"
    scores = [float(c.split(" · ")[0]) for _, c in gallery]
    assert scores == sorted(scores, reverse=True)
    assert [row[0] for row in captions] == sorted((row[0] for row in captions), reverse=True)
    assert all(row[1] in {it.caption for it in world["items"]} for row in captions)


def test_same_sound_as_array_and_file_gives_same_results(service, clip, tmp_path):
    path = write_wav(tmp_path / "rec.wav", clip[1].astype(np.float32) / 32767)
    a = service.search(clip, 4)[0]
    b = service.search(str(path), 4)[0]
    assert [x[0] for x in a] == [x[0] for x in b]


def test_an_unsure_answer_has_no_winner_and_offers_three_guesses(service, clip):
    """Below the card's threshold the chart loses its bold heading and the page asks "Is it one of these?" with the
    first three labels; above it the winner stays. /classify's answer is the same label -> probability mapping."""
    labels = "a small red circle\na large blue square\na small yellow triangle\na tiny green star"
    scores = service.classify(clip, labels)
    assert isinstance(scores, dict) and abs(sum(scores.values()) - 1) < 1e-5
    calibration = service.card.calibration
    kept = calibration.unsure_below
    try:
        calibration.unsure_below = 1.0  # never sure enough
        heading, said = service.verdict(scores)
        top3 = list(scores)[:3]
        assert heading["show_heading"] is False and "unsure" in said and said.count("\n- ") == 3
        assert [line[2:].rsplit(" (", 1)[0] for line in said.splitlines() if line.startswith("- ")] == top3
        heading, said = service.verdict(scores, gr.Request(headers={"accept-language": "ja"}))
        assert "自信がありません" in said and all(label in said for label in top3)
        calibration.unsure_below = 0.0  # always sure
        heading, said = service.verdict(scores)
        assert heading["show_heading"] is True and said == ""
    finally:
        calibration.unsure_below = kept
    assert service.verdict(None)[1] == "" and service.verdict({})[1] == ""


def test_cleared_input_clears_results(service):
    gallery, captions, note = service.search(None, 5)
    assert (gallery, len(captions), note) == ([], 0, "")
    assert service.classify(None, "a, b") == {}


def test_classify_is_softmax_over_cosines(service, clip, tiny_model):
    labels = "a small red circle\na large blue square, a small yellow triangle\n\na small red circle"
    out = service.classify(clip, labels)
    assert sorted(out) == sorted(["a small red circle", "a large blue square", "a small yellow triangle"])  # repeats dropped
    assert abs(sum(out.values()) - 1) < 1e-5
    # Without a card the default prompt templates are averaged per label, and probabilities are a softmax over
    # the cosines scaled by the backbone's own temperature.
    labels = ["a small red circle", "a large blue square", "a small yellow triangle"]
    classifier = ZeroShotClassifier.from_labels(tiny_model.embed_text, labels, DEFAULT_TEMPLATES)
    cos = classifier.scores(tiny_model.embed_audio(clip))[0]
    expected = torch.softmax(tiny_model.backbone.logit_scale * cos, dim=0)
    assert list(out) == [labels[i] for i in torch.argsort(expected, descending=True).tolist()]  # most likely first
    assert all(abs(out[name] - float(p)) < 1e-5 for name, p in zip(labels, expected))
    with pytest.raises(gr.Error, match="at least one label"):
        service.classify(clip, " ,\n ")


def test_generate_is_seeded_and_reports_steps(service, clip):
    rec = Recorder()
    img = service.generate(clip, "", 0.0, 7, 3, 0, 0.0, progress=rec)
    # the generator's 16-px picture, enlarged smoothly for the page: no pixel blocks (in-between shades appear)
    assert isinstance(img, Image.Image) and img.size == (256, 256)
    small = service.pipeline.generate(clip, seed=7, steps=3)
    assert small.size == (16, 16) and len(np.unique(np.asarray(img).reshape(-1, 3), axis=0)) > len(
        np.unique(np.asarray(small).reshape(-1, 3), axis=0))
    assert [c[0] for c in rec.calls if c[1] == "generating"] == [(0, 3), (1, 3), (2, 3), (3, 3)]
    again = service.generate(clip, "", 0.0, 7, 3, 0, 0.0, progress=Recorder())
    other = service.generate(clip, "", 0.0, 8, 3, 0, 0.0, progress=Recorder())
    assert np.array_equal(np.asarray(img), np.asarray(again))
    assert not np.array_equal(np.asarray(img), np.asarray(other))
    mixed = service.generate(clip, "a large blue square", 0.5, 7, 3, 0, 0.0, progress=Recorder())
    assert not np.array_equal(np.asarray(img), np.asarray(mixed))
    text_only = service.generate(None, "a large blue square", 1.0, 7, 3, 0, 0.0, progress=Recorder())
    assert isinstance(text_only, Image.Image)
    with pytest.raises(gr.Error, match="Record or upload"):
        service.generate(None, "", 0.0, 0, 3, 0, 0.0, progress=Recorder())


def test_label_parsing():
    assert parse_labels("dog, cat\n\n dog \nbird") == ["dog", "cat", "bird"]
    assert parse_labels(None) == []


# --------------------------------------------------------------------------------------------- error paths
def test_silence_is_a_readable_error(service, tmp_path):
    with pytest.raises(gr.Error, match="silent.*microphone"):
        service.search((16000, np.zeros(48000, np.int16)), 5)
    path = write_wav(tmp_path / "quiet.wav", np.zeros(16000, np.float32))
    with pytest.raises(gr.Error, match="silent"):
        service.search(str(path), 5)


def test_long_sounds_refused_with_the_limit(service, tmp_path):
    # Ten minutes at 8 kHz: refused from the header's frame count (test_audio checks nothing is decoded).
    path = write_wav(tmp_path / "long.wav", tone(300, 600.0, sr=8000), sr=8000)
    with pytest.raises(gr.Error, match="long.wav is 600 s long.*up to 30 s"):
        service.search(str(path), 5)
    with pytest.raises(gr.Error, match="The recording is 31 s long.*up to 30 s"):
        service.search((8000, (np.random.default_rng(0).standard_normal(8000 * 31) * 3000).astype(np.int16)), 5)
    assert len(service.search((8000, (np.random.default_rng(0).standard_normal(8000 * 29) * 3000).astype(np.int16)), 5)[0]) == 5


def test_garbage_and_empty_files(service, tmp_path):
    junk = tmp_path / "song.wav"
    junk.write_bytes(np.random.default_rng(0).integers(0, 255, 5000, dtype=np.uint8).tobytes())
    with pytest.raises(gr.Error, match="not an audio file"):
        service.search(str(junk), 5)
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    with pytest.raises(gr.Error, match="empty"):
        service.search(str(empty), 5)
    text = tmp_path / "notes.mp3"
    text.write_text("not audio at all\n" * 50)
    with pytest.raises(gr.Error, match="not an audio file"):
        service.search(str(text), 5)


def test_non_soundfile_format_is_decoded_with_ffmpeg(service, tmp_path, clip):
    """Phones upload m4a/webm; libsndfile cannot read them, PyAV (FFmpeg) can."""
    av = pytest.importorskip("av", reason="PyAV is a dependency of video ingest; without it m4a uploads fail")
    path = tmp_path / "rec.m4a"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("aac", rate=16000, layout="mono")
        frame = av.AudioFrame.from_ndarray(clip[1][None, :], format="s16", layout="mono")
        frame.sample_rate = 16000
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    gallery, _, _ = service.search(str(path), 3)
    assert len(gallery) == 3


def test_index_from_another_space_disables_search_only(world, tmp_path, clip):
    other = tmp_path / "other-index"
    other.mkdir()
    header = {"format": "wavbrivl-index", "version": 1, "backbone_id": "ViT-B-32/openai", "embed_dim": 512,
              "dtype": "float32", "count": 0, "shards": []}
    _write_shard(other, header, np.eye(4, 512, dtype=np.float32),
                 [{"kind": "text", "path": None, "caption": str(i), "sha256": str(i)} for i in range(4)])
    svc = DemoService(DemoConfig(checkpoint=str(world["ckpt"]), index=str(other), generator="none")).load()
    assert svc.pipeline.index is None and "ViT-B-32/openai" in svc.pipeline.problems["index"]
    gallery, captions, _ = svc.search(clip, 5)
    assert gallery == [] and len(captions) == 0
    assert abs(sum(svc.classify(clip, "a, b").values()) - 1) < 1e-5  # the rest keeps serving
    assert "search is off" in status(svc) and str(other) not in status(svc)
    with pytest.raises(gr.Error, match="generation is off"):
        svc.generate(clip, progress=Recorder())


def test_unclip_generator_is_not_loaded_on_cpu(world, tmp_path):
    folder = tmp_path / "unclip"
    folder.mkdir()
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "StableUnCLIPImg2ImgPipeline"}))
    svc = DemoService(DemoConfig(checkpoint=str(world["ckpt"]), generator=str(folder), device="cpu")).load()
    assert svc.pipeline.generator is None and "needs a GPU" in svc.pipeline.problems["generator"]
    assert "picture generation is off" in status(svc)


def test_broken_checkpoint_is_reported_not_fatal(tmp_path, clip):
    svc = DemoService(DemoConfig(checkpoint=str(tmp_path / "nope"))).load()
    assert "could not be loaded" in status(svc) and str(tmp_path) not in status(svc)
    with pytest.raises(gr.Error, match="could not be loaded"):
        svc.search(clip, 5)


# --------------------------------------------------------------------------------------------- live app
@pytest.fixture(scope="module")
def live_app(world):
    demo, url, _ = launch_app(world["ckpt"])
    yield url, world
    demo.close()


def test_named_endpoints_over_http(live_app, tmp_path):
    from gradio_client import Client, handle_file

    url, world = live_app
    client = Client(url, verbose=False)
    names = set(client.view_api(print_info=False, return_format="dict")["named_endpoints"])
    assert {"/search", "/classify", "/generate"} <= names
    wav = write_wav(tmp_path / "upload.wav", render_sound(world["items"][1], 16000, 3.0))
    gallery, captions, note = client.predict(handle_file(str(wav)), 4, api_name="/search")
    assert len(gallery) == 4 and all(Path(g["image"]).is_file() and " · " in g["caption"] for g in gallery)
    assert len(captions["data"]) == 4
    labels = client.predict(handle_file(str(wav)), "a small red circle\na large blue square", api_name="/classify")
    assert {c["label"] for c in labels["confidences"]} == {"a small red circle", "a large blue square"}
    image = client.predict(handle_file(str(wav)), "", 0.0, 1, 2, 0, 0.0, api_name="/generate")
    assert Image.open(image).size == (256, 256)


def test_errors_reach_the_client_readably(live_app, tmp_path):
    from gradio_client import Client, handle_file

    url, _ = live_app
    client = Client(url, verbose=False)
    quiet = write_wav(tmp_path / "quiet.wav", np.zeros(16000, np.float32))
    with pytest.raises(Exception, match="silent"):
        client.predict(handle_file(str(quiet)), 4, api_name="/search")
    long = write_wav(tmp_path / "long.wav", tone(300, 40.0, sr=8000), sr=8000)
    with pytest.raises(Exception, match="up to 30 s"):
        client.predict(handle_file(str(long)), 4, api_name="/search")
    huge = tmp_path / "huge.wav"  # over launch(max_file_size="20mb"): refused at upload, before any handler
    huge.write_bytes(b"\0" * (21 * 1024 * 1024))
    with pytest.raises(Exception, match="(?i)size|large|413"):
        client.predict(handle_file(str(huge)), 4, api_name="/search")
    # The app keeps serving after errors.
    ok = write_wav(tmp_path / "ok.wav", tone(440, 2.0))
    assert len(client.predict(handle_file(str(ok)), 2, api_name="/search")[0]) == 2


def test_bundle_card_drives_the_page(tmp_path, clip, world):
    from wavbrivl import WavBriVL

    ckpt = WavBriVL.from_preset("tiny").save_pretrained(tmp_path / "bundle")
    (ckpt / "examples").mkdir()
    write_wav(ckpt / "examples" / "hum.wav", clip[1].astype(np.float32) / 32767)
    write_wav(ckpt / "examples" / "glide.wav", clip[1].astype(np.float32) / 32767)
    labels = ["a small red circle", "a large blue square", "a small yellow triangle"]
    BundleCard(name={"en": "Test world", "ja": "テストの世界"}, description="Sounds of a test world.", labels=labels,
               templates=["{}"], examples=[ExampleSound("examples/hum.wav", "a small red circle", heard=True, title="a hum"),
                                           ExampleSound("examples/glide.wav", "a large blue square", heard=False,
                                                        note="heard as a circle")]).save(ckpt)
    svc = DemoService(DemoConfig(checkpoint=str(ckpt), index="none", generator="none"))
    # The card is read before the models load: the page can show its labels and examples at once.
    examples = example_files(svc)
    assert svc.labels == labels and examples[0][0] == str(ckpt / "examples" / "hum.wav")
    assert [example_title(svc, e) for _, e in examples] == ["✓ a hum", "✗ a large blue square: heard as a circle"]
    assert page_fields(svc, "en")["bundle_name"] == "Test world" and page_fields(svc, "ja")["bundle_name"] == "テストの世界"
    assert page_fields(svc, "ja")["bundle_description"] == "Sounds of a test world."  # English when the card has no Japanese
    svc.load()
    assert list(svc.classify(clip)) == sorted(labels, key=svc.classify(clip).get, reverse=True) and len(svc.classify(clip)) == 3
    # The card's template ("{}") is the one zero-shot uses: scores are the labels' own text embeddings.
    model = svc.pipeline.model
    similarity = model.similarity(model.embed_audio(clip), model.embed_text(labels))[0]
    expected = torch.softmax(model.backbone.logit_scale * similarity, 0)
    assert all(abs(svc.classify(clip)[name] - float(p)) < 1e-5 for name, p in zip(labels, expected))


def test_a_card_with_more_labels_than_the_typed_cap_scores_them_all(tmp_path, clip):
    """The everyday card has 93 labels: the cap on labels a visitor types never cuts the bundle's own."""
    from demo.handlers import MAX_LABELS
    from wavbrivl import WavBriVL

    labels = [f"sound number {i}" for i in range(MAX_LABELS + 29)]
    ckpt = WavBriVL.from_preset("tiny").save_pretrained(tmp_path / "bundle")
    BundleCard(name="Many", description="Many labels.", labels=labels, templates=["{}"]).save(ckpt)
    svc = DemoService(DemoConfig(checkpoint=str(ckpt), index="none", generator="none")).load()
    assert set(svc.classify(clip)) == set(labels)
    assert set(svc.classify(clip, "\n".join(labels))) == set(labels)
    typed = labels + [f"extra {i}" for i in range(5)]
    assert list(svc.classify(clip, "\n".join(typed))) and set(svc.classify(clip, "\n".join(typed))) == set(labels)


def test_a_broken_card_is_reported_and_defaults_serve(tmp_path, clip):
    from wavbrivl import WavBriVL

    ckpt = WavBriVL.from_preset("tiny").save_pretrained(tmp_path / "bundle")
    (ckpt / "bundle.json").write_text('{"format": "wavbrivl-bundle", "format_version": 1}')
    svc = DemoService(DemoConfig(checkpoint=str(ckpt), index="none", generator="none")).load()
    assert "bundle.json: the field 'name' is missing" in status(svc) and str(tmp_path) not in status(svc)
    assert len(svc.classify(clip)) == len(BundleCard.default("x").labels)


def test_the_demo_and_eval_give_the_same_zero_shot_answer(tmp_path, tiny_checkpoint):
    """The page's /classify and `wavbrivl eval --task zeroshot` score the same clips with the same labels alike."""
    import subprocess
    import sys

    from wavbrivl.worlds.shapes.world import sample_items

    data = tmp_path / "clips"
    items = sample_items(12, seed=9)
    names = sorted({f"{it.colour} {it.shape}" for it in items})
    for i, it in enumerate(items):
        write_wav(data / f"{it.colour} {it.shape}" / f"{i}.wav", render_sound(it, 16000, 3.0))
    out = tmp_path / "report"
    proc = subprocess.run([sys.executable, "-m", "wavbrivl", "eval", "--checkpoint", str(tiny_checkpoint), "--task", "zeroshot",
                           "--data", str(data), "--out", str(out), "--no-plots"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    report = json.loads((out / "report.json").read_text())["zeroshot"]
    svc = DemoService(DemoConfig(checkpoint=str(tiny_checkpoint), index="none", generator="none")).load()
    confusion = np.zeros((len(names), len(names)), int)
    for path in sorted(data.rglob("*.wav")):
        top = next(iter(svc.classify(str(path), "\n".join(names))))
        confusion[names.index(path.parent.name), names.index(top)] += 1
    assert report["classes"] == names and report["confusion"] == confusion.tolist()


def test_config_from_flags_and_environment(monkeypatch, world):
    import app

    monkeypatch.setenv("WAVBRIVL_CHECKPOINT", str(world["ckpt"]))
    monkeypatch.setenv("WAVBRIVL_GENERATOR", "none")
    monkeypatch.setenv("WAVBRIVL_AUTH", "ann:secret")
    monkeypatch.setenv("GRADIO_SERVER_PORT", "7999")
    args = app.parse_args(["--index", "none", "--max-seconds", "12"])
    svc = app.make_service(args)
    assert (svc.config.checkpoint, svc.config.index, svc.config.generator, svc.config.max_seconds) == (
        str(world["ckpt"]), "none", "none", 12.0)
    kw = app.launch_kwargs(args, svc)
    assert kw["auth"] == ("ann", "secret") and kw["server_port"] == 7999 and kw["server_name"] == "127.0.0.1"
    assert kw["max_file_size"] == "20mb"


def test_on_zerogpu_the_models_stay_on_the_cpu_unless_told(monkeypatch):
    """ZeroGPU allows CUDA only inside @spaces.GPU calls; search and labels run outside them."""
    monkeypatch.setenv("SPACES_ZERO_GPU", "true")
    assert DemoConfig().resolved_device() == "cpu" and DemoConfig(device="cuda").resolved_device() == "cuda"


def test_a_space_exported_with_another_bundle_serves_that_one(monkeypatch, tmp_path):
    """`wavbrivl space export --bundle NAME` ships NAME alone: without the default bundle, the only one is served."""
    import demo.config as config

    (tmp_path / "assets" / "other").mkdir(parents=True)
    (tmp_path / "assets" / "other" / "config.json").write_text("{}")
    monkeypatch.setattr(config, "REPO_ROOT", tmp_path)
    monkeypatch.setattr(config, "DEFAULT_BUNDLE", tmp_path / "assets" / "everyday-not-shipped")
    assert DemoConfig().resolved_checkpoint() == str(tmp_path / "assets" / "other")
    (tmp_path / "assets" / "third").mkdir()
    (tmp_path / "assets" / "third" / "config.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="--checkpoint"):
        DemoConfig().resolved_checkpoint()
