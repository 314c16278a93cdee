"""What a stakeholder's demo promises its visitors: their language, their recordings not kept, no server paths,
a damaged bundle said plainly, and the same endpoints callable by AI agents over MCP."""
from __future__ import annotations

import asyncio
import base64
import os
import shutil
import string
import tempfile
import time
from pathlib import Path

import gradio as gr
import httpx
import numpy as np
import pytest
from gradio.processing_utils import hash_file

from demo.config import DemoConfig
from demo.handlers import DemoService
from demo.i18n import JA, JA_ERRORS
from demo.messages import EN, ERRORS, PAGE, language, redact
from demo.page import status, translations
from demo.uploads import VisitorSounds
from wavbrivl.worlds.shapes.world import render_sound
from wavbrivl.worlds.shapes.demo_world import build_demo_world

from .conftest import write_wav
from .demo_world import launch_app, write_card

JA_REQUEST = gr.Request(headers={"accept-language": "ja-JP,ja;q=0.9,en-US;q=0.8"})


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_model):
    world = build_demo_world(tmp_path_factory.mktemp("visitors"), tiny_model)
    write_card(world["ckpt"], world["items"])
    return world


@pytest.fixture()
def service(world, tmp_path):
    svc = DemoService(DemoConfig(checkpoint=str(world["ckpt"]), device="cpu")).load()
    svc.sounds = VisitorSounds([p for p in (world["ckpt"] / "examples").glob("*.wav")], folder=tmp_path / "uploads")
    return svc


def upload(folder: Path, wave: np.ndarray, name: str = "recording.wav") -> Path:
    """A file where Gradio puts an upload: ``<upload folder>/<content hash>/<name>``."""
    path = write_wav(folder / f"{abs(hash(wave.tobytes())):x}" / name, wave)
    return path


# --------------------------------------------------------------------------------------------- languages
def fields_of(template: str) -> set[str]:
    return {f for _, f, _, _ in string.Formatter().parse(template) if f}


def test_every_text_has_japanese_with_the_same_fields():
    assert set(JA) == set(EN) and set(JA_ERRORS) == set(ERRORS)
    assert [k for k in EN if fields_of(EN[k]) != fields_of(JA[k])] == []
    assert [k for k in ERRORS if fields_of(" ".join(ERRORS[k])) != fields_of(" ".join(JA_ERRORS[k]))] == []


def test_the_language_follows_accept_language():
    def req(header: str) -> gr.Request:
        return gr.Request(headers={"accept-language": header})

    assert language(JA_REQUEST) == "ja" and language(req("en-US,en;q=0.9,ja;q=0.8")) == "en"
    assert language(req("fr-FR,ja;q=0.7,en;q=0.5")) == "ja" and language(req("de")) == "en" and language(None) == "en"


def test_the_page_tables_carry_the_bundles_own_words(service):
    tables = translations(service).translations_dict
    assert set(tables) == {"en", "ja"} and set(PAGE) <= set(tables["ja"])
    assert "小さなテストの世界" in tables["ja"]["title"] and "Tiny test world" in tables["en"]["title"]
    assert tables["ja"]["about"].startswith("**小さなテストの世界**\n\n小さなテストの世界の音です。")
    assert tables["ja"]["example_0"].startswith("✓ 例 0：") and tables["en"]["example_1"].startswith("✗ example 1:")
    assert "30秒まで" in tables["ja"]["audio_label"]


def test_handlers_answer_in_the_visitors_language(service, world):
    wave = render_sound(world["items"][0], 16000, 3.0)
    _, captions, note = service.search((16000, (wave * 32767).astype(np.int16)), 3, request=JA_REQUEST)
    assert "件のインデックスから" in note and list(captions.columns) == ["スコア", "キャプション"]
    with pytest.raises(gr.Error, match="無音です"):
        service.search((16000, np.zeros(16000, np.int16)), 3, request=JA_REQUEST)
    with pytest.raises(gr.Error, match="録音の長さは31秒"):
        service.search((8000, (np.random.default_rng(0).standard_normal(8000 * 31) * 3000).astype(np.int16)), 3,
                       request=JA_REQUEST)
    assert "準備ができました" in status(service, "ja") and "Ready" in status(service, "en")


def test_messages_never_show_a_server_path():
    assert (redact("/srv/app/assets/shapes/audio_encoder.safetensors: cannot read")
            == "shapes/audio_encoder.safetensors: cannot read")
    assert redact("index /tmp/x/y/index was built in 'a/b'") == "index y/index was built in 'a/b'"
    assert redact("see https://huggingface.co/org/model for help") == "see https://huggingface.co/org/model for help"


