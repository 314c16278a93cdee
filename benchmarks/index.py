"""Gallery search latency: exact (chunked matrix product) vs FAISS HNSW, against the memory-bandwidth bound.

For synthetic indexes of random unit vectors it prints top-10 query latency (median, p95), FAISS build
time and recall@10 against exact, and the resident memory of the stored embeddings. The bound for an
exact scan is bytes scanned / measured copy bandwidth (a large numpy copy, read + write counted).

    python benchmarks/index.py                       # 10k, 100k, 1M rows; dims 512 and 1024 (a few minutes)
    python benchmarks/index.py --sizes 10000 100000 --dims 512 --faiss-max 100000
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from wavbrivl.index import build_faiss, exact_topk


def copy_bandwidth(mb: int = 512) -> float:
    """Bytes per second of a large array copy (read + write)."""
    src = np.ones(mb * 2**20 // 4, np.float32)
    dst = np.empty_like(src)
    best = float("inf")
    for _ in range(5):
        t = time.perf_counter()
        np.copyto(dst, src)
        best = min(best, time.perf_counter() - t)
    return 2 * src.nbytes / best


def timed(fn, repeats: int) -> tuple[float, float]:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times)), float(np.percentile(times, 95))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--dims", type=int, nargs="+", default=[512, 1024])
    ap.add_argument("--dtypes", nargs="+", default=["float32", "float16"])
    ap.add_argument("--faiss-max", type=int, default=100_000,
                    help="largest size to build FAISS for (HNSW builds are slow on 2 cores)")
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--data", choices=["random", "clustered"], default="clustered",
                    help="random unit vectors (worst case for approximate search) or 2000 clusters (like real embeddings)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    bw = copy_bandwidth()
    print(f"data: {args.data} unit vectors")
    print(f"memory copy bandwidth: {bw / 1e9:.1f} GB/s (read+write)")
    print(f"{'rows':>9} {'dim':>5} {'dtype':>8} {'MB':>7} {'exact med':>10} {'p95':>8} {'bound':>8} {'ratio':>6} "
          f"{'faiss med':>10} {'p95':>8} {'build':>7} {'recall':>7}")
    rng = np.random.default_rng(0)
    for dim in args.dims:
        for n in args.sizes:
            if args.data == "random":
                base = rng.standard_normal((n, dim), dtype=np.float32)
                queries = rng.standard_normal((args.repeats, dim), dtype=np.float32)
            else:
                centres = rng.standard_normal((2000, dim), dtype=np.float32)
                base = centres[rng.integers(0, 2000, n)] + 0.6 * rng.standard_normal((n, dim), dtype=np.float32)
                queries = (centres[rng.integers(0, 2000, args.repeats)]
                           + 0.6 * rng.standard_normal((args.repeats, dim), dtype=np.float32))
            base /= np.linalg.norm(base, axis=1, keepdims=True)
            queries /= np.linalg.norm(queries, axis=1, keepdims=True)
            faiss_cols = None
            for dtype in args.dtypes:
                matrix = torch.from_numpy(base.astype(dtype))
                it = iter(range(10**9))
                med, p95 = timed(
                    lambda m=matrix, q=queries, it=it: exact_topk(m, torch.from_numpy(q[next(it) % args.repeats][None]), 10),
                    args.repeats)
                bound = matrix.numel() * matrix.element_size() / (bw / 2)  # one read pass
                if faiss_cols is None and n <= args.faiss_max:
                    t = time.perf_counter()
                    index = build_faiss(base)
                    build_s = time.perf_counter() - t
                    it2 = iter(range(10**9))
                    fmed, fp95 = timed(lambda ix=index, q=queries, it=it2: ix.search(q[next(it) % args.repeats][None], 10),
                                       args.repeats)
                    _, approx = index.search(queries, 10)
                    _, exact = exact_topk(torch.from_numpy(base), torch.from_numpy(queries), 10)
                    recall = np.mean([len(set(a) & set(e)) / 10 for a, e in zip(approx.tolist(), exact.tolist())])
                    faiss_cols = f"{fmed * 1e3:8.2f}ms {fp95 * 1e3:6.2f}ms {build_s:6.1f}s {recall:7.3f}"
                mb = matrix.numel() * matrix.element_size() / 2**20
                print(f"{n:9d} {dim:5d} {dtype:>8} {mb:7.0f} {med * 1e3:8.2f}ms {p95 * 1e3:6.2f}ms "
                      f"{bound * 1e3:6.2f}ms {med / bound:6.2f} " + (faiss_cols or f"{'-':>10} {'-':>8} {'-':>7} {'-':>7}"))
                del matrix


if __name__ == "__main__":
    main()
