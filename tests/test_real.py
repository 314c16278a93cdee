"""``app.py --real vit-h-14`` offline: a tiny bundle with pairs retargeted at first boot into the ``vit-h-14`` preset's
space (a tiny ViT-H-shaped open_clip saved under the preset's own hub repo in a temporary Hugging Face cache), kept,
loaded again without retraining, and served with the tiny IP-Adapter + LCM generator found in the same cache; ZeroGPU's
``spaces.GPU`` present (a stand-in package) and absent; a missing real part; the Space export for real mode."""
from __future__ import annotations

import json
import logging
import shutil
import sys
from pathlib import Path

import pytest
import yaml
from PIL import Image

import app
from wavbrivl.cli import main
from wavbrivl.hub import VIT_H_REPO, VIT_H_SPACE
from wavbrivl.real import MARKER, hub_repos

from .conftest import tone, write_wav
from .hub_fixtures import build_generator_cache, put_in_cache, tiny_vit_h, use_cache
from .pairs_fixtures import CONCEPTS, build_bundle

KEPT = Path("real") / "vit-h-14"
#: A stand-in for Hugging Face's ``spaces`` package: ``GPU`` records each call, marks when the decorated function runs,
#: and passes arguments and the result through pickle as ZeroGPU's forked worker does.
SPACES_STANDIN = '''
import functools, pickle
calls, inside = [], False

def GPU(task=None, *, duration=None, **kwargs):
    def decorate(fn):
        @functools.wraps(fn)
        def gpu_call(*args, **kw):
            global inside
            args = tuple(a if callable(a) else pickle.loads(pickle.dumps(a)) for a in args)
            calls.append({"function": fn.__name__, "duration": duration(*args, **kw) if callable(duration) else duration})
            inside = True
            try:
                return pickle.loads(pickle.dumps(fn(*args, **kw)))
            finally:
                inside = False
        return gpu_call
    return decorate if task is None else decorate(task)
'''


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("real")
    cache = build_generator_cache(tmp / "hub")
    tiny_vit_h(cache)
    return {"cache": cache, "bundle": build_bundle(tmp / "source"), "recording": write_wav(tmp / "rec.wav", tone(900.0, 1.5))}


