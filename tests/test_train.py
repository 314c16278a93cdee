"""Training: it learns, it resumes exactly, the frozen towers run once, bad rows are skipped."""
from __future__ import annotations

import csv
import json

import av
import numpy as np
import pytest
import torch
from PIL import Image

from wavbrivl import WavBriVL
from wavbrivl.cache import EmbeddingCache, image_targets
from wavbrivl.cli import main
from wavbrivl.data import read_manifest
from wavbrivl.losses import MemoryQueue, contrastive_logits, info_nce
from wavbrivl.train import TrainConfig, train
from wavbrivl.worlds.shapes.world import write_world


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return write_world(tmp_path_factory.mktemp("world"), n_per_combo=8, seed=0)


def count_image_tower_calls(model, monkeypatch):
    calls = {"images": 0}
    original = type(model.backbone).encode_image

    def counting(self, pixels, normalize=True):
        calls["images"] += pixels.shape[0]
        return original(self, pixels, normalize)

    monkeypatch.setattr(type(model.backbone), "encode_image", counting)
    return calls


@pytest.mark.slow
def test_training_lowers_loss_and_lifts_recall(world, tmp_path):
    cfg = TrainConfig(manifest=str(world), out=str(tmp_path / "run"), max_steps=150, batch_size=32, lr=3e-3,
                      val_every=50, log_every=10, progress=False)
    result = train(cfg)
    losses = [h["loss"] for h in result.history]
    assert np.mean(losses[-3:]) < np.mean(losses[:3]) - 0.3
    n_val = sum(1 for r in read_manifest(world) if r.split == "val")
    assert result.best_metrics["R@1"] >= 3.0 / n_val  # chance is 1 / n_val
    # The world's clips are labelled, so checkpoints are selected on label-level recall (any picture of the
    # same colour, shape and size counts), which is reported beside exact-pair recall.
    assert result.best_metrics["select"] == result.best_metrics["label_R@1"] >= result.best_metrics["R@1"]
    model = WavBriVL.from_pretrained(result.best_dir)
    assert model.config.image_embed_norm and model.config.image_embed_norm > 0
    assert json.loads((result.best_dir / "train_config.json").read_text())["max_steps"] == 150
    rows = list(csv.DictReader(open(tmp_path / "run" / "metrics.csv")))
    assert rows[-1]["step"] == "150" and rows[-1]["val_R@1"] != "" and rows[-1]["val_label_R@1"] != ""
    assert list((tmp_path / "run" / "tensorboard").glob("events.out.tfevents.*"))


@pytest.mark.slow
def test_align_weight_pulls_sounds_onto_their_pictures(world, tmp_path):
    """InfoNCE only ranks; the alignment term puts a clip's embedding near its picture's, which generators need."""
    rows = [r for r in read_manifest(world) if r.split == "train"][:48]

    def own_picture_cosine(weight: float) -> float:
        cfg = TrainConfig(manifest=str(world), out=str(tmp_path / f"w{weight}"), max_steps=60, batch_size=32, lr=3e-3,
                          val_every=1000, progress=False, align_weight=weight)
        model = WavBriVL.from_pretrained(train(cfg).last_dir)
        audio = model.embed_audio_many([r.audio for r in rows]).embeddings
        images = model.embed_image([str(r.images[0]) for r in rows])
        return float((audio * images).sum(-1).mean())

    plain, aligned = own_picture_cosine(0.0), own_picture_cosine(2.0)
    assert aligned > plain + 0.1, (plain, aligned)
    with pytest.raises(ValueError, match="align_weight"):
        TrainConfig(manifest="m", out="o", align_weight=-1.0)


