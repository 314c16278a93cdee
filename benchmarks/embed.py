"""Audio-embedding throughput and peak memory on this machine (CPU).

Prints, for the default encoder and for the Wav2CLIP-layout encoder: seconds of audio embedded per wall
second at batch 1 and batch 32 on 10-second clips, and peak resident memory; then the peak memory of
embedding one two-hour file (streamed in windows). Each measurement runs in a fresh subprocess so its
peak RSS is its own.

    python benchmarks/embed.py            # full run (~3 minutes on 2 cores)
    python benchmarks/embed.py --quick    # fewer clips, 10-minute file instead of two hours
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


def _measure(arch: str, batch: int, clips: int, threads: int) -> dict:
    import numpy as np
    import torch

    from wavbrivl import WavBriVL
    from wavbrivl.wav2clip import wav2clip_config

    torch.set_num_threads(threads)
    model = WavBriVL.from_preset("vit-b-32") if arch == "default" else WavBriVL(wav2clip_config())
    rng = np.random.default_rng(0)
    waves = [rng.standard_normal(160000).astype(np.float32) * 0.1 for _ in range(clips)]
    model.embed_audio(waves[:batch], sample_rate=16000, batch_size=batch)  # warm-up
    t0 = time.perf_counter()
    for start in range(0, clips, batch):
        model.embed_audio(waves[start : start + batch], sample_rate=16000, batch_size=max(batch, 2) * 2)
    wall = time.perf_counter() - t0
    params = sum(p.numel() for p in model.audio_encoder.parameters())
    return {"arch": arch, "batch": batch, "clips": clips, "wall_s": wall, "x_realtime": clips * 10.0 / wall,
            "params_m": params / 1e6, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def _measure_long(path: str, threads: int) -> dict:
    import torch

    from wavbrivl import WavBriVL

    torch.set_num_threads(threads)
    model = WavBriVL.from_preset("vit-b-32")
    t0 = time.perf_counter()
    emb = model.embed_audio(path, batch_size=32)
    wall = time.perf_counter() - t0
    import soundfile as sf

    seconds = sf.info(path).duration
    return {"file_seconds": seconds, "wall_s": wall, "x_realtime": seconds / wall, "dim": emb.shape[1],
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def _sub(kind: str, *args: str) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", kind, *args], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _write_long_file(path: Path, seconds: int) -> None:
    import numpy as np
    import soundfile as sf

    rng = np.random.default_rng(0)
    with sf.SoundFile(path, "w", samplerate=16000, channels=1, subtype="PCM_16") as f:
        for _ in range(seconds // 60):
            f.write((rng.standard_normal(16000 * 60) * 0.1).astype(np.float32))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--child", nargs="+")
    args = ap.parse_args()
    if args.child:
        kind, *rest = args.child
        result = _measure(rest[0], int(rest[1]), int(rest[2]), args.threads) if kind == "throughput" else _measure_long(rest[0], args.threads)
        print(json.dumps(result))
        return
    clips = {1: 8 if args.quick else 16, 32: 32 if args.quick else 64}
    rows = []
    for arch in ("default", "wav2clip"):
        for batch in (1, 32):
            n = clips[batch] if arch == "default" else max(batch, clips[batch] // 4)
            rows.append(_sub("throughput", arch, str(batch), str(n)))
    print(f"{'encoder':10} {'params':>8} {'batch':>5} {'clips':>5} {'x real time':>12} {'peak RSS':>10}")
    for r in rows:
        print(f"{r['arch']:10} {r['params_m']:7.2f}M {r['batch']:5d} {r['clips']:5d} {r['x_realtime']:11.0f}x {r['peak_rss_mb']:8.0f}MB")
    by = {(r["arch"], r["batch"]): r["x_realtime"] for r in rows}
    print(f"default / wav2clip throughput: batch 1 {by['default', 1] / by['wav2clip', 1]:.1f}x, "
          f"batch 32 {by['default', 32] / by['wav2clip', 32]:.1f}x")
    seconds = 600 if args.quick else 7200
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "long.wav"
        _write_long_file(path, seconds)
        long = _sub("long", str(path))
    print(f"{seconds / 3600:.2f}-hour file: {long['x_realtime']:.0f}x real time, peak RSS {long['peak_rss_mb']:.0f} MB")


if __name__ == "__main__":
    main()
