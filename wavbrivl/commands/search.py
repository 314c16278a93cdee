"""``wavbrivl search --index I --audio FILE``: the nearest images and captions to a sound."""
from __future__ import annotations

import argparse
import html
from pathlib import Path

from .embed import add_model_arguments, load_pipeline


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("search", help="search a gallery index with a sound")
    p.add_argument("--index", help="gallery index folder (default: the bundle's own index/)")
    p.add_argument("--audio", required=True)
    add_model_arguments(p)
    p.add_argument("-k", type=int, default=8)
    p.add_argument("--kind", choices=["image", "text", "all"], default="all")
    p.add_argument("--backend", choices=["auto", "exact", "faiss"], default="auto")
    p.add_argument("--html", help="write an HTML contact sheet here")
    p.add_argument("--sheet", help="write a PNG contact sheet of the image results here")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..pipeline import AUTO

    pipeline = load_pipeline(args, index=args.index or AUTO)
    kinds = ("image", "text") if args.kind == "all" else (args.kind,)
    hits = pipeline.search(args.audio, args.k, kinds=kinds, backend=args.backend)
    results = {"image": hits.images, "text": hits.captions}
    for kind in kinds:
        for rank, r in enumerate(results[kind], start=1):
            print(f"{kind:5} {rank:2d}  {r.score:+.3f}  {r.path or ''}  {r.caption}")
    if args.sheet:
        contact_sheet(hits.images, args.sheet)
        print(f"wrote {args.sheet}")
    if args.html:
        write_html(args.audio, results, args.html)
        print(f"wrote {args.html}")
    return 0


def contact_sheet(results, out: str, tile: int = 128) -> None:
    from PIL import Image, ImageDraw

    cols = min(4, max(1, len(results)))
    rows = max(1, -(-len(results) // cols))
    sheet = Image.new("RGB", (cols * tile, rows * (tile + 16)), "white")
    draw = ImageDraw.Draw(sheet)
    for n, r in enumerate(results):
        x, y = (n % cols) * tile, (n // cols) * (tile + 16)
        with Image.open(r.path) as img:
            sheet.paste(img.convert("RGB").resize((tile, tile)), (x, y))
        draw.text((x + 2, y + tile + 2), f"{n + 1}. {r.score:+.3f}", fill="black")
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out)


def write_html(audio: str, results, out: str) -> None:
    parts = [f"<html><body><h2>Nearest to {html.escape(str(audio))}</h2>"]
    for r in results.get("image", []):
        parts.append(f'<figure style="display:inline-block"><img src="{Path(r.path).as_uri()}" width=128>'
                     f"<figcaption>{r.score:+.3f} {html.escape(r.caption)}</figcaption></figure>")
    if results.get("text"):
        parts.append("<ol>" + "".join(f"<li>{r.score:+.3f} {html.escape(r.caption)}</li>" for r in results["text"]) + "</ol>")
    Path(out).write_text("".join(parts) + "</body></html>\n")