def test_resume_continues_from_the_same_step_and_queue(world, tmp_path):
    base = dict(manifest=str(world), max_steps=40, batch_size=16, checkpoint_every=20, val_every=1000,
                progress=False, queue_size=64, momentum=0.99)
    full = train(TrainConfig(out=str(tmp_path / "full"), **base))
    # The same run, interrupted after step 20, then resumed.
    stopped = train(TrainConfig(out=str(tmp_path / "part"), stop_at_step=20, **base))
    state = torch.load(tmp_path / "part" / "last" / "trainer_state.pt", weights_only=True)
    assert stopped.step == 20 and int(state["step"]) == 20 and int((state["image_queue"]["ids"] >= 0).sum()) > 16
    resumed = train(TrainConfig(out=str(tmp_path / "part"), resume=True, **base))
    assert resumed.step == 40
    a = WavBriVL.from_pretrained(full.last_dir).audio_encoder.state_dict()
    b = WavBriVL.from_pretrained(resumed.last_dir).audio_encoder.state_dict()
    end_full = torch.load(tmp_path / "full" / "last" / "trainer_state.pt", weights_only=True)
    end = torch.load(tmp_path / "part" / "last" / "trainer_state.pt", weights_only=True)
    for name in ("image_queue", "audio_queue"):
        for key in ("keys", "ids", "ptr"):
            assert torch.allclose(end[name][key].float(), end_full[name][key].float(), atol=1e-5), (name, key)
    for k in a:
        assert torch.allclose(a[k].float(), b[k].float(), atol=1e-4), k


def test_frozen_tower_runs_once_per_image(world, tmp_path, monkeypatch):
    model = WavBriVL.from_preset("tiny")
    calls = count_image_tower_calls(model, monkeypatch)
    rows = [r for r in read_manifest(world) if r.split == "train"]
    first, norm = image_targets(model, rows, tmp_path / "cache")
    assert calls["images"] == len(rows) and norm > 0
    again, _ = image_targets(model, rows, tmp_path / "cache")  # a new run, same cache folder
    assert calls["images"] == len(rows) and torch.equal(first, again)
    train(TrainConfig(manifest=str(world), out=str(tmp_path / "run"), cache_dir=str(tmp_path / "cache"),
                      max_steps=10, batch_size=16, val_every=1000, progress=False), model=model)
    n_val = sum(1 for r in read_manifest(world) if r.split == "val")
    assert calls["images"] == len(rows) + n_val  # only the validation images were new


def test_corrupt_cache_is_rebuilt_and_backbone_change_invalidates(world, tmp_path, monkeypatch):
    model = WavBriVL.from_preset("tiny")
    calls = count_image_tower_calls(model, monkeypatch)
    rows = read_manifest(world)[:20]
    first, _ = image_targets(model, rows, tmp_path / "cache")
    shard = next((tmp_path / "cache").rglob("shard-*.safetensors"))
    data = bytearray(shard.read_bytes())
    data[-8:] = b"\x00garbage"
    shard.write_bytes(bytes(data))
    rebuilt, _ = image_targets(model, rows, tmp_path / "cache")
    assert calls["images"] == 40 and torch.allclose(first, rebuilt)
    truncated = next((tmp_path / "cache").rglob("shard-*.safetensors"))
    truncated.write_bytes(truncated.read_bytes()[:100])
    image_targets(model, rows, tmp_path / "cache")
    assert calls["images"] == 60
    other = EmbeddingCache(tmp_path / "cache", "another-backbone/tag", "image")
    assert len(other) == 0


def test_bad_rows_are_reported_and_skipped(world, tmp_path, capsys):
    rows = list(csv.DictReader(open(world)))
    out_rows = []
    for i, r in enumerate(rows[:60]):
        r = dict(r)
        r["audio"] = str(world.parent / r["audio"])
        r["image"] = str(world.parent / r["image"])
        if i == 3:
            r["audio"] = str(tmp_path / "missing.wav")
        if i == 5:
            (tmp_path / "corrupt.png").write_text("not a png")
            r["image"] = str(tmp_path / "corrupt.png")
        if i == 7:
            (tmp_path / "corrupt.wav").write_bytes(b"RIFF\x00\x00")
            r["audio"] = str(tmp_path / "corrupt.wav")
        r["split"] = "train"
        out_rows.append(r)
    manifest = tmp_path / "bad.csv"
    with open(manifest, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(out_rows[0]))
        w.writeheader()
        w.writerows(out_rows)
    code = main(["train", "--manifest", str(manifest), "--out", str(tmp_path / "run"), "--max-steps", "5",
                 "--batch-size", "8", "--no-progress"])
    assert code == 0
    captured = capsys.readouterr()
    assert "missing.wav" in captured.err and "corrupt.png" in captured.err and "corrupt.wav" in captured.err
    assert "3 row(s) skipped" in captured.out


