"""What the frozen-embedding cache saves, and what training costs in memory.

1. One epoch with cached image targets vs. the same epoch re-encoding every batch's images through the
   frozen tower (a ViT-B-32-sized open_clip tower with random weights: same compute as the real one,
   offline). Same data, same device, same audio work; prints both times and the ratio.
2. Peak resident memory of tiny-preset training at batch 64 on the CPU (in a subprocess).

    python benchmarks/train.py [--clips 256] [--threads 2]
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def epoch_times(clips: int, batch: int, threads: int) -> dict:
    import torch
    import torch.nn.functional as F

    from wavbrivl import WavBriVL
    from wavbrivl.backbone import BackboneConfig
    from wavbrivl.cache import image_targets
    from wavbrivl.data import load_waveforms, read_manifest
    from wavbrivl.images import load_image
    from wavbrivl.losses import MemoryQueue, Temperature, info_nce
    from wavbrivl.model import WavBriVLConfig
    from wavbrivl.presets import get_preset
    from wavbrivl.augment import crop_batch
    from wavbrivl.train import TrainConfig
    from wavbrivl.worlds.shapes.world import write_world

    torch.set_num_threads(threads)
    tiny = get_preset("tiny")
    enc = tiny.encoder
    enc.embed_dim = 512
    config = WavBriVLConfig(backbone=BackboneConfig("ViT-B-32", None, init_seed=0), frontend=tiny.frontend, encoder=enc,
                            embed_dim=512)
    model = WavBriVL(config)
    with tempfile.TemporaryDirectory() as tmp:
        manifest = write_world(Path(tmp) / "w", n_per_combo=max(1, clips // 24), seed=0, holdout=None, val_fraction=0,
                               test_fraction=0)
        rows = read_manifest(manifest)
        waves, rows, _ = load_waveforms(rows, 16000, 10)
        cfg = TrainConfig(manifest=str(manifest), out=tmp)
        t0 = time.perf_counter()
        targets, _ = image_targets(model, rows, Path(tmp) / "cache")
        cache_build = time.perf_counter() - t0
        images = [load_image(r.images[0]) for r in rows]

        def run_epoch(cached: bool) -> float:
            opt = torch.optim.AdamW(model.audio_encoder.parameters(), 1e-3)
            queue, temp = MemoryQueue(len(rows), 512), Temperature()
            g = torch.Generator().manual_seed(0)
            start = time.perf_counter()
            for s in range(0, len(rows), batch):
                idx = list(range(s, min(s + batch, len(rows))))
                wave, valid = crop_batch(waves, idx, model.config.frontend.window_samples, g, cfg.augment())
                if cached:
                    keys = targets[idx]
                else:
                    pixels = torch.stack([model.backbone.preprocess(images[i]) for i in idx])
                    keys = F.normalize(model.backbone.encode_image(pixels, normalize=False), dim=-1)
                audio = model.encode_waveforms(wave, valid)
                loss = info_nce(audio, keys, torch.tensor(idx), temp(), queue)
                loss.backward()
                opt.step()
                opt.zero_grad()
                queue.enqueue(keys, torch.tensor(idx))
            return time.perf_counter() - start

        model.audio_encoder.train()
        run_epoch(True)  # warm-up
        cached = run_epoch(True)
        uncached = run_epoch(False)
    return {"clips": len(rows), "batch": batch, "cached_s": cached, "uncached_s": uncached, "cache_build_s": cache_build}


def peak_memory_child(batch: int, threads: int) -> dict:
    import torch

    from wavbrivl.train import TrainConfig, train
    from wavbrivl.worlds.shapes.world import write_world

    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory() as tmp:
        manifest = write_world(Path(tmp) / "w", n_per_combo=12, seed=0)
        t0 = time.perf_counter()
        train(TrainConfig(manifest=str(manifest), out=str(Path(tmp) / "run"), batch_size=batch, max_steps=30, val_every=1000,
                          progress=False))
        wall = time.perf_counter() - t0
    return {"batch": batch, "steps": 30, "wall_s": wall, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clips", type=int, default=240)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--child", action="store_true")
    args = ap.parse_args()
    if args.child:
        print(json.dumps(peak_memory_child(64, args.threads)))
        return
    r = epoch_times(args.clips, args.batch, args.threads)
    print(f"epoch of {r['clips']} clips at batch {r['batch']} (ViT-B-32-sized frozen tower, tiny audio encoder, "
          f"CPU {args.threads} threads)")
    print(f"  cached image targets : {r['cached_s']:7.2f} s   (cache built once in {r['cache_build_s']:.2f} s)")
    print(f"  re-encoding images   : {r['uncached_s']:7.2f} s")
    print(f"  ratio                : {r['uncached_s'] / r['cached_s']:7.1f}x cheaper with the cache")
    out = subprocess.run([sys.executable, __file__, "--child", "--threads", str(args.threads)], capture_output=True, text=True,
                         check=True)
    m = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"tiny-preset training at batch {m['batch']}: {m['steps']} steps in {m['wall_s']:.1f} s, "
          f"peak RSS {m['peak_rss_mb']:.0f} MB")


if __name__ == "__main__":
    main()
