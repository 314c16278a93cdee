"""Evaluation suite: dataset layouts, official folds, the three protocols, reports and plots.

A synthetic task where item k is a tone at frequency f_k, a picture of hue k/K and the words "class k".
The *oracle* embedder below decodes each modality back to k (FFT peak, mean hue, the number in the text)
and places it on a circle, so it is the identity on this task: it must score 100 %. The tiny random
WavBriVL must land near chance on the same data.
"""
from __future__ import annotations

import colorsys
import csv
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from wavbrivl.audio import AudioError, load_audio
from wavbrivl.bundle import BundleCard
from wavbrivl.datasets import detect_layout, load_dataset
from wavbrivl.evaluate import probe_folds, run_evaluation
from wavbrivl.model import AudioEmbeddings
from wavbrivl.pipeline import WavBriVLPipeline

from .conftest import write_wav

SR = 16000
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def freq_of(k: int, n: int) -> float:
    return 200.0 * 2 ** (4.0 * k / n)


def class_name(k: int) -> str:
    return f"class_{k:02d}"


def clip(k: int, n: int, seed: int, seconds: float = 1.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    wave = rng.uniform(0.2, 0.6) * np.sin(2 * np.pi * freq_of(k, n) * t + rng.uniform(0, 2 * np.pi))
    return (wave + 0.01 * rng.standard_normal(t.size)).astype(np.float32)


def picture(k: int, n: int, path: Path) -> Path:
    r, g, b = colorsys.hsv_to_rgb(k / n, 0.9, 0.9)
    Image.new("RGB", (16, 16), (int(r * 255), int(g * 255), int(b * 255))).save(path)
    return path


class Oracle:
    """Decodes k from each modality and embeds it at angle 2*pi*k/n (an identity model for this task)."""

    backbone_id = "oracle"
    embed_dim = 2

    def __init__(self, n: int) -> None:
        self.n = n
        self.audio_calls = 0

    def _at(self, codes) -> torch.Tensor:
        a = 2 * np.pi * np.asarray(codes, dtype=np.float64) / self.n
        return torch.tensor(np.stack([np.cos(a), np.sin(a)], 1), dtype=torch.float32)

    def embed_audio_many(self, sources, *, batch_size=32, progress=False, sample_rate=None):
        self.audio_calls += 1
        codes, ok, errors = [], [], []
        for i, src in enumerate(sources):
            try:
                wave = load_audio(src).numpy()
            except AudioError as exc:
                errors.append((i, str(exc)))
                continue
            f = np.argmax(np.abs(np.fft.rfft(wave))) * SR / len(wave)
            codes.append(np.log2(f / 200.0) / 4.0 * self.n)
            ok.append(i)
        return AudioEmbeddings(self._at(np.round(codes)) if ok else torch.zeros(0, 2), ok, errors)

    def embed_text(self, texts):
        return self._at([int(re.search(r"(\d+)", t).group(1)) for t in texts])

    def embed_image(self, images):
        codes = []
        for p in images:
            r, g, b = np.asarray(Image.open(p).convert("RGB"), dtype=np.float64).reshape(-1, 3).mean(0) / 255
            codes.append(round(colorsys.rgb_to_hsv(r, g, b)[0] * self.n) % self.n)
        return self._at(codes)


def oracle(n: int) -> WavBriVLPipeline:
    return WavBriVLPipeline(Oracle(n), card=BundleCard(name="oracle"))


# ------------------------------------------------------------------------------------- dataset builders
def write_csv(path: Path, rows: list[dict]) -> Path:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return path


def make_esc50(root: Path, n_classes: int = 4, folds: int = 5) -> Path:
    (root / "meta").mkdir(parents=True)
    rows = []
    for fold in range(1, folds + 1):
        for k in range(n_classes):
            name = f"{fold}-{k}-A-{k}.wav"
            write_wav(root / "audio" / name, clip(k, n_classes, seed=fold * 100 + k))
            rows.append({"filename": name, "fold": fold, "target": k, "category": class_name(k), "esc10": "False", "src_file": k,
                         "take": "A"})
    return write_csv(root / "meta" / "esc50.csv", rows).parent.parent


def make_us8k(root: Path, n_classes: int = 3, folds: int = 10) -> Path:
    (root / "metadata").mkdir(parents=True)
    rows = []
    for fold in range(1, folds + 1):
        for k in range(n_classes):
            name = f"{fold}{k}-{k}-0-0.wav"
            write_wav(root / "audio" / f"fold{fold}" / name, clip(k, n_classes, seed=fold * 10 + k, seconds=0.5))
            rows.append({"slice_file_name": name, "fsID": fold * 10 + k, "start": 0, "end": 0.5, "salience": 1,
                         "fold": fold, "classID": k, "class": class_name(k)})
    return write_csv(root / "metadata" / "UrbanSound8K.csv", rows).parent.parent


def make_manifest(root: Path, n: int = 12, per_item: int = 2) -> Path:
    """n distinct items (each its own class), ``per_item`` clips each, one or two frames per clip."""
    (root / "img").mkdir(parents=True)
    rows = []
    for k in range(n):
        for j in range(per_item):
            write_wav(root / "wav" / f"{k}_{j}.wav", clip(k, n, seed=k * 7 + j))
            frames = [picture(k, n, root / "img" / f"{k}_{j}_{f}.png") for f in range(1 + j % 2)]
            rows.append({"audio": f"wav/{k}_{j}.wav", "image": "|".join(f"img/{p.name}" for p in frames),
                         "caption": f"the sound of class {k}", "label": class_name(k), "split": "test" if j == 0 else "train"})
    return write_csv(root / "manifest.csv", rows)


def make_folders(root: Path, n_classes: int = 3, per_class: int = 4) -> Path:
    for k in range(n_classes):
        for j in range(per_class):
            write_wav(root / class_name(k) / f"{j}.wav", clip(k, n_classes, seed=k * 31 + j))
    return root


def assert_png(path: Path) -> None:
    assert path.read_bytes()[:8] == PNG_MAGIC, path
    with Image.open(path) as im:
        im.verify()


# ------------------------------------------------------------------------------------------------ tests
def test_layouts_are_detected_and_read(tmp_path):
    esc = make_esc50(tmp_path / "esc")
    us = make_us8k(tmp_path / "us")
    man = make_manifest(tmp_path / "man")
    fol = make_folders(tmp_path / "fol")
    assert detect_layout(esc)[0] == "esc50" and detect_layout(esc / "meta" / "esc50.csv") == ("esc50", esc)
    assert detect_layout(us)[0] == "us8k"
    assert detect_layout(man.parent) == ("manifest", man)
    assert detect_layout(fol)[0] == "folders"
    d = load_dataset(esc)
    assert len(d) == 20 and d.has_official_folds and {r.fold for r in d.rows} == {"1", "2", "3", "4", "5"}
    assert d.rows[0].label == "class_00" and d.rows[0].audio.is_file()
    d = load_dataset(us)
    assert len(d) == 30 and all(r.audio.parent.name == f"fold{r.fold}" and r.audio.is_file() for r in d.rows)
    d = load_dataset(man)
    assert len(d) == 24 and not d.has_official_folds and len(d.rows[1].images) == 2 and d.rows[0].caption
    d = load_dataset(fol)
    assert len(d) == 12 and {r.label for r in d.rows} == {"class_00", "class_01", "class_02"}
    with pytest.raises(ValueError, match="cannot tell the dataset layout"):
        (tmp_path / "empty").mkdir()
        load_dataset(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_dataset(tmp_path / "nope")


def test_official_folds_are_used_for_the_linear_probe(tmp_path):
    esc = load_dataset(make_esc50(tmp_path / "esc"))
    protocol, folds = probe_folds(esc.rows, [r.label for r in esc.rows])
    assert protocol.startswith("official") and [name for *_, name in folds] == [f"fold {i}" for i in range(1, 6)]
    for train, test, name in folds:
        fold = name.split()[1]
        assert {esc.rows[i].fold for i in test} == {fold} and fold not in {esc.rows[i].fold for i in train}
        assert len(train) + len(test) == len(esc.rows)
    us = load_dataset(make_us8k(tmp_path / "us"))
    protocol, folds = probe_folds(us.rows, [r.label for r in us.rows])
    assert [name for *_, name in folds] == [f"fold {i}" for i in range(1, 11)]  # numeric order, not "1, 10, 2"
    fol = load_dataset(make_folders(tmp_path / "fol"))
    protocol, folds = probe_folds(fol.rows, [r.label for r in fol.rows])
    assert protocol == "stratified 4-fold" and len(folds) == 4


def test_identity_model_scores_perfectly_everywhere(tmp_path):
    esc = load_dataset(make_esc50(tmp_path / "esc"))
    report = run_evaluation(oracle(4), esc, ["zeroshot", "linear"], tmp_path / "r1", progress=False)
    assert report["zeroshot"]["top1"] == 1.0 and report["zeroshot"]["chance"] == 0.25
    assert report["zeroshot"]["confusion"] == [[5 if i == j else 0 for j in range(4)] for i in range(4)]
    assert report["linear_probe"]["accuracy_mean"] == 1.0 and len(report["linear_probe"]["per_fold"]) == 5
    man = load_dataset(make_manifest(tmp_path / "man"))
    report = run_evaluation(oracle(12), man, ["retrieval"], tmp_path / "r2", progress=False)
    assert report["data"]["retrieval_split"] == "test" and report["clips"]["evaluated"] == 24
    for direction in ("audio_to_image", "image_to_audio", "audio_to_text", "text_to_audio"):
        m = report["retrieval"][direction]
        assert (m["R@1"], m["median_rank"], m["MRR"]) == (1.0, 1.0, 1.0), direction
    assert report["retrieval"]["audio_to_image"]["gallery"] == 12  # test clips have one frame each
    # Every frame of a clip counts as a hit for its sound: the train split has two-frame clips.
    report = run_evaluation(oracle(12), man, ["retrieval"], tmp_path / "r3", split="train", progress=False, plots=False)
    assert report["retrieval"]["audio_to_image"]["R@1"] == 1.0 and report["retrieval"]["audio_to_image"]["gallery"] == 24


def test_random_model_lands_near_chance(tmp_path, tiny_model):
    esc = load_dataset(make_esc50(tmp_path / "esc", n_classes=8))
    report = run_evaluation(WavBriVLPipeline(tiny_model), esc, ["zeroshot"], tmp_path / "r1", progress=False, plots=False)
    assert report["zeroshot"]["chance"] == 0.125 and report["zeroshot"]["top1"] <= 0.4
    man = load_dataset(make_manifest(tmp_path / "man", n=24, per_item=1))
    report = run_evaluation(WavBriVLPipeline(tiny_model), man, ["retrieval"], tmp_path / "r2", progress=False, plots=False)
    assert report["retrieval"]["audio_to_image"]["queries"] == 24
    assert report["retrieval"]["audio_to_image"]["R@1"] <= 0.25 and report["retrieval"]["audio_to_text"]["R@1"] <= 0.25
    # A linear probe can only reach chance when labels carry no information about the sound.
    noise = tmp_path / "noise"
    rng = np.random.default_rng(0)
    for j in range(40):
        write_wav(noise / f"c{j % 2}" / f"{j}.wav", (0.3 * rng.standard_normal(SR // 2)).astype(np.float32))
    report = run_evaluation(oracle(4), load_dataset(noise), ["linear"], tmp_path / "r3", progress=False)
    assert report["linear_probe"]["chance"] == 0.5 and report["linear_probe"]["accuracy_mean"] <= 0.75


def test_unreadable_clips_are_listed_and_left_out_of_denominators(tmp_path):
    root = make_esc50(tmp_path / "esc")
    (root / "audio" / "1-0-A-0.wav").write_bytes(b"this is not a wav file")
    (root / "audio" / "2-1-A-1.wav").unlink()
    report = run_evaluation(oracle(4), load_dataset(root), ["zeroshot", "linear"], tmp_path / "r", progress=False)
    assert report["clips"] == {**report["clips"], "total": 20, "evaluated": 18, "skipped": 2}
    reasons = {Path(s["audio"]).name: s["reason"] for s in report["clips"]["skipped_files"]}
    assert set(reasons) == {"1-0-A-0.wav", "2-1-A-1.wav"} and "1-0-A-0.wav" in reasons["1-0-A-0.wav"]
    assert report["zeroshot"]["clips"] == 18 and report["zeroshot"]["top1"] == 1.0
    assert report["linear_probe"]["clips"] == 18
    md = (tmp_path / "r" / "report.md").read_text()
    assert "2 unreadable" in md and "1-0-A-0.wav" in md


def test_embeddings_are_cached_for_the_run(tmp_path):
    data = load_dataset(make_folders(tmp_path / "fol"))
    pipe = oracle(3)
    first = run_evaluation(pipe, data, ["zeroshot"], tmp_path / "r", progress=False, plots=False)
    again = run_evaluation(pipe, data, ["zeroshot", "linear"], tmp_path / "r", progress=False, plots=False)
    assert pipe.model.audio_calls == 1 and again["zeroshot"] == first["zeroshot"]
    (tmp_path / "fol" / "class_00" / "0.wav").write_bytes(b"changed")  # different data: a new cache entry
    third = run_evaluation(pipe, load_dataset(tmp_path / "fol"), ["zeroshot"], tmp_path / "r", progress=False, plots=False)
    assert pipe.model.audio_calls == 2 and third["clips"]["skipped"] == 1


def test_all_runs_what_the_data_allows_and_says_why_not_the_rest(tmp_path, tiny_checkpoint):
    """One clip per class: no linear probe is possible, but zero-shot and retrieval are, and they run."""
    man = make_manifest(tmp_path / "man", n=5, per_item=1)
    report = run_evaluation(oracle(5), load_dataset(man), ["zeroshot", "linear", "retrieval"], tmp_path / "r",
                            progress=False, plots=False, skip_unavailable=True)
    assert report["tasks"] == ["zeroshot", "retrieval"] and report["zeroshot"]["top1"] == 1.0
    assert "linear" not in report and "at least 2 clips per class" in report["skipped_tasks"]["linear"]
    assert "Tasks not run" in (tmp_path / "r" / "report.md").read_text()
    with pytest.raises(ValueError, match="at least 2 clips per class"):  # asked for by name, it is an error
        run_evaluation(oracle(5), load_dataset(man), ["linear"], tmp_path / "r2", progress=False)
    out = tmp_path / "cli"
    proc = subprocess.run([sys.executable, "-m", "wavbrivl", "eval", "--checkpoint", str(tiny_checkpoint), "--task", "all",
                           "--data", str(man), "--out", str(out), "--no-plots"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    cli = json.loads((out / "report.json").read_text())
    assert cli["tasks"] == ["zeroshot", "retrieval"] and "linear" in cli["skipped_tasks"]
    assert "skipped linear: the linear probe needs" in proc.stdout


def test_bad_requests_fail_clearly(tmp_path):
    data = load_dataset(make_folders(tmp_path / "fol"))
    with pytest.raises(ValueError, match="unknown task"):
        run_evaluation(oracle(3), data, ["speed"], tmp_path / "r")
    with pytest.raises(ValueError, match="no column 'colour'"):
        run_evaluation(oracle(3), data, ["zeroshot"], tmp_path / "r", label_column="colour")
    with pytest.raises(ValueError, match="image or a caption"):
        run_evaluation(oracle(3), data, ["retrieval"], tmp_path / "r", progress=False)
    with pytest.raises(ValueError, match="'{}'"):
        run_evaluation(oracle(3), data, ["zeroshot"], tmp_path / "r", templates=["no slot"], progress=False)


def test_cli_writes_report_and_valid_plots(tmp_path, tiny_checkpoint):
    man = make_manifest(tmp_path / "man", n=6)
    out = tmp_path / "report"
    proc = subprocess.run(
        [sys.executable, "-m", "wavbrivl", "eval", "--checkpoint", str(tiny_checkpoint), "--task", "all", "--data", str(man),
         "--out", str(out), "--template", "a recording of {}", "--template", "{}"],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["checkpoint"] == str(tiny_checkpoint) and report["backbone_id"]
    assert report["data"]["fingerprint"]["rows"] == 12 and len(report["data"]["fingerprint"]["sha256"]) == 64
    assert {"torch", "open_clip_torch", "scikit-learn", "python"} <= set(report["software"])
    assert report["zeroshot"]["templates"] == ["a recording of {}", "{}"]
    assert report["linear_probe"]["protocol"] == "dataset split (train -> test)"
    assert set(report["plots"]) == {"confusion_matrix.png", "recall_at_k.png", "embedding_map.png", "examples.png"}
    for name in report["plots"]:
        assert_png(out / name)
    assert "| audio→image |" in (out / "report.md").read_text() and "Zero-shot" in proc.stdout
    bad = subprocess.run([sys.executable, "-m", "wavbrivl", "eval", "--checkpoint", str(tiny_checkpoint), "--task", "zeroshot",
                          "--data", str(tmp_path / "missing"), "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert bad.returncode == 1 and "missing" in bad.stderr and "Traceback" not in bad.stderr