def test_config_file_and_flags(world, tmp_path):
    cfg_file = tmp_path / "train.yaml"
    cfg_file.write_text(f"manifest: {world}\nout: {tmp_path / 'run'}\nmax_steps: 4\nbatch_size: 8\nloss: clip\nprogress: false\n")
    assert main(["train", "--config", str(cfg_file), "--max-steps", "6"]) == 0
    resolved = json.loads((tmp_path / "run" / "last" / "train_config.json").read_text())
    assert resolved["max_steps"] == 6 and resolved["loss"] == "clip"
    cfg_file.write_text("manifest: x\nout: y\nlearning_rate: 3\n")
    assert main(["train", "--config", str(cfg_file)]) == 1


def test_queue_masks_the_same_clip():
    q = torch.nn.functional.normalize(torch.randn(2, 4), dim=-1)
    queue = MemoryQueue(3, 4)
    queue.enqueue(torch.stack([q[0], q[1], -q[0]]), torch.tensor([7, 8, 9]))
    logits = contrastive_logits(q, q, torch.tensor([7, 8]), 0.1, queue)
    assert logits.shape == (2, 5)
    assert torch.isinf(logits[0, 2]) and torch.isinf(logits[1, 3])  # own clip in the queue
    assert torch.isfinite(logits[0, 3]) and torch.isfinite(logits[0, 4])
    dup = contrastive_logits(q, q, torch.tensor([5, 5]), 0.1)  # the same clip twice in a batch
    assert torch.isinf(dup[0, 1]) and torch.isfinite(dup[0, 0])
    # InfoNCE is the cross-entropy of the positive against the finite logits only: masked entries count for nothing.
    both = info_nce(q, q, torch.tensor([7, 8]), 0.1, queue)
    manual = torch.stack([torch.logsumexp(logits[0, [0, 1, 3, 4]], 0) - logits[0, 0],
                          torch.logsumexp(logits[1, [0, 1, 2, 4]], 0) - logits[1, 1]]).mean()
    assert torch.isclose(both, manual, atol=1e-5)
    # FIFO: more keys than the queue holds keep the newest, in order, and the pointer wraps.
    queue.enqueue(torch.zeros(5, 4), torch.arange(5))
    assert queue.ids.tolist() == [2, 3, 4] and int(queue.ptr) == 0
    queue.enqueue(torch.ones(2, 4), torch.tensor([10, 11]))
    assert queue.ids.tolist() == [10, 11, 4] and int(queue.ptr) == 2
    assert torch.equal(queue.keys[0], torch.ones(4)) and torch.equal(queue.keys[2], torch.zeros(4))


def test_prepare_videos(tmp_path):
    videos = tmp_path / "videos" / "beeps"
    videos.mkdir(parents=True)
    path = videos / "clip.mp4"
    with av.open(str(path), "w") as container:
        vs = container.add_stream("mpeg4", rate=10)
        vs.width, vs.height, vs.pix_fmt = 32, 32, "yuv420p"
        as_ = container.add_stream("aac", rate=16000)
        as_.layout = "mono"
        for i in range(20):
            img = np.full((32, 32, 3), i * 12, np.uint8)
            for packet in vs.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                container.mux(packet)
        t = np.arange(32000) / 16000
        samples = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
        for start in range(0, samples.size, 1024):
            frame = av.AudioFrame.from_ndarray(samples[None, start : start + 1024], format="flt", layout="mono")
            frame.sample_rate = 16000
            for packet in as_.encode(frame):
                container.mux(packet)
        for stream in (vs, as_):
            for packet in stream.encode(None):
                container.mux(packet)
    (videos / "broken.mp4").write_bytes(b"\x00" * 100)
    code = main(["prepare-videos", str(tmp_path / "videos"), str(tmp_path / "out"), "--frames", "3"])
    assert code == 0
    rows = read_manifest(tmp_path / "out" / "manifest.csv")
    assert len(rows) == 1 and rows[0].label == "beeps" and len(rows[0].images) == 3
    brightness = [np.asarray(Image.open(p)).mean() for p in rows[0].images]
    assert brightness == sorted(brightness) and brightness[0] < brightness[-1]  # evenly spaced, in order
    from wavbrivl.audio import load_audio

    audio = load_audio(rows[0].audio)
    assert 1.5 < audio.numel() / 16000 < 2.5


