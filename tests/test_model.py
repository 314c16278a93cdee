"""WavBriVL: determinism, batch independence, any clip length, checkpoints, frozen backbone, errors."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from wavbrivl import AudioError, WavBriVL
from wavbrivl.backbone import BackboneUnavailableError

from .conftest import tone, write_wav


def noisy_tone(freq, seconds, seed=0):
    rng = np.random.default_rng(seed)
    return (tone(freq, seconds) + 0.05 * rng.standard_normal(int(seconds * 16000))).astype(np.float32)


def test_embeddings_are_unit_norm_and_deterministic(tiny_model):
    x = noisy_tone(440, 3.0)
    a = tiny_model.embed_audio(x, sample_rate=16000)
    b = tiny_model.embed_audio(x, sample_rate=16000)
    assert a.shape == (1, tiny_model.embed_dim)
    assert torch.equal(a, b)  # bit for bit on CPU
    assert torch.allclose(a.norm(dim=-1), torch.ones(1))


def test_embedding_alone_equals_embedding_in_a_batch(tiny_model):
    clips = [noisy_tone(f, s, seed=i) for i, (f, s) in enumerate([(300, 1.0), (800, 4.0), (2000, 0.7), (150, 2.5)])]
    alone = torch.cat([tiny_model.embed_audio(c, sample_rate=16000) for c in clips])
    batched = tiny_model.embed_audio(clips, sample_rate=16000, batch_size=5)
    # Same numbers up to float rounding: convolution kernels may sum in another order for another batch size.
    assert torch.allclose(alone, batched, atol=1e-5)
    assert not torch.allclose(batched[0], batched[1], atol=1e-3)


@pytest.mark.parametrize("seconds", [0.5, 5.0, 60.0])
def test_any_length(tiny_model, seconds):
    emb = tiny_model.embed_audio(noisy_tone(500, seconds), sample_rate=16000)
    assert emb.shape == (1, tiny_model.embed_dim) and torch.isfinite(emb).all()


def test_bad_files_in_a_batch_are_reported_and_skipped(tiny_model, tmp_path):
    good = write_wav(tmp_path / "good.wav", noisy_tone(440, 1.0))
    silent = write_wav(tmp_path / "silent.wav", np.zeros(16000, np.float32))
    garbage = tmp_path / "garbage.wav"
    garbage.write_text("not audio" * 100)
    result = tiny_model.embed_audio_many([good, garbage, good, silent])
    assert result.indices == [0, 2]
    assert [i for i, _ in result.errors] == [1, 3]
    assert "garbage.wav" in str(result.errors[0][1]) and result.errors[1][1].reason == "silent"
    assert torch.equal(result.embeddings[0], result.embeddings[1])
    with pytest.raises(AudioError, match="garbage.wav"):
        tiny_model.embed_audio([good, garbage])


def test_save_load_round_trip(tiny_model, tiny_checkpoint, tmp_path):
    files = sorted(p.name for p in tiny_checkpoint.iterdir())
    assert files == ["audio_encoder.safetensors", "backbone", "config.json"]
    config = json.loads((tiny_checkpoint / "config.json").read_text())
    assert config["format_version"] == 1 and config["embed_dim"] == 32
    assert config["backbone"]["id"] == "wavbrivl-tiny-clip/random-seed0"
    loaded = WavBriVL.from_pretrained(tiny_checkpoint)
    x = noisy_tone(700, 2.0)
    assert torch.equal(loaded.embed_audio(x, sample_rate=16000), tiny_model.embed_audio(x, sample_rate=16000))
    img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 40, 3), dtype=np.uint8))
    assert torch.equal(loaded.embed_image(img), tiny_model.embed_image(img))
    assert torch.equal(loaded.embed_text(["a red circle"]), tiny_model.embed_text(["a red circle"]))
    assert loaded.backbone_id == tiny_model.backbone_id
    # Saving a loaded model again (backbone now local) keeps everything, and overwrites atomically.
    again = loaded.save_pretrained(tmp_path / "again")
    loaded.save_pretrained(again)
    assert torch.equal(WavBriVL.from_pretrained(again).embed_text(["x"]), tiny_model.embed_text(["x"]))


def test_a_checkpoint_with_the_old_key_names_loads_and_embeds_the_same(tiny_model, tiny_checkpoint, tmp_path):
    """Checkpoints saved before the encoder's parts were named ``trunk`` and ``head`` (the committed bundles among
    them) store Wav2CLIP's ``audio_encoder.*`` / ``audio_transform.*``: they load unchanged; saves write the new names."""
    import shutil

    from safetensors.torch import load_file, save_file

    from wavbrivl.encoder import AudioEncoder

    new = load_file(str(tiny_checkpoint / "audio_encoder.safetensors"))
    assert new and all(k.startswith(("trunk.", "head.")) for k in new)
    old_names = {("audio_encoder." + k[len("trunk."):]) if k.startswith("trunk.") else ("audio_transform." + k[len("head."):]): v
                 for k, v in new.items()}
    old = shutil.copytree(tiny_checkpoint, tmp_path / "old")
    save_file(old_names, str(old / "audio_encoder.safetensors"))
    x = noisy_tone(520, 2.5)
    assert torch.equal(WavBriVL.from_pretrained(old).embed_audio(x, sample_rate=16000),
                       tiny_model.embed_audio(x, sample_rate=16000))
    # Every load of an encoder's state maps them (a resumed run's momentum encoder loads this way), strictly.
    encoder = AudioEncoder(tiny_model.config.encoder, n_freq=tiny_model.frontend.n_bins)
    encoder.load_state_dict(old_names, strict=True)
    assert all(torch.equal(encoder.state_dict()[k], v) for k, v in new.items())


