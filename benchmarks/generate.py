"""Seconds per image and peak memory of the generators, through :class:`wavbrivl.generate.Generator`.

* the tiny ``StableUnCLIPImg2ImgPipeline`` the tests build (same code path as the real 2.1 unCLIP, toy sizes);
* a bundle's own generator (``--bundle-generator``, default ``assets/shapes/generator``; ``assets/everyday/generator``);
* with ``--real SOURCE`` (a source of ``wavbrivl/generators.json``: ``ip-adapter-sd15``, ``ip-adapter-sd15-lcm``,
  ``unclip-h``), its weights already in the Hugging Face cache: the real generator at 512x512, fp16 on a GPU
  (seconds per image and peak GPU memory), fp32 on a CPU.

    python benchmarks/generate.py [--steps 20] [--runs 3] [--real ip-adapter-sd15 --real ip-adapter-sd15-lcm]

Each backend runs in a fresh child process so its peak resident memory is its own.
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

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def measure(kind: str, steps: int, runs: int, threads: int, bundle_generator: str) -> dict:
    import torch

    from wavbrivl.generate import Generator

    torch.set_num_threads(threads)
    size = None
    if kind == "tiny-unclip":
        from wavbrivl.testing import tiny_unclip

        tmp = Path(tempfile.mkdtemp())
        tiny_unclip(tmp).save_pretrained(tmp / "pipe", safe_serialization=True)
        gen = Generator.from_pretrained(tmp / "pipe", device="cpu", space_id="tiny", embed_norm=1.0)
        size = 32
    elif kind == "bundle":
        gen = Generator.from_pretrained(bundle_generator, device="cpu")
    else:  # a real generator source (wavbrivl/generators.json), its weights already in the Hugging Face cache
        from wavbrivl.hub import generator_source

        device = "cuda" if torch.cuda.is_available() else "cpu"
        gen = Generator.from_source(generator_source(kind.removeprefix("real:")), device=device, local_files_only=True)
        size = 512
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
    emb = torch.nn.functional.normalize(torch.randn(gen.embed_dim), dim=0)
    gen.generate(emb, space_id=gen.space_id, steps=2, height=size, width=size)  # warm-up
    times = []
    for seed in range(runs):
        t = time.perf_counter()
        image = gen.generate(emb, space_id=gen.space_id, seed=seed, steps=steps, height=size, width=size)[0]
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    out = {"backend": kind, "steps": steps, "image": f"{image.width}x{image.height}",
           "s_per_image": sorted(times)[len(times) // 2],
           "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if kind.startswith("real:") and torch.cuda.is_available():
        out["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--bundle-generator", default=str(REPO / "assets" / "shapes" / "generator"),
                   help="a bundle's generator/ folder (measured as the 'bundle' backend)")
    p.add_argument("--real", action="append", default=[], metavar="SOURCE",
                   help="also a real generator source from wavbrivl/generators.json (ip-adapter-sd15, ip-adapter-sd15-lcm, "
                        "unclip-h), its weights already cached; on the GPU when there is one (repeatable)")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args.steps, args.runs, args.threads, args.bundle_generator)))
        return
    kinds = (["tiny-unclip"] + (["bundle"] if Path(args.bundle_generator).is_dir() else [])
             + [f"real:{name}" for name in args.real])
    print(f"{'backend':<27}{'image':>9}{'steps':>7}{'s/image':>10}{'peak RSS':>11}{'peak GPU':>11}")
    for kind in kinds:
        child = [sys.executable, __file__, "--child", kind, "--steps", str(args.steps), "--runs", str(args.runs),
                 "--threads", str(args.threads), "--bundle-generator", args.bundle_generator]
        proc = subprocess.run(child, capture_output=True, text=True)
        if proc.returncode:
            print(f"{kind:<27} failed: {proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else proc.returncode}")
            continue
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        gpu = f"{r['peak_gpu_mb']:.0f} MB" if "peak_gpu_mb" in r else "-"
        print(f"{kind:<27}{r['image']:>9}{r['steps']:>7}{r['s_per_image']:>9.2f}s{r['peak_rss_mb']:>8.0f} MB{gpu:>11}")


if __name__ == "__main__":
    main()
