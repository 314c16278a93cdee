"""``wavbrivl eval``: zero-shot, linear-probe and retrieval reports for a checkpoint."""
from __future__ import annotations

import argparse
from pathlib import Path

from .embed import add_model_arguments, load_pipeline


def register(subparsers: argparse._SubParsersAction) -> None:
    from ..datasets import LAYOUTS
    from ..evaluate import TASKS

    p = subparsers.add_parser("eval", help="evaluate a checkpoint: zero-shot, linear probe, retrieval")
    add_model_arguments(p)
    p.add_argument("--task", required=True,
                   help=f"one or more of {', '.join(TASKS)} (comma-separated), or 'all': every task the data allows, "
                        "the others reported as skipped with their reason")
    p.add_argument("--data", required=True, help="ESC-50 or UrbanSound8K root, a manifest (.csv/.jsonl), or a folder per class")
    p.add_argument("--layout", choices=("auto",) + LAYOUTS, default="auto")
    p.add_argument("--out", required=True, help="report folder (report.json, report.md, PNG plots)")
    p.add_argument("--label-column", default="label", help="column holding the class (e.g. 'colour' in a manifest)")
    p.add_argument("--split", help="evaluate only this split of a manifest (retrieval defaults to 'test' when present)")
    p.add_argument("--template", action="append", dest="templates",
                   help="zero-shot prompt template with '{}' for the class name; repeatable "
                        "(default: the bundle's templates, as the demo uses them)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--no-plots", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..datasets import load_dataset
    from ..evaluate import TASKS, run_evaluation

    every = args.task == "all"
    tasks = list(TASKS) if every else [t.strip() for t in args.task.split(",") if t.strip()]
    unknown = sorted(set(tasks) - set(TASKS))
    if unknown:
        raise ValueError(f"unknown task(s) {', '.join(unknown)}: choose from {', '.join(TASKS)} or 'all'")
    data = load_dataset(args.data, args.layout)
    pipeline = load_pipeline(args)
    report = run_evaluation(
        pipeline, data, tasks, args.out, checkpoint=args.checkpoint or f"preset:{args.preset}", label_column=args.label_column,
        templates=args.templates, split=args.split, seed=args.seed, plots=not args.no_plots, batch_size=args.batch_size,
        skip_unavailable=every,
    )
    print((Path(args.out) / "report.md").read_text())
    for task, why in report["skipped_tasks"].items():
        print(f"skipped {task}: {why}")
    clips = report["clips"]
    print(f"wrote {Path(args.out) / 'report.json'} ({clips['evaluated']} clips, {clips['skipped']} unreadable)")
    return 0
