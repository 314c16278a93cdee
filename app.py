"""Run the WavBriVL demo: ``python app.py`` (locally) or as a Hugging Face Space's ``app_file``.

Configuration: flags, or environment variables for hosts where flags cannot be passed (Spaces)::

    --checkpoint / WAVBRIVL_CHECKPOINT   bundle folder or hub id (default: the bundle in assets/ when present)
    --index      / WAVBRIVL_INDEX        gallery index folder, or 'none' (default: <checkpoint>/index)
    --generator  / WAVBRIVL_GENERATOR    generator folder or hub id, or 'none' (default: <checkpoint>/generator)
    --device     / WAVBRIVL_DEVICE       cpu, cuda, cuda:1 ... (default: cuda when available)
    --real       / WAVBRIVL_REAL         a preset (vit-h-14): serve its real embedding space with real generators: the hub
                                         bundle --checkpoint names, else the default bundle retargeted there at first
                                         boot and kept ($WAVBRIVL_HOME, /data on a Space with storage, else ~/.cache)
    --host       / GRADIO_SERVER_NAME    default 127.0.0.1 (0.0.0.0 to serve the network; Spaces set it)
    --port       / GRADIO_SERVER_PORT    default 7860
    --share, --auth USER:PASS / WAVBRIVL_AUTH
    --mcp                                also serve the named endpoints as MCP tools (/gradio_api/mcp/)
"""
from __future__ import annotations

try:  # ZeroGPU: `spaces` must be imported before torch touches CUDA; absent elsewhere (its decorator is then skipped)
    import spaces  # type: ignore[import-not-found]  # noqa: F401
except ImportError:
    pass

import argparse
import ctypes
import logging
import os
import sys
from pathlib import Path
from typing import Sequence

import gradio as gr

from demo.config import DemoConfig
from demo.handlers import DemoService
from demo.page import translations
from demo.ui import CSS, DELETE_CACHE, build_ui
from wavbrivl.presets import PRESETS


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="WavBriVL Gradio demo")
    p.add_argument("--checkpoint", help="checkpoint folder or Hugging Face repo id [WAVBRIVL_CHECKPOINT]")
    p.add_argument("--index", help="gallery index folder, or 'none' [WAVBRIVL_INDEX]")
    p.add_argument("--generator", help="generator folder or hub id, or 'none' [WAVBRIVL_GENERATOR]")
    p.add_argument("--generator-on-cpu", action="store_true", help="load a Stable unCLIP generator even without a GPU")
    p.add_argument("--device", help="torch device [WAVBRIVL_DEVICE]")
    p.add_argument("--real", choices=sorted(PRESETS), default=os.environ.get("WAVBRIVL_REAL") or None,
                   help="serve this preset's real space (hub bundle, else the default bundle retargeted once) [WAVBRIVL_REAL]")
    p.add_argument("--labels", help="file with zero-shot labels, one per line")
    p.add_argument("--max-seconds", type=float, help="longest sound accepted (default 30) [WAVBRIVL_MAX_SECONDS]")
    p.add_argument("--max-file-size", default=os.environ.get("WAVBRIVL_MAX_FILE_SIZE", "20mb"), help="upload size limit")
    p.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    p.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", "7860")))
    p.add_argument("--share", action="store_true", help="also serve on a public gradio.live https link")
    p.add_argument("--auth", default=os.environ.get("WAVBRIVL_AUTH"), help="USER:PASS required to open the app")
    p.add_argument("--queue-size", type=int, default=32, help="requests waiting before new ones are refused")
    p.add_argument("--concurrency", type=int, default=2, help="search/classify requests served at once")
    p.add_argument("--preload", action="store_true", help="load everything before serving (default: in the background)")
    p.add_argument("--mcp", action="store_true", default=os.environ.get("WAVBRIVL_MCP", "") not in ("", "0"),
                   help="also serve search/classify/generate as MCP tools at /gradio_api/mcp/ [WAVBRIVL_MCP=1]")
    p.add_argument("--keep-files", type=int, default=DELETE_CACHE[1], metavar="SECONDS",
                   help="age after which files Gradio wrote for visitors (pictures sent) are deleted; uploads and "
                        "recordings are deleted as soon as they are handled")
    args = p.parse_args(argv)
    if args.real and args.real not in PRESETS:  # a WAVBRIVL_REAL default is not checked by argparse's choices
        p.error(f"--real / WAVBRIVL_REAL must be one of {', '.join(sorted(PRESETS))}, not {args.real!r}")
    return args


def make_service(args: argparse.Namespace) -> DemoService:
    labels = None
    if args.labels:
        labels = [line.strip() for line in Path(args.labels).read_text().splitlines() if line.strip()]
    config = DemoConfig.from_env(
        checkpoint=args.checkpoint, index=args.index, generator=args.generator, device=args.device,
        max_seconds=args.max_seconds, labels=labels, generator_on_cpu=args.generator_on_cpu or None, real=args.real,
    )
    return DemoService(config)


def build_demo(service: DemoService, *, queue_size: int = 32, concurrency: int = 2,
               keep_files: int = DELETE_CACHE[1]) -> gr.Blocks:
    """The Blocks app with its queue: searches run ``concurrency`` at a time, generation one at a time."""
    # Gradio keeps a record of the last N events for its analytics (10 000 by default); this app reads none.
    os.environ.setdefault("GRADIO_ANALYTICS_MAX_EVENTS", "500")
    demo = build_ui(service, delete_cache=(min(DELETE_CACHE[0], keep_files), keep_files))
    demo.queue(max_size=queue_size, default_concurrency_limit=concurrency)
    return demo


def limit_malloc_arenas(arenas: int = 2) -> None:
    """Keep glibc's heap from growing under concurrent requests (no-op elsewhere, or if MALLOC_ARENA_MAX is set).

    glibc gives threads that allocate at the same time their own heaps ("arenas", up to 8 per core), and
    Gradio answers requests from a pool of worker threads: memory freed in many arenas is kept rather than
    returned, and the server's resident memory grew by ~40 MB per 600 searches while the memory in use stayed
    flat (benchmarks/soak.py, glibc mallinfo2). Two arenas keep it flat at no measured cost in latency.
    """
    if os.environ.get("MALLOC_ARENA_MAX"):
        return
    try:
        ctypes.CDLL("libc.so.6").mallopt(-8, arenas)  # M_ARENA_MAX
    except (OSError, AttributeError):
        pass


def launch_kwargs(args: argparse.Namespace, service: DemoService) -> dict:
    auth = None
    if args.auth:
        user, sep, password = args.auth.partition(":")
        if not sep:
            raise SystemExit("--auth / WAVBRIVL_AUTH must be USER:PASS")
        auth = (user, password)
    return dict(
        server_name=args.host, server_port=args.port, share=args.share or None, auth=auth,
        max_file_size=args.max_file_size, allowed_paths=service.allowed_paths(), css=CSS, i18n=translations(service),
        mcp_server=args.mcp or None,
        # A session's record (a copy of the page's configuration) is kept until this many newer ones exist;
        # this app keeps no per-visitor state, so the last few hundred visitors are plenty.
        state_session_capacity=256,
    )


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    limit_malloc_arenas()
    args = parse_args(argv)
    service = make_service(args)
    try:
        service.config.resolved_checkpoint()
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    service.load() if args.preload else service.start()
    demo = build_demo(service, queue_size=args.queue_size, concurrency=args.concurrency, keep_files=args.keep_files)
    demo.launch(**launch_kwargs(args, service))
    return 0


if __name__ == "__main__":
    sys.exit(main())