# --------------------------------------------------------------------------------------------- recordings not kept
def test_an_upload_is_deleted_once_embedded_and_its_follow_ups_still_work(service, world, tmp_path):
    folder = service.sounds.folder
    wav = upload(folder, render_sound(world["items"][1], 16000, 3.0))
    gallery, _, _ = service.search(str(wav), 4)
    assert len(gallery) == 4
    assert not wav.exists() and not wav.parent.exists()  # the file and its folder
    # The labels, another k, the map and a picture minutes later come back with the same path: they still work.
    assert len(service.classify(str(wav), "a, b")) == 2 and len(service.search(str(wav), 2)[0]) == 2
    assert service.sound_map(str(wav), 4) is not None
    assert service.generate(str(wav), "", 0.0, 1, 2, 0, 0.0, progress=lambda *a, **k: None).size == (256, 256)
    # A bad upload is deleted too, and reported as what it was every time it is asked about.
    quiet = upload(folder, np.zeros(16000, np.float32), "quiet.wav")
    for _ in range(2):
        with pytest.raises(gr.Error, match="silent"):
            service.classify(str(quiet), "a, b")
    assert not quiet.exists()
    # Forgotten (evicted, or the server restarted) and gone: the visitor is told to record again.
    gone = folder / "ff" / "gone.wav"
    with pytest.raises(gr.Error, match="deleted once analysed"):
        service.search(str(gone), 3)


def test_examples_and_files_elsewhere_are_never_deleted(service, world, tmp_path):
    example = sorted((world["ckpt"] / "examples").glob("*.wav"))[0]
    cached = service.sounds.folder / hash_file(example) / example.name  # Gradio's copy of a shown example
    cached.parent.mkdir(parents=True)
    shutil.copy(example, cached)
    elsewhere = write_wav(tmp_path / "mine.wav", render_sound(world["items"][2], 16000, 3.0))
    for path in (cached, example, elsewhere):
        assert len(service.search(str(path), 2)[0]) == 2
        assert path.exists()


def test_inline_copies_of_mcp_sounds_are_swept(tmp_path):
    sounds = VisitorSounds(folder=tmp_path)
    old, fresh, other = (tmp_path / ("a" * 64) / "file.wav", tmp_path / ("b" * 64) / "file.wav",
                         tmp_path / ("c" * 64) / "notes.txt")
    for path in (old, fresh, other):
        path.parent.mkdir()
        path.write_bytes(b"RIFF")
    os.utime(old, (time.time() - 120, time.time() - 120))
    os.utime(other, (time.time() - 120, time.time() - 120))
    assert sounds.sweep() == 1 and not old.exists() and fresh.exists() and other.exists()


def test_uploads_over_http_leave_nothing_behind(world, tmp_path):
    """Through the running app: the uploaded file is gone from Gradio's cache once the answer is back."""
    from gradio_client import Client, handle_file
    from gradio.utils import get_upload_folder

    demo, url, service = launch_app(world["ckpt"])
    try:
        client = Client(url, verbose=False)
        name = f"visitor-{os.getpid()}-{time.time_ns()}.wav"
        wav = write_wav(tmp_path / name, render_sound(world["items"][4], 16000, 3.0))
        gallery, _, _ = client.predict(handle_file(str(wav)), 3, api_name="/search")
        assert len(gallery) == 3 and service.sounds.deleted >= 1
        assert list(Path(get_upload_folder()).rglob(name)) == []
        assert demo.delete_cache == (60, 600)  # what Gradio writes for visitors (pictures) goes after 10 minutes
        config = httpx.get(url + "config", timeout=30).text  # and the page's configuration names no server folder
        assert str(world["root"]) not in config and tempfile.gettempdir().rstrip("/") + "/" not in config
    finally:
        demo.close()


