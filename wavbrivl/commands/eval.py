"""``wavbrivl eval``: zero-shot, linear-probe, retrieval and starter-world reports for a checkpoint."""
from __future__ import annotations

import argparse
from pathlib import Path

from .embed import add_model_arguments, load_model


def register(subparsers: argparse._SubParsersAction) -> None:
    from ..datasets import LAYOUTS
    from ..evaluate import DEFAULT_TEMPLATES, TASKS

    p = subparsers.add_parser("eval", help="evaluate a checkpoint: zero-shot, linear probe, retrieval")
    add_model_arguments(p)
    p.add_argument("--task", required=True,
                   help=f"one or more of {', '.join(TASKS)} (comma-separated), or 'all' (zeroshot,linear,retrieval)")
    p.add_argument("--data", required=True, help="ESC-50 or UrbanSound8K root, a manifest (.csv/.jsonl), or a folder per class")
    p.add_argument("--layout", choices=("auto",) + LAYOUTS, default="auto")
    p.add_argument("--out", required=True, help="report folder (report.json, report.md, PNG plots)")
    p.add_argument("--label-column", default="label", help="column holding the class (e.g. 'colour' in a manifest)")
    p.add_argument("--split", help="evaluate only this split of a manifest (retrieval defaults to 'test' when present)")
    p.add_argument("--template", action="append", dest="templates",
                   help=f"zero-shot prompt template with '{{}}' for the class name; repeatable (default: {' | '.join(DEFAULT_TEMPLATES)})")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--no-plots", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..datasets import load_dataset
    from ..evaluate import DEFAULT_TEMPLATES, TASKS, run_evaluation

    tasks = ["zeroshot", "linear", "retrieval"] if args.task == "all" else [t.strip() for t in args.task.split(",") if t.strip()]
    unknown = sorted(set(tasks) - set(TASKS))
    if unknown:
        raise ValueError(f"unknown task(s) {', '.join(unknown)}: choose from {', '.join(TASKS)} or 'all'")
    data = load_dataset(args.data, args.layout)
    model = load_model(args)
    generator = None
    if "world" in tasks:
        from ..generate import Generator

        if not args.checkpoint or not (Path(args.checkpoint) / "generator").is_dir():
            raise ValueError("--task world needs a starter bundle checkpoint with a generator/ folder")
        generator = Generator.from_pretrained(Path(args.checkpoint) / "generator", device=args.device)
    report = run_evaluation(
        model, data, tasks, args.out, checkpoint=args.checkpoint or f"preset:{args.preset}", label_column=args.label_column,
        templates=args.templates or DEFAULT_TEMPLATES, split=args.split, seed=args.seed, plots=not args.no_plots,
        generator=generator, batch_size=args.batch_size,
    )
    print((Path(args.out) / "report.md").read_text())
    print(f"wrote {Path(args.out) / 'report.json'} ({report['clips']['evaluated']} clips, {report['clips']['skipped']} unreadable)")
    return 0
