"""What the everyday build's drawing judge costs per training step, in PyTorch's two memory formats.

The judge (``wavbrivl.worlds.everyday.evaluate.DrawingJudge``, a VGG-like CNN at 64 px) is the largest single
part of the build's evaluation: 1500 steps of batch 64. On CPU, oneDNN's convolutions may run faster on
channels-last tensors; this times the same training step (random drawings, the build's augmentation and optimiser)
both ways, and checks that the two give the same logits from the same weights. With ``--world`` it also trains
the judge as the build does (the world's ``fit`` drawings, the build's steps and seed) at each ``--widths`` and
scores it on the held-out real drawings (the ``gallery`` split), per concept as the report does, with its time:
the cost of the instrument against how well it names real drawings.

    python benchmarks/judge.py [--steps 15] [--warmup 3] [--size 64] [--threads 2]
    python benchmarks/judge.py --world CACHE/world --widths 16 24 [--judge-steps 1500]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def step_seconds(channels_last: bool, steps: int, warmup: int, size: int, classes: int = 93) -> float:
    from wavbrivl import optim
    from wavbrivl.worlds.everyday.backbone import augment_pictures
    from wavbrivl.worlds.everyday.evaluate import DrawingJudge

    torch.manual_seed(0)
    judge = DrawingJudge(classes, size=size)
    if channels_last:
        judge = judge.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(judge.parameters(), lr=2e-3, weight_decay=0.05)
    g = torch.Generator().manual_seed(0)
    x_all, y_all = torch.rand(256, 3, size, size, generator=g), torch.randint(0, classes, (256,), generator=g)
    judge.train()
    times = []
    for i in range(warmup + steps):
        t = time.perf_counter()
        idx = torch.randint(0, len(x_all), (64,), generator=g)
        x = augment_pictures(x_all[idx], g)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        loss = F.cross_entropy(judge(x), y_all[idx], label_smoothing=0.1)
        optim.step(loss, opt, None)
        if i >= warmup:
            times.append(time.perf_counter() - t)
    return sum(times) / len(times)


def same_logits(size: int) -> float:
    from wavbrivl.worlds.everyday.evaluate import DrawingJudge

    torch.manual_seed(0)
    judge = DrawingJudge(93, size=size).eval()
    x = torch.rand(8, 3, size, size)
    with torch.inference_mode():
        a = judge(x)
        b = judge.to(memory_format=torch.channels_last)(x.contiguous(memory_format=torch.channels_last))
    return float((a - b).abs().max())


def trained_judges(world_dir: str, widths: list[int], steps: int, size: int) -> None:
    from wavbrivl.worlds.everyday.evaluate import judge_on_held_out_drawings, train_judge
    from wavbrivl.worlds.everyday.world import EverydayWorld, load_pictures

    world = EverydayWorld.load(world_dir)
    fit = [p for p in world.pictures if p.split == "fit"]
    fit_pixels = load_pictures([p.path for p in fit], size)
    print(f"the judge trained on {len(fit)} real drawings, {steps} steps; scored on the held-out drawings, per concept:")
    for width in widths:
        t = time.perf_counter()
        judge = train_judge(fit_pixels, [world.names.index(p.label) for p in fit], len(world.names), steps=steps,
                            width=width)
        seconds = time.perf_counter() - t
        score = judge_on_held_out_drawings(judge, world)
        print(f"  width {width:3d}: top-1 {score['top1']:.3f}, top-5 {score['top5']:.3f}; trained in {seconds:.0f} s",
              flush=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=15)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--world", help="a prepared everyday world (CACHE/world): train and score judges on its drawings")
    p.add_argument("--widths", type=int, nargs="+", default=[16, 32])
    p.add_argument("--judge-steps", type=int, default=1500)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.world:
        trained_judges(args.world, args.widths, args.judge_steps, args.size)
        return 0
    plain = step_seconds(False, args.steps, args.warmup, args.size)
    last = step_seconds(True, args.steps, args.warmup, args.size)
    print(f"drawing judge, {args.size} px, batch 64, {args.threads} threads, mean of {args.steps} training steps:")
    print(f"  contiguous (NCHW)   {plain:.3f} s/step  (1500 steps: {1500 * plain / 60:.1f} min)")
    print(f"  channels-last       {last:.3f} s/step  (1500 steps: {1500 * last / 60:.1f} min)")
    print(f"  ratio {plain / last:.2f}x; max |logit difference| from the same weights {same_logits(args.size):.2e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