# --------------------------------------------------------------------------------------------- damaged bundles
def damaged(world: dict, tmp_path: Path, relative: str) -> Path:
    copy = tmp_path / "damaged"
    shutil.copytree(world["ckpt"], copy)
    target = copy / relative
    target.write_bytes(target.read_bytes()[: target.stat().st_size // 3])
    return copy


def test_a_truncated_audio_encoder_is_one_message_naming_the_file(world, tmp_path):
    bundle = damaged(world, tmp_path, "audio_encoder.safetensors")
    svc = DemoService(DemoConfig(checkpoint=str(bundle), device="cpu")).load()
    line = status(svc)
    assert "could not be loaded" in line and "damaged/audio_encoder.safetensors" in line and "damaged or incomplete" in line
    assert str(tmp_path) not in line and len(line.splitlines()) == 1
    assert "読み込めませんでした" in status(svc, "ja")
    with pytest.raises(gr.Error, match="could not be loaded.*audio_encoder.safetensors"):
        svc.search(str(sorted((bundle / "examples").glob("*.wav"))[0]), 3)


def test_truncated_generator_weights_turn_generation_off_and_search_keeps_working(world, tmp_path):
    bundle = damaged(world, tmp_path, "generator/unet/diffusion_pytorch_model.safetensors")
    svc = DemoService(DemoConfig(checkpoint=str(bundle), device="cpu")).load()
    line = status(svc)
    assert "picture generation is off" in line and "diffusion_pytorch_model.safetensors" in line and str(tmp_path) not in line
    example = str(sorted((bundle / "examples").glob("*.wav"))[0])
    assert len(svc.search(example, 3)[0]) == 3
    with pytest.raises(gr.Error, match="generation is off"):
        svc.generate(example, progress=lambda *a, **k: None)


def test_a_card_missing_a_field_serves_defaults_and_says_so(world, tmp_path):
    import json

    bundle = tmp_path / "bundle"
    shutil.copytree(world["ckpt"], bundle)
    card = json.loads((bundle / "bundle.json").read_text())
    del card["examples"][0]["heard"]
    (bundle / "bundle.json").write_text(json.dumps(card))
    svc = DemoService(DemoConfig(checkpoint=str(bundle), device="cpu")).load()
    line = status(svc)
    assert "bundle.json) could not be read, so defaults are shown" in line and "examples[0] lacks the field(s) 'heard'" in line
    assert str(tmp_path) not in line and "bundle/bundle.json" in line
    assert len(svc.search(str(sorted((bundle / "examples").glob("*.wav"))[0]), 3)[0]) == 3  # the rest works


def test_the_page_says_when_pictures_start_from_a_retrieved_drawing(world, tmp_path):
    """A card whose generator starts from retrieved drawings gets a note beside the picture (in both languages);
    a card without retrieval gets none."""
    import json

    from demo.ui import build_ui

    def page_texts(bundle: Path) -> str:
        svc = DemoService(DemoConfig(checkpoint=str(bundle), device="cpu"))
        return json.dumps(build_ui(svc).config, ensure_ascii=False, default=str)

    bundle = tmp_path / "bundle"
    shutil.copytree(world["ckpt"], bundle)
    assert "generated-retrieval" not in page_texts(bundle)
    card = json.loads((bundle / "bundle.json").read_text())
    card["generator"] = {**card.get("generator", {}), "retrieval": True}
    (bundle / "bundle.json").write_text(json.dumps(card))
    assert "generated-retrieval" in page_texts(bundle)
    assert "retrieval" in PAGE["generated_retrieval"] and "検索" in JA["generated_retrieval"]


# --------------------------------------------------------------------------------------------- agents (MCP)
def test_the_named_endpoints_are_mcp_tools_an_agent_can_call(world, tmp_path):
    """``app.py --mcp``: the tools listed from the running app's MCP schema, and ``search`` called through the MCP
    protocol (streamable HTTP, as an agent connects), with the sound sent inline as MCP clients do."""
    from mcp import ClientSession
    from mcp.client.streamable_http import streamablehttp_client

    demo, url, service = launch_app(world["ckpt"], "--mcp")
    try:
        schema = {tool["name"]: tool for tool in httpx.get(url + "gradio_api/mcp/schema", timeout=30).json()}
        assert set(schema) == {"search", "classify", "generate"}
        search = schema["search"]
        assert search["description"].startswith("Find the gallery pictures and captions whose meaning is closest to a sound")
        assert "audio file" in search["inputSchema"]["properties"]["audio"]["description"]
        assert "how many pictures" in search["inputSchema"]["properties"]["k"]["description"]
        assert "probability" in schema["classify"]["description"] and "seed" in schema["generate"]["inputSchema"]["properties"]

        wav = write_wav(tmp_path / "agent.wav", render_sound(world["items"][5], 16000, 3.0))
        sound = "data:audio/wav;base64," + base64.b64encode(wav.read_bytes()).decode()

        async def call() -> tuple[list[str], object]:
            async with streamablehttp_client(url + "gradio_api/mcp/") as (read, write, _):
                async with ClientSession(read, write) as session:
                    await session.initialize()
                    tools = await session.list_tools()
                    return [t.name for t in tools.tools], await session.call_tool("search", {"audio": sound, "k": 3})

        names, result = asyncio.run(call())
        assert sorted(names) == ["classify", "generate", "search"]
        answer = " ".join(getattr(c, "text", "") for c in result.content)
        assert not result.isError and "from an index of 24 items" in answer and answer.count("· ") >= 3
        assert service.sounds.deleted >= 1  # the agent's sound, too, was deleted once embedded
    finally:
        demo.close()
