"""Gallery index: exact answers, FAISS agreement, resumable crash-safe builds, refusals, corruption."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from wavbrivl import WavBriVL
from wavbrivl.cli import main
from wavbrivl.index import GalleryIndex, IndexFormatError, _write_shard, exact_topk

from .conftest import tone, write_wav


@pytest.fixture()
def image_dir(tmp_path):
    d = tmp_path / "imgs"
    d.mkdir()
    rng = np.random.default_rng(0)
    for i in range(12):
        Image.fromarray(rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)).save(d / f"{i:02d}.png")
    return d


def vector_index(tmp_path, vectors, dtype="float32"):
    root = tmp_path / "vec"
    root.mkdir()
    header = {"format": "wavbrivl-index", "version": 1, "backbone_id": "test/space", "embed_dim": vectors.shape[1],
              "dtype": dtype, "count": 0, "shards": []}
    for start in range(0, len(vectors), 1000):
        block = vectors[start : start + 1000]
        _write_shard(root, header, block, [{"kind": "image", "path": None, "caption": str(start + i), "sha256": str(start + i)}
                                           for i in range(len(block))])
    return GalleryIndex.load(root)


def test_exact_search_is_brute_force(tmp_path):
    rng = np.random.default_rng(1)
    vecs = rng.standard_normal((3000, 16)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    index = vector_index(tmp_path, vecs)
    queries = rng.standard_normal((5, 16)).astype(np.float32)
    results = index.search(queries, k=10, backend="exact")
    qn = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    truth = np.argsort(-(qn @ vecs.T), axis=1)[:, :10]
    for res, ref in zip(results, truth):
        assert [int(r.caption) for r in res] == ref.tolist()
        assert all(a.score >= b.score for a, b in zip(res, res[1:]))
    # Chunked top-k (chunks smaller than the index) gives the same answer.
    s, i = exact_topk(torch.from_numpy(vecs), torch.from_numpy(qn), 10, chunk=7)
    assert i.tolist() == truth.tolist()


def test_faiss_agrees_with_exact(tmp_path):
    rng = np.random.default_rng(2)
    vecs = rng.standard_normal((2000, 32)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    index = vector_index(tmp_path, vecs)
    queries = rng.standard_normal((20, 32)).astype(np.float32)
    exact = index.search(queries, k=10, backend="exact")
    approx = index.search(queries, k=10, backend="faiss")
    recall = np.mean([len({r.caption for r in a} & {r.caption for r in e}) / 10 for a, e in zip(approx, exact)])
    assert recall >= 0.95
    assert exact[0][0].caption == approx[0][0].caption


def test_build_add_resume_idempotent(tiny_model, image_dir, tmp_path, monkeypatch):
    calls = {"n": 0}
    original = tiny_model.embed_image

    def counting(images, **kw):
        calls["n"] += len(images)
        return original(images, **kw)

    monkeypatch.setattr(tiny_model, "embed_image", counting)
    files = sorted(image_dir.glob("*.png"))
    out = tmp_path / "idx"
    index, report = GalleryIndex.build(tiny_model, out, images=files[:8], captions=["a red circle", "a blue square"],
                                       batch_size=4, progress=False)
    assert report.added == 10 and calls["n"] == 8 and index.count("image") == 8 and index.count("text") == 2
    # Rebuilding with the same inputs embeds nothing; adding new images embeds only them.
    again, report = GalleryIndex.build(tiny_model, out, images=files[:8], progress=False)
    assert report.added == 0 and report.already_indexed == 8 and calls["n"] == 8
    grown, report = GalleryIndex.build(tiny_model, out, images=image_dir, progress=False)
    assert report.added == 4 and calls["n"] == 12 and grown.count("image") == 12
    # Each item says where it came from relative to the index, never as a path of the machine that built it.
    assert {m["source"] for m in grown.meta if m["kind"] == "image"} == {"", "../imgs"}
    assert not any(str(tmp_path) in line for f in out.glob("meta-*.jsonl") for line in f.read_text().splitlines())
    # A crash after a shard was written but before index.json listed it: the shard is ignored, resume redoes it.
    (out / "emb-000099.npy").write_bytes(b"half written")
    header = json.loads((out / "index.json").read_text())
    header["shards"] = header["shards"][:-1]
    (out / "index.json").write_text(json.dumps(header))
    resumed, report = GalleryIndex.build(tiny_model, out, images=image_dir, progress=False)
    assert report.added == 4 and resumed.count("image") == 12
    # Results are what the model says: an image is its own nearest neighbour.
    q = original(files[3])
    top = resumed.search(q, k=1, kind="image")[0][0]
    assert top.path == str(files[3].resolve()) and top.score == pytest.approx(1.0, abs=1e-3)
    text = resumed.search(tiny_model.embed_text("a blue square"), k=1, kind="text")[0][0]
    assert text.caption == "a blue square" and text.path is None


def test_unreadable_images_are_skipped(tiny_model, image_dir, tmp_path):
    (image_dir / "broken.png").write_text("not an image")
    index, report = GalleryIndex.build(tiny_model, tmp_path / "idx", images=image_dir, progress=False)
    assert index.count("image") == 12 and len(report.skipped) == 1 and "broken.png" in report.skipped[0][1]


def test_other_space_is_refused(tiny_model, image_dir, tmp_path):
    index, _ = GalleryIndex.build(tiny_model, tmp_path / "idx", images=image_dir, progress=False)
    other = WavBriVL.from_preset("vit-b-32")
    with pytest.raises(IndexFormatError, match="ViT-B-32/openai"):
        index.check_compatible(other)
    with pytest.raises(IndexFormatError, match="512-d"):
        index.search(torch.randn(512))
    with pytest.raises(IndexFormatError, match="embedding space"):
        GalleryIndex.build(other, tmp_path / "idx", images=image_dir, progress=False)


def test_corrupt_and_truncated_files_are_detected(tiny_model, image_dir, tmp_path):
    out = tmp_path / "idx"
    GalleryIndex.build(tiny_model, out, images=image_dir, batch_size=6, progress=False)
    emb = out / "emb-000001.npy"
    good = emb.read_bytes()
    emb.write_bytes(good[:-10])
    with pytest.raises(IndexFormatError, match="emb-000001.npy: checksum mismatch"):
        GalleryIndex.load(out)
    emb.write_bytes(good[:-4] + b"\x00\x01\x02\x03")
    with pytest.raises(IndexFormatError, match="emb-000001.npy"):
        GalleryIndex.load(out)
    emb.unlink()
    with pytest.raises(IndexFormatError, match="missing index file"):
        GalleryIndex.load(out)
    (out / "index.json").write_text("{broken")
    with pytest.raises(IndexFormatError, match="corrupt header"):
        GalleryIndex.load(out)


def test_cli_build_and_search(tiny_checkpoint, image_dir, tmp_path, capsys):
    captions = tmp_path / "captions.txt"
    captions.write_text("a dog barking\nrain on a roof\n\n")
    out = tmp_path / "idx"
    assert main(["index", "build", "--images", str(image_dir), "--captions", str(captions), "--checkpoint", str(tiny_checkpoint),
                 "--out", str(out), "--dtype", "float32"]) == 0
    assert "12 images, 2 captions" in capsys.readouterr().out
    audio = write_wav(tmp_path / "q.wav", tone(440, 1.0) + 0.01)
    sheet, page = tmp_path / "sheet.png", tmp_path / "page.html"
    assert main(["search", "--index", str(out), "--audio", str(audio), "--checkpoint", str(tiny_checkpoint), "-k", "3",
                 "--sheet", str(sheet), "--html", str(page)]) == 0
    lines = [l for l in capsys.readouterr().out.splitlines() if l.startswith(("image", "text"))]
    assert len(lines) == 5  # 3 images + 2 captions
    assert sheet.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and "<img" in page.read_text()
    assert main(["search", "--index", str(out), "--audio", str(audio), "--preset", "vit-b-32"]) == 1
    assert "embedding space" in capsys.readouterr().err