def test_backbone_is_frozen(tiny_model):
    backbone = tiny_model.backbone
    assert all(not p.requires_grad for p in backbone.parameters())
    tiny_model.train()
    assert not backbone.training and not backbone.model.training
    assert tiny_model.audio_encoder.training
    tiny_model.eval()
    trainable = [n for n, p in tiny_model.named_parameters() if p.requires_grad]
    assert trainable and all(n.startswith("audio_encoder.") for n in trainable)


def test_images_and_text(tiny_model, tmp_path):
    path = tmp_path / "img.png"
    Image.new("RGB", (50, 30), "red").save(path)
    arr = np.zeros((30, 50, 3), np.uint8)
    arr[..., 0] = 255
    emb = tiny_model.embed_image([path, Image.open(path), arr])
    assert emb.shape == (3, 32) and torch.allclose(emb.norm(dim=-1), torch.ones(3))
    assert torch.allclose(emb[0], emb[1]) and torch.allclose(emb[0], emb[2], atol=1e-5)
    raw = tiny_model.embed_image(path, normalize=False)
    assert not torch.allclose(raw.norm(), torch.tensor(1.0))
    text = tiny_model.embed_text(["a red square", "a blue circle"])
    sim = tiny_model.similarity(emb, text)
    assert sim.shape == (3, 2) and sim.abs().max() <= 1 + 1e-5
    bad = tmp_path / "bad.png"
    bad.write_text("nope")
    with pytest.raises(ValueError, match="bad.png"):
        tiny_model.embed_image(bad)


def test_checkpoint_errors(tmp_path, tiny_checkpoint):
    with pytest.raises(FileNotFoundError, match="no such checkpoint"):
        WavBriVL.from_pretrained(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="not a wavbrivl checkpoint"):
        WavBriVL.from_pretrained(tmp_path / "empty")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        WavBriVL.from_pretrained(broken)
    config = json.loads((tiny_checkpoint / "config.json").read_text())
    config["encoder"]["channels"] = [16, 16, 16, 16]
    (broken / "config.json").write_text(json.dumps(config))
    (broken / "audio_encoder.safetensors").write_bytes((tiny_checkpoint / "audio_encoder.safetensors").read_bytes())
    with pytest.raises(ValueError, match="do not match"):
        WavBriVL.from_pretrained(broken)
    with pytest.raises(FileNotFoundError, match="Hugging Face Hub"):
        WavBriVL.from_pretrained("some-org/not-cached-anywhere", local_files_only=True)


