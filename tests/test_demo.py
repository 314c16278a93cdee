"""The Gradio demo: handlers on a tiny real model/index/generator, the error paths, and the live named API."""
from __future__ import annotations

import json
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
import torch
from PIL import Image

from demo.service import DemoConfig, DemoService, parse_labels, prepare_audio
from wavbrivl.index import _write_shard
from wavbrivl.world import render_sound

from .conftest import tone, write_wav
from .demo_world import build_demo_world, launch_app


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
    assert service.index is not None and len(service.index) == 24
    assert service.generator is not None
    info = service.describe()
    assert tiny_model.backbone_id in info and "12 images and 12 captions" in info and "generator ready" in info
    assert "starter world" not in info  # only the real starter bundle says so


def test_search_matches_brute_force(service, clip, tiny_model, world):
    gallery, captions, note = service.search(clip, 5)
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


def test_cleared_input_clears_results(service):
    assert service.search(None, 5) == ([], [], "")
    assert service.classify(None, "a, b") == {}


def test_classify_is_softmax_over_cosines(service, clip, tiny_model):
    labels = "a small red circle\na large blue square, a small yellow triangle\n\na small red circle"
    out = service.classify(clip, labels)
    assert list(out) == ["a small red circle", "a large blue square", "a small yellow triangle"]
    assert abs(sum(out.values()) - 1) < 1e-5
    sims = tiny_model.similarity(tiny_model.embed_audio(clip), tiny_model.embed_text(list(out)))[0]
    assert max(out, key=out.get) == list(out)[int(torch.argmax(sims))]
    with pytest.raises(gr.Error, match="at least one label"):
        service.classify(clip, " ,\n ")


def test_generate_is_seeded_and_reports_steps(service, clip):
    rec = Recorder()
    img = service.generate(clip, "", 0.0, 7, 3, 0, 0.0, progress=rec)
    assert isinstance(img, Image.Image) and img.size == (16, 16)
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


def test_long_upload_refused_from_header(tmp_path):
    # Ten minutes at 8 kHz: refused from the header's frame count, before any sample is decoded.
    path = write_wav(tmp_path / "long.wav", tone(300, 600.0, sr=8000), sr=8000)
    with pytest.raises(gr.Error, match="600 s long.*up to 30 s"):
        prepare_audio(str(path), 30.0)
    with pytest.raises(gr.Error, match="up to 30 s"):
        prepare_audio((8000, np.zeros(8000 * 31, np.int16)), 30.0)
    assert prepare_audio((8000, np.zeros(8000 * 29, np.int16)), 30.0)[0] == 8000


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
    _write_shard(other, header, np.eye(4, 512, dtype=np.float32), [{"kind": "text", "path": None, "caption": str(i), "sha256": str(i)} for i in range(4)])
    svc = DemoService(DemoConfig(checkpoint=str(world["ckpt"]), index=str(other), generator="none")).load()
    assert svc.index is None and "search is off" in svc.index_problem and "ViT-B-32/openai" in svc.index_problem
    assert svc.search(clip, 5)[:2] == ([], [])
    assert abs(sum(svc.classify(clip, "a, b").values()) - 1) < 1e-5  # the rest keeps serving
    assert "search is off" in svc.describe()
    with pytest.raises(gr.Error, match="generation is off"):
        svc.generate(clip, progress=Recorder())


def test_unclip_generator_is_not_loaded_on_cpu(world, tmp_path):
    folder = tmp_path / "unclip"
    folder.mkdir()
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "StableUnCLIPImg2ImgPipeline"}))
    svc = DemoService(DemoConfig(checkpoint=str(world["ckpt"]), generator=str(folder), device="cpu")).load()
    assert svc.generator is None and "needs a GPU" in svc.generator_problem


def test_broken_checkpoint_is_reported_not_fatal(tmp_path, clip):
    svc = DemoService(DemoConfig(checkpoint=str(tmp_path / "nope"))).load()
    assert "could not be loaded" in svc.describe()
    with pytest.raises(gr.Error, match="could not be loaded"):
        svc.search(clip, 5)


# --------------------------------------------------------------------------------------------- live app
@pytest.fixture(scope="module")
def live_app(world):
    demo, url = launch_app(world["ckpt"])
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
    assert Image.open(image).size == (16, 16)


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


def test_starter_bundle_says_so_and_uses_world_labels(tmp_path, clip):
    from wavbrivl import WavBriVL

    model = WavBriVL.from_preset("tiny")
    model.config.info["bundle"] = "wavbrivl offline starter world"
    ckpt = model.save_pretrained(tmp_path / "starter")
    svc = DemoService(DemoConfig(checkpoint=str(ckpt), index="none", generator="none")).load()
    info = svc.describe()
    assert "offline starter world" in info and "python app.py --checkpoint PATH_OR_HUB_ID" in info
    assert len(svc.labels) == 24 and "a small red circle" in svc.labels
    assert len(svc.classify(clip)) == 24


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
