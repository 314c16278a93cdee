"""The demo tests' app: launched on a free port with a bilingual card. Their tiny bundle is built by
:func:`wavbrivl.worlds.shapes.demo_world.build_demo_world` (the benchmarks build it too)."""
from __future__ import annotations

import socket
from pathlib import Path
from typing import Any


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch_app(ckpt: Path, *flags: str) -> tuple[Any, str, Any]:
    """The real app (``app.py``'s own argument parsing, queue and launch settings) on a free local port:
    ``(demo, url, service)``."""
    import app

    args = app.parse_args(["--checkpoint", str(ckpt), "--device", "cpu", "--port", str(free_port()), *flags])
    service = app.make_service(args)
    service.start()
    demo = app.build_demo(service)
    _, url, _ = demo.launch(prevent_thread_lock=True, quiet=True, **app.launch_kwargs(args, service))
    return demo, url, service


def write_card(ckpt: Path, items: list) -> None:
    """A bilingual card for a demo world: name, description and example titles in English and Japanese."""
    from wavbrivl.bundle import BundleCard, ExampleSound

    examples = [ExampleSound(f"examples/{p.name}", label=f"{items[i].colour} {items[i].shape}", heard=i != 1,
                             title={"en": f"example {i}: a {items[i].colour} {items[i].shape}",
                                    "ja": f"例 {i}：{items[i].shape} の音"})
                for i, p in enumerate(sorted((ckpt / "examples").glob("*.wav")))]
    BundleCard(name={"en": "Tiny test world", "ja": "小さなテストの世界"},
               description={"en": "Sounds of a tiny test world.", "ja": "小さなテストの世界の音です。"},
               labels=sorted({it.caption for it in items}), templates=["{}"], examples=examples).save(ckpt)