@pytest.fixture
def env(world, monkeypatch, tmp_path) -> Path:
    """Offline, the tiny hub cache, and a fresh persistent folder for the kept bundle (``WAVBRIVL_HOME``)."""
    use_cache(monkeypatch, world["cache"])
    monkeypatch.setenv("WAVBRIVL_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("SPACES_ZERO_GPU", raising=False)
    return tmp_path / "home"


def boot(bundle: Path, *flags: str):
    """The app's own flag parsing and service, loaded as ``app.py --preload`` does."""
    args = app.parse_args(["--checkpoint", str(bundle), "--device", "cpu", *flags])
    return app.make_service(args).load()


def test_first_boot_retargets_and_keeps_second_boot_loads_then_search_classify_generate(world, env, caplog):
    caplog.set_level(logging.INFO)
    first = boot(world["bundle"], "--real", "vit-h-14")
    assert first.state.error is None and first.notice is None and first.real.retargeted
    stages = [r.getMessage() for r in caplog.records if r.getMessage().startswith("demo: ")]
    assert any("retargeting bundle into ViT-H-14/laion2b_s32b_b79k" in s and "20 pictures and 4 captions" in s
               and "6 steps" in s for s in stages), stages  # the page's loading stage says what takes minutes
    kept = env / KEPT
    marker = json.loads((kept / MARKER).read_text())
    assert marker["preset"] == "vit-h-14" and marker["space"] == VIT_H_SPACE
    assert json.loads((kept / "bundle.json").read_text())["hub"]["backbone"] == f"hf-hub:{VIT_H_REPO}"
    assert not (kept / "backbone").exists()  # the hub backbone is referenced, never copied
    assert any("real mode vit-h-14: serving" in r.getMessage() and "latent-consistency/lcm-lora-sdv1-5" in r.getMessage()
               for r in caplog.records)  # start-up says which repos the generator resolved to
    weights = (kept / "audio_encoder.safetensors").stat().st_mtime_ns

    caplog.clear()
    service = boot(world["bundle"], "--real", "vit-h-14")
    assert service.state.error is None and not service.real.retargeted and service.real.checkpoint == str(kept)
    assert not any("retargeting" in r.getMessage() for r in caplog.records)
    assert (kept / "audio_encoder.safetensors").stat().st_mtime_ns == weights  # loaded, not trained again
    pipe = service.pipeline
    assert pipe.backbone_id == VIT_H_SPACE and pipe.model.root == kept
    # A CPU host: the few-step LCM mode of IP-Adapter over SD 1.5, from the hub cache.
    assert pipe.generator.source.startswith("stable-diffusion-v1-5/stable-diffusion-v1-5 + h94/IP-Adapter")
    assert "LCM-LoRA" in pipe.generator.source and not pipe.generator.backend.needs_gpu
    from demo.page import status

    assert "Real mode `vit-h-14`" in status(service) and "picture generation ready" in status(service)

    gallery, captions, note = service.search(str(world["recording"]), 3)
    assert len(gallery) == 3 and len(captions) == 3 and "index of 8 items" in note
    scores = service.classify(str(world["recording"]))
    assert set(scores) == set(CONCEPTS) and abs(sum(scores.values()) - 1) < 1e-5
    picture = service.generate(str(world["recording"]), steps=4, seed=1)
    assert isinstance(picture, Image.Image) and picture.size == (256, 256)
    assert service._paint == service.paint  # no `spaces` package here: painted in the plain function

    # The kept bundle pushed to the Hub (here: put in the cache under a repo id) loads by name, nothing retargeted.
    put_in_cache(world["cache"], "someone/everyday-vit-h", kept)
    hub = app.make_service(app.parse_args(["--checkpoint", "someone/everyday-vit-h", "--device", "cpu", "--real", "vit-h-14"]))
    hub.load()
    assert hub.notice is None and hub.real.checkpoint == "someone/everyday-vit-h" and hub.pipeline.backbone_id == VIT_H_SPACE
    assert "LCM-LoRA" in hub.pipeline.generator.source and hub.classify(str(world["recording"]))


def test_a_recording_paints_through_each_real_generator_from_the_retargeted_space(world, env):
    """A recording embedded in the retargeted (tiny, ViT-H-shaped) space drives every real generator source: IP-Adapter
    guided and unguided, its LCM mode, and Stable unCLIP (its second candidate repo); each gets the sound's direction
    at the retargeted bundle's recorded raw image-embedding norm."""
    import torch

    from wavbrivl import WavBriVLPipeline
    from wavbrivl.generate import Generator
    from wavbrivl.hub import generator_source

    kept = boot(world["bundle"], "--real", "vit-h-14").real.checkpoint
    pipe = WavBriVLPipeline.from_pretrained(kept, device="cpu", generator=None)
    sound = pipe.embed(str(world["recording"]))
    norm = pipe.model.config.image_embed_norm
    assert sound.shape == (32,) and sound.dtype == torch.float32 and norm and norm > 1
    for name, guidance in (("ip-adapter-sd15", 5.0), ("ip-adapter-sd15", 1.0), ("ip-adapter-sd15-lcm", 1.0), ("unclip-h", 5.0)):
        gen = Generator.from_source(generator_source(name), embed_norm=norm, device="cpu")
        picture = gen.generate(sound, space_id=pipe.backbone_id, seed=0, steps=2, guidance_scale=guidance, height=32,
                               width=32)[0]
        assert isinstance(picture, Image.Image) and picture.size == (32, 32), name


def test_with_spaces_generate_paints_inside_the_gpu_function(world, env, monkeypatch, tmp_path):
    boot(world["bundle"], "--real", "vit-h-14")  # first boot (this test's own WAVBRIVL_HOME)
    (tmp_path / "pkgs" / "spaces").mkdir(parents=True)
    (tmp_path / "pkgs" / "spaces" / "__init__.py").write_text(SPACES_STANDIN)
    monkeypatch.syspath_prepend(str(tmp_path / "pkgs"))
    monkeypatch.delitem(sys.modules, "spaces", raising=False)
    import spaces

    service = boot(world["bundle"], "--real", "vit-h-14")
    seen: list[bool] = []
    service.pipeline.generator.pipeline.unet.register_forward_pre_hook(lambda *_: seen.append(spaces.inside))
    picture = service.generate(str(world["recording"]), steps=4, seed=1)
    assert isinstance(picture, Image.Image)
    assert spaces.calls == [{"function": "paint", "duration": 24}]  # 20 s + 1 s per step asked of ZeroGPU
    assert seen == [True] * 4  # every denoising step ran inside the decorated function
    spaces.calls.clear()
    service.search(str(world["recording"]), 2)
    service.classify(str(world["recording"]))
    assert spaces.calls == []  # search and labels never ask for a GPU


def test_on_zerogpu_the_generator_is_placed_on_cuda_at_startup(monkeypatch):
    from demo.config import DemoConfig

    monkeypatch.setenv("SPACES_ZERO_GPU", "true")
    cfg = DemoConfig()
    assert (cfg.resolved_device(), cfg.resolved_generator_device(), cfg.has_gpu()) == ("cpu", "cuda", True)
    monkeypatch.delenv("SPACES_ZERO_GPU")
    assert DemoConfig(device="cpu").resolved_generator_device() == "cpu" and not DemoConfig(device="cpu").has_gpu()


def test_a_missing_real_part_is_said_in_one_line_and_the_offline_bundle_answers(world, env, monkeypatch, tmp_path, caplog):
    cache = tmp_path / "cache"
    shutil.copytree(world["cache"], cache)
    shutil.rmtree(cache / f"models--{VIT_H_REPO.replace('/', '--')}")  # the backbone's weights never downloaded
    use_cache(monkeypatch, cache)
    service = boot(world["bundle"], "--real", "vit-h-14")
    notice = service.notice
    assert notice is not None and "\n" not in notice
    assert VIT_H_REPO in notice and "HF_HUB_OFFLINE" in notice and "Serving the offline bundle bundle instead" in notice
    assert any(r.getMessage() == f"demo: {notice}" for r in caplog.records)
    assert not (env / KEPT).exists()  # nothing retrained for nothing
    from demo.page import status

    assert "real mode vit-h-14 is off" in status(service)
    pipe = service.pipeline  # the offline bundle, whole: its own space, index and generator
    assert pipe.model.root == world["bundle"] and pipe.backbone_id != VIT_H_SPACE
    assert len(service.search(str(world["recording"]), 2)[0]) == 2 and service.classify(str(world["recording"]))
    assert isinstance(service.generate(str(world["recording"]), steps=2), Image.Image)

    hub = app.make_service(app.parse_args(["--checkpoint", "someone/not-cached", "--device", "cpu", "--real", "vit-h-14"]))
    monkeypatch.setattr(hub.config, "offline_bundle", lambda: str(world["bundle"]))
    hub.load()
    assert "bundle someone/not-cached" in hub.notice and "offline bundle" in hub.notice
    assert hub.pipeline.model.root == world["bundle"]


def test_space_export_for_real_mode(tmp_path, capsys):
    out = tmp_path / "space"
    assert main(["space", "export", str(out), "--real", "vit-h-14"]) == 0
    text = (out / "README.md").read_text()
    front = yaml.safe_load(text.split("---\n")[1])
    assert front["suggested_hardware"] == "zero-a10g" and front["sdk"] == "gradio"
    assert set(hub_repos("vit-h-14")) <= set(front["models"])
    assert {VIT_H_REPO, "stable-diffusion-v1-5/stable-diffusion-v1-5", "h94/IP-Adapter",
            "latent-consistency/lcm-lora-sdv1-5"} <= set(front["models"])
    preload = {line.split()[0]: line.split()[1].split(",") for line in front["preload_from_hub"]}
    assert preload["latent-consistency/lcm-lora-sdv1-5"] == ["pytorch_lora_weights.safetensors"]
    assert "unet/diffusion_pytorch_model.safetensors" in preload["stable-diffusion-v1-5/stable-diffusion-v1-5"]
    assert "WAVBRIVL_REAL=vit-h-14" in text and "WAVBRIVL_CHECKPOINT" in text
    files = [p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()]
    weights = [f for f in files if f.endswith((".safetensors", ".bin", ".ckpt", ".pth"))]
    assert weights and all(f.startswith("assets/") for f in weights)  # only the shipped bundle's own, no hub weights
    assert not [f for f in files if "models--" in f or "open_clip_config.json" in f and not f.startswith("assets/")]
    assert main(["space", "export", str(tmp_path / "x"), "--real", "vit-q"]) == 2
    assert "--real takes a preset" in capsys.readouterr().err