def test_unknown_preset():
    with pytest.raises(ValueError, match="unknown preset 'nope'; choose one of tiny"):
        WavBriVL.from_preset("nope")


def test_hub_backbone_offline_error_names_what_and_how(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = WavBriVL.from_preset("vit-b-32")
    # Audio embedding needs no backbone weights at all.
    assert model.embed_audio(noisy_tone(440, 1.0), sample_rate=16000).shape == (1, 512)
    with pytest.raises(BackboneUnavailableError) as info:
        model.embed_text(["a dog barking"])
    message = str(info.value)
    assert "ViT-B-32" in message and "openai" in message and "vit-b-32" in message
    assert "HF_HUB_OFFLINE" in message and "assets/shapes" in message


def test_two_stream_encoder(tiny_model, tmp_path):
    """The 'twostream' encoder embeds any length, round-trips through a checkpoint, and its spectral
    stream ignores *when* things sound (frames shuffled in time give the same spectral features)."""
    import dataclasses

    from wavbrivl.encoder import EncoderConfig

    enc = EncoderConfig(arch="twostream", stem_channels=8, channels=[16, 32], head_hidden=[], embed_dim=32)
    torch.manual_seed(0)
    model = WavBriVL(dataclasses.replace(tiny_model.config, encoder=enc))
    for seconds in (0.5, 7.0):
        emb = model.embed_audio(noisy_tone(500, seconds), sample_rate=16000)
        assert emb.shape == (1, 32) and torch.isfinite(emb).all()
    loaded = WavBriVL.from_pretrained(model.save_pretrained(tmp_path / "two"))
    x = noisy_tone(900, 2.0)
    assert torch.equal(loaded.embed_audio(x, sample_rate=16000), model.embed_audio(x, sample_rate=16000))
    trunk = model.audio_encoder.trunk
    feats = torch.randn(3, 1, tiny_model.frontend.n_bins, 120)
    shuffled = feats[..., torch.randperm(120)]
    n_spec = trunk.out_channels - enc.channels[-1]
    with torch.no_grad():
        a, b = trunk(feats), trunk(shuffled)
    assert torch.allclose(a[:, :n_spec], b[:, :n_spec], atol=1e-5)
    assert not torch.allclose(a[:, n_spec:], b[:, n_spec:], atol=1e-3)
    with pytest.raises(ValueError, match="twostream"):
        WavBriVL(dataclasses.replace(tiny_model.config, encoder=EncoderConfig(arch="bogus", embed_dim=32)))


def test_two_stream_contour_features_say_how_the_spectrum_looks_not_where():
    """A glide's smeared band heard in one register must read the same in another: the contour branch's
    features are unchanged when the whole spectrum moves in frequency, and tell a narrow peak from a band."""
    from wavbrivl.encoder import AudioEncoder, EncoderConfig

    torch.manual_seed(0)
    enc = AudioEncoder(EncoderConfig(arch="twostream", stem_channels=8, channels=[16, 32], head_hidden=[], embed_dim=32,
                                     contour_channels=6), n_freq=48).eval()
    trunk = enc.trunk
    assert trunk.out_channels == 32 + 32 + 6

    def spectrum(lo: int, width: int) -> torch.Tensor:
        feats = torch.full((1, 1, 48, 50), -1.0)
        feats[:, :, lo : lo + width] = 2.0
        return feats

    with torch.no_grad():
        contour = lambda f: trunk(f)[:, -6:]
        low_band, high_band, high_peak = contour(spectrum(8, 5)), contour(spectrum(30, 5)), contour(spectrum(31, 1))
        assert torch.allclose(low_band, high_band, atol=1e-5)
        assert not torch.allclose(high_band, high_peak, atol=1e-2)
        # The position-tied spectral stream does say where (that is how it hears colour).
        assert not torch.allclose(trunk(spectrum(8, 5))[:, :32], trunk(spectrum(30, 5))[:, :32], atol=1e-3)
    off = AudioEncoder(EncoderConfig(arch="twostream", stem_channels=8, channels=[16, 32], head_hidden=[], embed_dim=32),
                       n_freq=48)
    assert off.trunk.contour is None and off.trunk.out_channels == 64
