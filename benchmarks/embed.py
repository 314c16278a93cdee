"""Audio-embedding throughput and peak memory on this machine (CPU), against the peers, in one run.

Prints, for each encoder: seconds of audio embedded per wall second at batch 1 and batch 32 on 10-second clips
recorded at 44.1 kHz (each encoder resamples to its own rate: the front end is included), and peak resident
memory; then the peak memory of embedding one two-hour file (streamed in windows). Each measurement runs in a
fresh subprocess so its peak RSS is its own. Encoders:

* ``everyday``: the everyday bundle's audio encoder (assets/everyday; the student distilled from aisfx);
* ``default``: the library's default ResNet-style encoder (64 mel bands, 5-second windows);
* ``aisfx``: the aisfx network the everyday student is distilled from (2.3-second blocks overlapping by half);
* ``wav2clip``: Wav2CLIP's layout (ResNet-18 on a 257-bin spectrogram, 10-second windows);
* ``htsat``: LAION-CLAP's HTSAT-tiny built from its own code (benchmarks/peers.py; needs ``wavbrivl[bench]``).

    python benchmarks/embed.py            # full run (~5 minutes on 2 cores)
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

RATE = 44100
ARCHS = ("everyday", "default", "aisfx", "wav2clip", "htsat")


def _embedder(arch: str):
    """``(embed(list of waves at RATE, batch) -> tensor, parameter count)``."""
    import torch

    from wavbrivl import WavBriVL

    if arch == "htsat":
        sys.path.insert(0, str(Path(__file__).parent))
        import numpy as np
        import torchaudio

        from peers import htsat_tiny

        model, projection, rate = htsat_tiny()

        @torch.inference_mode()
        def embed(waves, batch):
            x = torchaudio.functional.resample(torch.from_numpy(np.stack(waves)), RATE, rate)
            return torch.nn.functional.normalize(projection(model({"waveform": x}, device="cpu")["embedding"]), dim=-1)

        return embed, sum(p.numel() for p in model.parameters()) + sum(p.numel() for p in projection.parameters())
    if arch == "everyday":
        bundle = Path(__file__).resolve().parent.parent / "assets" / "everyday"
        model = WavBriVL.from_pretrained(bundle)
    elif arch == "wav2clip":
        from wavbrivl.wav2clip import wav2clip_config

        model = WavBriVL(wav2clip_config())
    elif arch == "aisfx":
        from wavbrivl.audio import FrontEndConfig
        from wavbrivl.backbone import BackboneConfig
        from wavbrivl.encoder import EncoderConfig
        from wavbrivl.model import WavBriVLConfig

        model = WavBriVL(WavBriVLConfig(BackboneConfig("ViT-B-32", "openai"), FrontEndConfig.aisfx(), EncoderConfig.aisfx(384),
                                        embed_dim=384))
    else:
        model = WavBriVL.from_preset("vit-b-32")

    def embed(waves, batch):
        return model.embed_audio(waves, sample_rate=RATE, batch_size=max(batch, 2) * 4)

    return embed, sum(p.numel() for p in model.audio_encoder.parameters())


def _measure(arch: str, batch: int, clips: int, threads: int) -> dict:
    import numpy as np
    import torch

    torch.set_num_threads(threads)
    embed, params = _embedder(arch)
    rng = np.random.default_rng(0)
    waves = [rng.standard_normal(RATE * 10).astype(np.float32) * 0.1 for _ in range(clips)]
    embed(waves[:batch], batch)  # warm-up
    t0 = time.perf_counter()
    for start in range(0, clips, batch):
        embed(waves[start : start + batch], batch)
    wall = time.perf_counter() - t0
    return {"arch": arch, "batch": batch, "clips": clips, "wall_s": wall, "x_realtime": clips * 10.0 / wall,
            "params_m": params / 1e6, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def _measure_long(path: str, threads: int) -> dict:
    import torch

    from wavbrivl import WavBriVL

    torch.set_num_threads(threads)
    bundle = Path(__file__).resolve().parent.parent / "assets" / "everyday"
    everyday = (bundle / "config.json").is_file()
    model = WavBriVL.from_pretrained(bundle) if everyday else WavBriVL.from_preset("vit-b-32")
    t0 = time.perf_counter()
    emb = model.embed_audio(path, batch_size=32)
    wall = time.perf_counter() - t0
    import soundfile as sf

    seconds = sf.info(path).duration
    return {"encoder": "everyday" if everyday else "default", "file_seconds": seconds, "wall_s": wall,
            "x_realtime": seconds / wall, "dim": emb.shape[1],
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
    ap.add_argument("--archs", default=",".join(ARCHS), help=f"comma-separated subset of {', '.join(ARCHS)}")
    ap.add_argument("--child", nargs="+")
    args = ap.parse_args()
    if args.child:
        kind, *rest = args.child
        if kind == "throughput":
            result = _measure(rest[0], int(rest[1]), int(rest[2]), args.threads)
        else:
            result = _measure_long(rest[0], args.threads)
        print(json.dumps(result))
        return
    clips = {1: 8 if args.quick else 16, 32: 32 if args.quick else 64}
    archs = [a for a in args.archs.split(",") if a]
    slow = {"aisfx", "wav2clip", "htsat"}
    rows = []
    for batch in (1, 32):  # interleaved per batch size, so a busy spell on the machine hits every encoder alike
        for arch in archs:
            n = max(batch, clips[batch] // 4) if arch in slow else clips[batch]
            try:
                rows.append(_sub("throughput", arch, str(batch), str(n)))
            except subprocess.CalledProcessError as exc:
                print(f"{arch}: skipped ({exc.stderr.strip().splitlines()[-1] if exc.stderr else exc})", file=sys.stderr)
    print(f"{'encoder':10} {'params':>8} {'batch':>5} {'clips':>5} {'x real time':>12} {'peak RSS':>10}")
    for r in rows:
        print(f"{r['arch']:10} {r['params_m']:7.2f}M {r['batch']:5d} {r['clips']:5d} {r['x_realtime']:11.0f}x "
              f"{r['peak_rss_mb']:8.0f}MB")
    by = {(r["arch"], r["batch"]): r["x_realtime"] for r in rows}
    lead = archs[0]
    for batch in (1, 32):
        others = [(a, by[a, batch]) for a in archs[1:] if (a, batch) in by]
        if (lead, batch) in by and others:
            print(f"batch {batch}: {lead} is " + ", ".join(f"{by[lead, batch] / x:.1f}x {a}" for a, x in others))
    seconds = 600 if args.quick else 7200
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "long.wav"
        _write_long_file(path, seconds)
        long = _sub("long", str(path))
    print(f"{seconds / 3600:.2f}-hour file ({long['encoder']} encoder): {long['x_realtime']:.0f}x real time, "
          f"peak RSS {long['peak_rss_mb']:.0f} MB")


if __name__ == "__main__":
    main()