def test_caption_weight_moves_the_targets_onto_the_captions(world, tmp_path):
    """With a real sentence encoder beside a weakly trained image tower, captions are the better target:
    caption_weight=1 aims every clip at its caption's text embedding, 0.5 halfway, 0 at its pictures."""
    from wavbrivl.train import Trainer

    rows = [r for r in read_manifest(world) if r.split == "train"]
    base = dict(manifest=str(world), max_steps=4, batch_size=8, val_every=1000, progress=False, cache_dir=str(tmp_path / "c"))
    pictures = Trainer(TrainConfig(out=str(tmp_path / "p"), **base)).targets
    captions = Trainer(TrainConfig(out=str(tmp_path / "t"), caption_weight=1.0, **base))
    text = captions.model.embed_text([r.caption for r in rows])
    assert torch.allclose(captions.targets, text, atol=1e-5)
    half = Trainer(TrainConfig(out=str(tmp_path / "h"), caption_weight=0.5, **base)).targets
    expected = torch.nn.functional.normalize(pictures + text, dim=-1)
    assert torch.allclose(half, expected, atol=1e-5) and not torch.allclose(half, pictures, atol=1e-2)
    assert captions.fit().history  # and it trains through the same loop
    with pytest.raises(ValueError, match="caption_weight"):
        TrainConfig(manifest="m", out="o", caption_weight=1.5)


def test_the_generator_reads_the_points_the_audio_head_aims_at(world, tiny_model):
    """The everyday build conditions its generator on each drawing's embedding moved toward its concept's caption
    exactly as far as the head's targets were moved, so a sound that lands where it was trained to paints its concept."""
    from wavbrivl.worlds.everyday.build import generator_conditions

    rows = [r for r in read_manifest(world) if r.split == "train"][:6]
    model = tiny_model
    pictures, labels = [r.images[0] for r in rows], [r.caption for r in rows]
    image, text = model.embed_image(pictures), model.embed_text(labels)
    assert torch.allclose(generator_conditions(model, pictures, labels, 0.0), image)
    assert torch.allclose(generator_conditions(model, pictures, labels, 1.0), text, atol=1e-5)
    half = generator_conditions(model, pictures, labels, 0.5)
    assert torch.allclose(half, torch.nn.functional.normalize(image + text, dim=-1), atol=1e-5)
    assert torch.allclose(half.norm(dim=-1), torch.ones(len(rows)), atol=1e-5)


def test_caption_weight_needs_a_caption_on_every_row(world, tmp_path):
    lines = world.read_text().splitlines()
    header = lines[0].split(",")
    first = lines[1].split(",")
    first[header.index("caption")] = ""
    manifest = world.parent / "no_caption.csv"
    manifest.write_text("\n".join([lines[0], ",".join(first), *lines[2:]]) + "\n")
    with pytest.raises(ValueError, match=r"no_caption.csv: caption_weight needs a caption on every row; 1 have none"):
        train(TrainConfig(manifest=str(manifest), out=str(tmp_path / "r"), caption_weight=0.5, max_steps=2, batch_size=8,
                          progress=False))


