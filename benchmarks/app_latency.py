"""Demo latency on CPU: from a finished 3-second recording to the results a person sees.

Times the demo's own handlers (``demo.handlers.DemoService``), as Gradio calls them after a recording
stops, on a fresh recording every run (so the embedding cache never hits):

* ``search``             the gallery + captions (what appears first), from Gradio's numpy ``(rate, int16)``
* ``search (wav file)``  the same from the uploaded WAV path, which is what the demo's ``gr.Audio`` hands over
* ``search + labels``    everything the page shows after a recording (the zero-shot labels follow the search)
* ``HTTP /search``       with ``--http``: through the running app (upload + queue + handler + response) with
                         ``gradio_client``, as a browser's request travels

    python benchmarks/app_latency.py                              # tiny preset, built on the fly
    python benchmarks/app_latency.py --checkpoint assets/shapes   # the shapes bundle (index + generator inside)
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def tiny_world(root: Path) -> str:
    """The tiny preset with a 12-picture index and a generator, laid out like a bundle."""
    from wavbrivl import WavBriVL
    from wavbrivl.worlds.shapes.demo_world import build_demo_world

    return str(build_demo_world(root, WavBriVL.from_preset("tiny"))["ckpt"])


def recording(i: int, rate: int) -> tuple[int, np.ndarray]:
    """A different 3-second world sound per run, as a browser microphone gives it (int16 PCM)."""
    from wavbrivl.worlds.shapes.world import render_sound, sample_items

    wave = render_sound(sample_items(1, seed=1000 + i)[0], rate, 3.0)
    return rate, (wave * 32767).astype(np.int16)


def summarise(name: str, times: list[float]) -> dict:
    ms = sorted(t * 1000 for t in times)
    p95 = ms[min(len(ms) - 1, int(round(0.95 * (len(ms) - 1))))]
    return {"what": name, "runs": len(ms), "median_ms": round(statistics.median(ms), 1), "p95_ms": round(p95, 1),
            "max_ms": round(ms[-1], 1)}


def http_search(service, tmp: Path, args: argparse.Namespace) -> list[float]:
    """Upload + queue + handler + response through the real server, one fresh recording per run."""
    import socket

    from gradio_client import Client, handle_file

    import app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    demo = app.build_demo(service)
    _, url, _ = demo.launch(prevent_thread_lock=True, quiet=True, server_name="127.0.0.1", server_port=port,
                            allowed_paths=service.allowed_paths())
    try:
        client = Client(url, verbose=False)
        times = []
        for i in range(args.runs + 1):
            path = tmp / f"http{i}.wav"
            sf.write(path, recording(3 * args.runs + i, args.rate)[1], args.rate, subtype="PCM_16")
            t = time.perf_counter()
            client.predict(handle_file(str(path)), args.k, api_name="/search")
            if i:  # the first request opens connections
                times.append(time.perf_counter() - t)
        return times
    finally:
        demo.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", help="checkpoint folder (default: the tiny preset, built in a temp folder)")
    p.add_argument("--runs", type=int, default=30)
    p.add_argument("--rate", type=int, default=48000, help="microphone sample rate (browsers record at 48 kHz)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--k", type=int, default=8)
    p.add_argument("--http", action="store_true", help="also time /search through a live app on 127.0.0.1")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    from demo.config import DemoConfig
    from demo.handlers import DemoService

    with tempfile.TemporaryDirectory() as tmp:
        ckpt = args.checkpoint or tiny_world(Path(tmp))
        t0 = time.perf_counter()
        service = DemoService(DemoConfig(checkpoint=ckpt, device="cpu")).load()
        load_s = time.perf_counter() - t0
        if service.state.error:
            print(f"error: {service.state.error}", file=sys.stderr)
            return 1
        if service.pipeline.index is None:
            print(f"error: {service.pipeline.problems.get('index', 'the bundle has no index')}", file=sys.stderr)
            return 1
        service.search(recording(-1, args.rate), args.k)  # first call outside the timing
        results = {"search": [], "search (wav file)": [], "search + labels": []}
        for i in range(args.runs):
            clip = recording(i, args.rate)
            t = time.perf_counter()
            service.search(clip, args.k)
            results["search"].append(time.perf_counter() - t)

            path = Path(tmp) / f"rec{i}.wav"
            sf.write(path, recording(args.runs + i, args.rate)[1], args.rate, subtype="PCM_16")
            t = time.perf_counter()
            service.search(str(path), args.k)
            results["search (wav file)"].append(time.perf_counter() - t)

            clip = recording(2 * args.runs + i, args.rate)
            t = time.perf_counter()
            service.search(clip, args.k)
            service.classify(clip, None)
            results["search + labels"].append(time.perf_counter() - t)
        if args.http:
            results["HTTP /search"] = http_search(service, Path(tmp), args)
        report = {
            "checkpoint": "tiny preset" if not args.checkpoint else ckpt,
            "space": service.pipeline.backbone_id,
            "index_items": len(service.pipeline.index),
            "labels": len(service.labels),
            "threads": args.threads,
            "load_s": round(load_s, 2),
            "results": [summarise(name, times) for name, times in results.items()],
        }
    print(json.dumps(report, indent=2))
    print(f"\n{'handler':<22}{'median':>10}{'p95':>10}   ({args.runs} runs, 3-second recordings at {args.rate} Hz, "
          f"{args.threads} threads)")
    for r in report["results"]:
        print(f"{r['what']:<22}{r['median_ms']:>8.1f}ms{r['p95_ms']:>8.1f}ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
