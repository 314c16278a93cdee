"""Training pairs inside a bundle (``pairs/``): written compressed, read back as a manifest the trainer takes."""
from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from wavbrivl import WavBriVLPipeline, load_audio
from wavbrivl.data import load_waveforms, read_manifest
from wavbrivl.pairs import TrainingPairs, write_pairs
from wavbrivl.space import export_space
from wavbrivl.train import TrainConfig

from .pairs_fixtures import RECIPE, build_bundle, picture, source_rows


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return build_bundle(tmp_path_factory.mktemp("pairs"))


def test_write_pairs_compresses_reports_and_skips_one_bad_file(tmp_path):
    rows = source_rows(tmp_path / "raw")
    (tmp_path / "raw" / "broken.wav").write_bytes(b"RIFF not really a wave file" * 10)
    rows.append({**rows[0], "audio": str(tmp_path / "raw" / "broken.wav")})
    rows.append({**rows[1], "image": f"{tmp_path / 'raw' / 'new.png'}|{tmp_path / 'raw' / 'missing.png'}"})
    picture(tmp_path / "raw" / "new.png", (1, 2, 3), 0)  # written for that row, then removed with it
    report = write_pairs(rows, tmp_path / "pairs", 22050, image_size=24, train_recipe=RECIPE)
    assert sorted(s.path.rsplit("/", 1)[-1] for s in report.skipped) == ["bell1.wav", "broken.wav"]
    assert "missing.png" in " ".join(s.reason for s in report.skipped)
    info = json.loads((tmp_path / "pairs" / "pairs.json").read_text())
    assert info["rows"] == 20 and info["splits"] == {"train": 12, "val": 4, "test": 4} and info["labels"] == 4
    assert info["audio"]["sample_rate"] == 22050 and info["audio"]["codec"] == "vorbis" and info["audio"]["bytes"] > 0
    assert 0 < info["audio"]["kbit_per_s"] < 96 and info["images"]["files"] == 20 and info["images"]["max_size"] == 24
    assert info["licences"] == {"CC0-1.0": {"rows": 20, "packages": ["tests"]}} and len(info["skipped"]) == 2
    assert info["train_recipe"] == RECIPE
    written = read_manifest(tmp_path / "pairs" / "manifest.csv")
    assert [r.label for r in written][:2] == ["bell", "bell"] and written[0].meta["licence"] == "CC0-1.0"
    for row in written[:3]:
        file = sf.info(str(row.audio))
        assert (file.samplerate, file.channels, file.subtype) == (22050, 1, "VORBIS")
        assert max(Image.open(row.images[0]).size) <= 24
    # decode(encode(x)) stays close to the source resampled to the trunk's rate.
    source = load_audio(rows[0]["audio"], 22050).numpy()
    decoded = sf.read(str(written[0].audio), dtype="float32")[0]
    n = min(len(source), len(decoded))
    assert np.corrcoef(source[:n], decoded[:n])[0, 1] > 0.99


def test_opus_pairs_at_the_nearest_opus_rate_and_palette_pictures(tmp_path):
    """Opus stores a 22.05 kHz trunk's clips at 24 kHz (the rates Opus allows), smaller than Vorbis; pictures reduced
    to a palette stay drawings; an unknown codec is refused before anything is written."""
    rows = source_rows(tmp_path / "raw")[:6]
    vorbis = write_pairs(rows, tmp_path / "vorbis", 22050, compression_level=1.0).info
    opus = write_pairs(rows, tmp_path / "opus", 22050, codec="opus", compression_level=0.93, image_colours=16).info
    assert opus["audio"]["codec"] == "opus" and opus["audio"]["sample_rate"] == 24000
    assert opus["audio"]["bytes"] < vorbis["audio"]["bytes"] and opus["images"]["palette_colours"] == 16
    written = read_manifest(tmp_path / "opus" / "manifest.csv")
    assert (sf.info(str(written[0].audio)).samplerate, sf.info(str(written[0].audio)).subtype) == (24000, "OPUS")
    assert Image.open(written[0].images[0]).mode == "P"
    source = load_audio(rows[0]["audio"], 22050)
    back = load_audio(str(written[0].audio), 22050)  # the loader brings it back to the trunk's rate
    assert abs(len(back) - len(source)) < 0.05 * len(source)
    with pytest.raises(ValueError, match="codec"):
        write_pairs(rows, tmp_path / "bad", 22050, codec="mp3")
    assert not (tmp_path / "bad").exists()


def test_a_bundle_hands_its_pairs_to_the_trainer(bundle, tiny_checkpoint, tmp_path):
    pipe = WavBriVLPipeline.from_pretrained(bundle, device="cpu", generator=None)
    pairs = pipe.training_pairs
    assert isinstance(pairs, TrainingPairs) and pairs.train_recipe == RECIPE and len(pairs.split("test")) == 4
    cfg = TrainConfig.from_recipe(pairs.train_recipe, manifest=pairs.manifest, out=tmp_path / "run", seed=3)
    assert cfg.manifest == str(pairs.manifest) and cfg.seed == 3 and cfg.caption_weight == 0.5
    waves, kept, skipped = load_waveforms(pairs.rows, 16000, 30.0)
    assert len(waves) == len(kept) == 20 and not skipped
    assert WavBriVLPipeline.from_pretrained(tiny_checkpoint, device="cpu").training_pairs is None
    with pytest.raises(ValueError, match="unknown training option.*colour"):
        TrainConfig.from_recipe({"colour": 1}, manifest="m", out="o", source="pairs.json")
    saved = pipe.save_pretrained(tmp_path / "copy")  # a re-saved bundle keeps the pairs it can be trained from
    assert WavBriVLPipeline.from_pretrained(saved, device="cpu").training_pairs.info["rows"] == 20


def test_space_export_ships_pairs_unless_told_not_to(bundle, tmp_path):
    from .test_space import REPO

    source = tmp_path / "checkout"
    for name in ("app.py", "requirements.txt", ".gitattributes"):
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        (source / name).write_bytes((REPO / name).read_bytes() if name == ".gitattributes" else b"x\n")
    (source / "README.md").write_text("---\ntitle: t\nsdk: gradio\n---\n# t\n")
    for package in ("demo", "wavbrivl"):
        (source / package).mkdir()
        (source / package / "__init__.py").write_text("")
    import shutil

    shutil.copytree(bundle, source / "assets" / "tones")
    with_pairs = export_space(tmp_path / "a", ["tones"], source=source)
    without = export_space(tmp_path / "b", ["tones"], source=source, pairs=False)
    assert (with_pairs / "assets" / "tones" / "pairs" / "manifest.csv").is_file()
    assert not (without / "assets" / "tones" / "pairs").exists() and (without / "assets" / "tones" / "index").is_dir()