def test_balance_labels_draws_every_label_equally_often(world, tmp_path):
    """A concept with many takes beside concepts with two each: balance_labels=1 draws each label about as often,
    0 draws as the data is mixed; the draws stay a pure function of (seed, step), so a resumed run repeats them."""
    from collections import Counter

    from wavbrivl.train import Trainer

    lines = world.read_text().splitlines()
    header = lines[0].split(",")
    rows = [line for line in lines[1:] if line.split(",")[header.index("split")] == "train"]
    label = [line.split(",")[header.index("label")] for line in rows]
    big = label[0]
    small = [x for x in dict.fromkeys(label) if x != big][:3]
    keep = [r for r, x in zip(rows, label) if x == big]
    keep += [r for s in small for r in [r for r, x in zip(rows, label) if x == s][:2]]
    manifest = world.parent / "skewed.csv"
    manifest.write_text("\n".join([lines[0], *keep]) + "\n")
    n_big = len(keep) - 6
    names = [r.label for r in read_manifest(manifest) if r.split == "train"]  # the trainer's rows, in its order

    def shares(balance: float) -> tuple[dict[str, float], Trainer]:
        trainer = Trainer(TrainConfig(manifest=str(manifest), out=str(tmp_path / f"b{balance}"), batch_size=4, max_steps=4,
                                      balance_labels=balance, val_every=1000, progress=False, cache_dir=str(tmp_path / "c")))
        draws = [i for step in range(trainer.steps_per_epoch * 300) for i in trainer._batch_indices(step)]
        counts = Counter(names[i] for i in draws)
        return {k: v / len(draws) for k, v in counts.items()}, trainer

    balanced, trainer = shares(1.0)
    assert set(balanced) == {big, *small}
    assert all(abs(share - 0.25) < 0.05 for share in balanced.values()), balanced
    assert trainer._batch_indices(7) == shares(1.0)[1]._batch_indices(7)
    mixed, _ = shares(0.0)
    assert abs(mixed[big] - n_big / len(keep)) < 0.02, mixed
    with pytest.raises(ValueError, match="balance_labels"):
        TrainConfig(manifest="m", out="o", balance_labels=2.0)


@pytest.mark.parametrize("options, message", [
    ({"mask_same_label": True}, "mask_same_label needs"),
    ({"balance_labels": 1.0}, "balance_labels needs"),
    ({"mask_same_label": True, "balance_labels": 0.5}, "mask_same_label and balance_labels need"),
])
def test_the_label_options_name_the_manifest_when_a_row_has_no_label(world, tmp_path, options, message):
    lines = world.read_text().splitlines()
    column = lines[0].split(",").index("label")
    rows = [line.split(",") for line in lines[1:]]
    rows[0][column] = ""
    manifest = world.parent / "unlabelled.csv"
    manifest.write_text("\n".join([lines[0], *(",".join(r) for r in rows)]) + "\n")
    with pytest.raises(ValueError, match=rf"unlabelled.csv: {message} a label on every training row"):
        train(TrainConfig(manifest=str(manifest), out=str(tmp_path / "r"), max_steps=2, batch_size=8, progress=False,
                          **options))


def test_the_final_run_can_train_on_the_validation_split_too(world, tmp_path):
    """Once a recipe is chosen, ``train_split="train,val"`` with ``val_split=""`` trains on both splits' clips for
    the fixed number of steps and keeps the last checkpoint; asking to validate on a split it trains on is refused
    before anything runs, naming the manifest."""
    from wavbrivl.train import Trainer

    rows = read_manifest(world)
    n_train, n_val = sum(r.split == "train" for r in rows), sum(r.split == "val" for r in rows)
    assert n_train and n_val
    both = Trainer(TrainConfig(manifest=str(world), out=str(tmp_path / "both"), train_split="train,val", val_split="",
                               batch_size=8, max_steps=3, progress=False, cache_dir=str(tmp_path / "c")))
    assert len(both.waves) == n_train + n_val and both.val_targets is None
    result = both.fit()
    assert result.best_metrics["step"] == result.step == 3
    assert WavBriVL.from_pretrained(result.best_dir).config.info["trained_steps"] == 3
    for train_split in ("train,val", ""):  # "" trains on every row, the validation split's among them
        with pytest.raises(ValueError, match=r"\.csv: split 'val' would be trained on and also choose the checkpoint"):
            train(TrainConfig(manifest=str(world), out=str(tmp_path / "r"), train_split=train_split, max_steps=2,
                              batch_size=8, progress=False))
