"""Soak test of the running demo: many searches and some generations over HTTP from concurrent clients.

Starts ``app.py`` as a subprocess (so the resident memory measured is the server's alone, read from
``/proc/PID/status``), with Gradio's cache in a fresh folder (so its growth is the app's alone), then sends
``--searches`` ``/search`` and ``--generations`` ``/generate`` requests from ``--clients`` concurrent
``gradio_client`` clients, each request with a different recorded-like sound (a fresh upload, as visitors
make). Reports:

* errors (must be 0) and latency percentiles per endpoint;
* server RSS at start, after warm-up (the first ``--warmup`` fraction of the requests) and at the end, with
  the growth after warm-up (target: under 50 MB), sampled every 0.5 s;
* the upload cache (Gradio's temp folder): files and bytes before, at the end, and ``--settle`` seconds later.

    python benchmarks/soak.py                       # the default bundle: 1000 searches + 50 generations, 8 clients
    python benchmarks/soak.py --quick               # 80 searches + 4 generations (a smoke run)
    python benchmarks/soak.py --app-dir /tmp/space  # an exported Space tree (wavbrivl space export) instead
"""
from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import soundfile as sf

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


# ---------------------------------------------------------------------------------------------- the server
def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    """Resident memory of a process in MB (``VmHWM``: its peak so far)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} for process {pid}")


def folder_usage(folder: Path) -> dict:
    files = [p for p in folder.rglob("*") if p.is_file()] if folder.is_dir() else []
    return {"files": len(files), "bytes": sum(p.stat().st_size for p in files)}


class Server:
    """``python app.py`` in ``app_dir`` on a free port, with its own Gradio cache folder."""

    def __init__(self, app_dir: Path, extra: list[str], cache: Path, *, isolated: bool = False) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.cache = cache
        env = dict(os.environ, GRADIO_TEMP_DIR=str(cache), GRADIO_ANALYTICS_ENABLED="False", HF_HUB_OFFLINE="1",
                   PYTHONUNBUFFERED="1")
        if isolated:  # an exported tree must run from its own files only
            env["PYTHONPATH"] = str(app_dir)
        self.log = open(cache.parent / f"server-{self.port}.log", "w")
        self.started = time.perf_counter()
        self.proc = subprocess.Popen([sys.executable, "app.py", "--port", str(self.port), "--device", "cpu", *extra],
                                     cwd=app_dir, env=env, stdout=self.log, stderr=subprocess.STDOUT)

    def wait_http(self, timeout: float = 600.0) -> None:
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the app exited with {self.proc.returncode}; see {self.log.name}")
            try:
                if httpx.get(self.url + "gradio_api/info", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        raise TimeoutError(f"the app did not answer within {timeout:.0f} s; see {self.log.name}")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


class RssSampler(threading.Thread):
    def __init__(self, pid: int, every: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.pid, self.every = pid, every
        self.samples: list[tuple[float, float]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        t0 = time.perf_counter()
        while not self.stop.wait(self.every):
            try:
                self.samples.append((time.perf_counter() - t0, rss_mb(self.pid)))
            except (OSError, RuntimeError):
                return


# ---------------------------------------------------------------------------------------------- the load
def sounds(folder: Path, n: int, rate: int = 16000) -> list[Path]:
    """``n`` different 3-second world sounds (like recordings: each upload is new to the server)."""
    from wavbrivl.worlds.shapes.world import render_sound, sample_items

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, item in enumerate(sample_items(n, seed=4242)):
        path = folder / f"rec{i:05d}.wav"
        sf.write(path, render_sound(item, rate, 3.0), rate, subtype="PCM_16")
        paths.append(path)
    return paths


def percentiles(times: list[float]) -> dict:
    if not times:
        return {"n": 0}
    ms = np.array(times) * 1000
    return {"n": len(ms), "p50_ms": round(float(np.percentile(ms, 50)), 1), "p95_ms": round(float(np.percentile(ms, 95)), 1),
            "p99_ms": round(float(np.percentile(ms, 99)), 1), "max_ms": round(float(ms.max()), 1)}


def run_load(url: str, jobs: list[tuple[str, Path]], clients: int, on_done, session_every: int = 0) -> tuple[dict, dict]:
    """Send the jobs from ``clients`` threads (one gradio_client each); per-endpoint times and error counts.
    ``session_every``: a client starts a new session (as a new visitor would) every that many requests."""
    from gradio_client import Client, handle_file

    queue = list(reversed(jobs))
    lock = threading.Lock()
    times: dict[str, list[float]] = {"search": [], "generate": []}
    errors: dict[str, int] = {}

    def worker(seed: int) -> None:
        client = Client(url, verbose=False)
        rng = random.Random(seed)
        sent = 0
        while True:
            with lock:
                if not queue:
                    return
                kind, path = queue.pop()
            sent += 1
            if session_every and sent % session_every == 0:
                client.reset_session()
            t = time.perf_counter()
            try:
                if kind == "search":
                    gallery, _captions, _note = client.predict(handle_file(str(path)), 8, api_name="/search")
                    if not gallery:
                        raise RuntimeError("empty gallery")
                else:
                    client.predict(handle_file(str(path)), "", 0.0, rng.randrange(1000), 25, 0, 0.0, api_name="/generate")
                with lock:
                    times[kind].append(time.perf_counter() - t)
            except Exception as exc:  # noqa: BLE001 - counted and reported
                with lock:
                    key = f"{kind}: {type(exc).__name__}: {str(exc)[:120]}"
                    errors[key] = errors.get(key, 0) + 1
            on_done()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return times, errors


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--app-dir", type=Path, default=REPO, help="folder holding app.py (default: this checkout)")
    p.add_argument("--searches", type=int, default=1000)
    p.add_argument("--generations", type=int, default=50)
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--warmup", type=float, default=0.1, help="fraction of the requests before the RSS baseline")
    p.add_argument("--settle", type=float, default=0.0, help="seconds to wait after the run before measuring the cache again")
    p.add_argument("--session-every", type=int, default=0, metavar="K",
                   help="each client starts a new session every K requests, as new visitors do (default: one session each)")
    p.add_argument("--quick", action="store_true", help="80 searches and 4 generations")
    p.add_argument("--app-args", default="--preload", help="extra arguments for app.py")
    p.add_argument("--json", type=Path, help="also write the report here")
    args = p.parse_args(argv)
    if args.quick:
        args.searches, args.generations = 80, 4

    with tempfile.TemporaryDirectory(prefix="wavbrivl-soak-") as tmp:
        tmp = Path(tmp)
        cache = tmp / "gradio-cache"
        cache.mkdir()
        n = args.searches + args.generations
        files = sounds(tmp / "sounds", n)
        jobs = [("search", f) for f in files[: args.searches]] + [("generate", f) for f in files[args.searches:]]
        random.Random(0).shuffle(jobs)

        server = Server(args.app_dir.resolve(), args.app_args.split(), cache, isolated=args.app_dir.resolve() != REPO)
        try:
            server.wait_http()
            ready_s = time.perf_counter() - server.started
            rss_start = rss_mb(server.proc.pid)
            cache_before = folder_usage(cache)
            sampler = RssSampler(server.proc.pid)
            sampler.start()
            warm = {"done": 0, "rss": None, "at": max(1, int(args.warmup * n))}
            lock = threading.Lock()

            def on_done() -> None:
                with lock:
                    warm["done"] += 1
                    if warm["done"] == warm["at"]:
                        warm["rss"] = rss_mb(server.proc.pid)
                        print(f"warm-up done after {warm['at']} requests: RSS {warm['rss']:.0f} MB", flush=True)
                    elif warm["done"] % 100 == 0:
                        print(f"{warm['done']}/{n} requests, RSS {rss_mb(server.proc.pid):.0f} MB", flush=True)

            t0 = time.perf_counter()
            times, errors = run_load(server.url, jobs, args.clients, on_done, args.session_every)
            wall = time.perf_counter() - t0
            time.sleep(1.0)
            rss_end = rss_mb(server.proc.pid)
            peak = rss_mb(server.proc.pid, "VmHWM")
            cache_end = folder_usage(cache)
            if args.settle:
                time.sleep(args.settle)
            cache_settled = folder_usage(cache)
            sampler.stop.set()
        finally:
            server.stop()

    rss_warm = warm["rss"] if warm["rss"] is not None else rss_start
    report = {
        "app_dir": str(args.app_dir), "clients": args.clients, "session_every": args.session_every,
        "searches": args.searches, "generations": args.generations,
        "server_ready_s": round(ready_s, 1), "wall_s": round(wall, 1),
        "errors": sum(errors.values()), "error_kinds": errors,
        "latency": {kind: percentiles(t) for kind, t in times.items()},
        "rss_mb": {"start": round(rss_start, 1), "after_warmup": round(rss_warm, 1), "end": round(rss_end, 1),
                   "growth_after_warmup": round(rss_end - rss_warm, 1), "peak": round(peak, 1),
                   "max_sampled": round(max((s for _, s in sampler.samples), default=rss_end), 1)},
        "upload_cache": {"before": cache_before, "end": cache_end, f"after_{args.settle:.0f}s": cache_settled},
        "rss_timeline_mb": [round(s, 1) for _, s in sampler.samples[:: max(1, len(sampler.samples) // 20)]],
    }
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    lat = report["latency"]["search"]
    print(f"\nsoak: {report['errors']} errors in {args.searches} searches + {args.generations} generations "
          f"from {args.clients} clients ({wall:.0f} s); "
          f"/search p50 {lat.get('p50_ms')} ms, p95 {lat.get('p95_ms')} ms, p99 {lat.get('p99_ms')} ms; "
          f"RSS {rss_start:.0f} -> {rss_warm:.0f} (warm) -> {rss_end:.0f} MB, growth {rss_end - rss_warm:+.0f} MB; "
          f"cache {cache_before['files']} -> {cache_end['files']} files ({cache_end['bytes'] / 1e6:.1f} MB)")
    return 0 if report["errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
