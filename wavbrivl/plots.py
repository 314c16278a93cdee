"""PNG figures for evaluation reports (matplotlib, headless Agg backend).

Each function writes one file and returns its path, so a report can list what it produced.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)  # reports are written on servers without a display
    import matplotlib.pyplot as plt

    return plt


def confusion_matrix_png(confusion: Sequence[Sequence[int]], class_names: Sequence[str], path: str | Path) -> Path:
    """Row-normalised confusion matrix (truth on rows), so rare classes are as readable as common ones."""
    plt = _pyplot()
    cm = np.asarray(confusion, dtype=float)
    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    n = len(class_names)
    size = min(4 + 0.3 * n, 20)
    fig, ax = plt.subplots(figsize=(size, size))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), [c.replace("_", " ") for c in class_names], rotation=90, fontsize=max(5, 10 - n // 10))
    ax.set_yticks(range(n), [c.replace("_", " ") for c in class_names], fontsize=max(5, 10 - n // 10))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("zero-shot confusion (row-normalised)")
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def recall_at_k_png(ranks: dict[str, torch.Tensor], path: str | Path, max_k: int = 50) -> Path:
    """Recall@K for K = 1..max_k, one curve per retrieval direction."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    ks = np.arange(1, max_k + 1)
    for name, r in ranks.items():
        r = np.asarray(r)
        ax.plot(ks, [(r <= k).mean() for k in ks], label=name)
    ax.set_xscale("log")
    ax.set_xlabel("K")
    ax.set_ylabel("recall@K")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def embedding_map_png(
    audio: torch.Tensor, audio_labels: Sequence[str], images: torch.Tensor, image_labels: Sequence[str],
    path: str | Path, *, seed: int = 0, max_points: int = 1500,
) -> Path:
    """t-SNE of audio (dots) and image (crosses) embeddings together, coloured by label.

    Both modalities share one map: if alignment worked, a class's sounds sit on its pictures.
    """
    from sklearn.manifold import TSNE

    plt = _pyplot()
    rng = np.random.default_rng(seed)
    a_idx = rng.permutation(len(audio))[: max_points // 2]
    i_idx = rng.permutation(len(images))[: max_points // 2]
    x = torch.cat([audio[a_idx], images[i_idx]]).float().numpy()
    labels = [audio_labels[i] for i in a_idx] + [image_labels[i] for i in i_idx]
    if len(x) < 3:
        xy = np.zeros((len(x), 2))
    else:
        perplexity = float(max(1, min(30, (len(x) - 1) // 3)))  # t-SNE requires perplexity < number of points
        xy = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed, metric="cosine").fit_transform(x)
    classes = sorted(set(labels))
    cmap = plt.get_cmap("tab20", max(len(classes), 1))
    colour = {c: cmap(k % 20) for k, c in enumerate(classes)}
    fig, ax = plt.subplots(figsize=(7, 6))
    n_a = len(a_idx)
    ax.scatter(xy[:n_a, 0], xy[:n_a, 1], c=[colour[l] for l in labels[:n_a]], marker="o", s=14, label="audio")
    ax.scatter(xy[n_a:, 0], xy[n_a:, 1], c=[colour[l] for l in labels[n_a:]], marker="x", s=22, label="image")
    ax.set_title("audio (o) and image (x) embeddings, t-SNE, coloured by label")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def example_grid_png(
    sim: torch.Tensor, query_names: Sequence[str], positives: Sequence[set], image_paths: Sequence[Path],
    path: str | Path, *, n_queries: int = 6, top_k: int = 5, seed: int = 0,
) -> Path:
    """A few audio queries (rows) with their top images; green frame = correct, red = wrong."""
    from PIL import Image

    plt = _pyplot()
    rng = np.random.default_rng(seed)
    picks = rng.permutation(len(query_names))[:n_queries]
    k = min(top_k, sim.shape[1])
    fig, axes = plt.subplots(len(picks), k, figsize=(1.8 * k, 1.9 * len(picks)), squeeze=False)
    for row, q in enumerate(picks):
        scores, idx = sim[q].topk(k)
        for col, (s, j) in enumerate(zip(scores.tolist(), idx.tolist())):
            ax = axes[row][col]
            with Image.open(image_paths[j]) as im:
                ax.imshow(im.convert("RGB"))
            hit = image_paths[j] in positives[q]
            for spine in ax.spines.values():
                spine.set_edgecolor("green" if hit else "red")
                spine.set_linewidth(3)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"{s:.2f}", fontsize=8)
            if col == 0:
                ax.set_ylabel(query_names[q][:18], fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def generated_grid_png(examples: Sequence[tuple[str, "object"]], path: str | Path, tile: int = 96) -> Path:
    """Sound label -> generated picture, side by side (the shapes world's showcase figure)."""
    from PIL import Image, ImageDraw

    sheet = Image.new("RGB", (tile * len(examples), tile + 28), "white")
    draw = ImageDraw.Draw(sheet)
    for k, (label, img) in enumerate(examples):
        sheet.paste(img.resize((tile, tile), Image.NEAREST), (k * tile, 0))
        words = label.replace("a ", "", 1).split()
        draw.text((k * tile + 3, tile + 2), " ".join(words[:2]), fill="black")
        draw.text((k * tile + 3, tile + 14), " ".join(words[2:]), fill="black")
    sheet.save(path)
    return Path(path)


def sound_picture_sheet(entries: Sequence[tuple[str, str, "object"]], path: str | Path, tile: int = 128,
                        cols: int = 6) -> Path:
    """Sounds and the pictures painted from them, in rows of ``cols``: each picture enlarged smoothly to ``tile``
    pixels, with two lines under it (what the sound is; what the model made of it)."""
    from PIL import Image, ImageDraw

    import textwrap

    width = max(8, tile // 6)  # characters of the default font per line
    lines = [(textwrap.wrap(title, width)[:2], textwrap.wrap(subtitle, width)[:2]) for title, subtitle, _ in entries]
    rows = max(1, -(-len(entries) // cols))
    cell = tile + 6 + 13 * max((len(a) + len(b) for a, b in lines), default=2)
    sheet = Image.new("RGB", (tile * min(cols, len(entries) or 1), cell * rows), "white")
    draw = ImageDraw.Draw(sheet)
    for k, ((_, _, img), (title, subtitle)) in enumerate(zip(entries, lines)):
        x, y = (k % cols) * tile, (k // cols) * cell
        sheet.paste(img.convert("RGB").resize((tile, tile), Image.Resampling.LANCZOS), (x, y))
        for i, (line, colour) in enumerate([(t, "black") for t in title] + [(t, "#555555") for t in subtitle]):
            draw.text((x + 3, y + tile + 3 + 13 * i), line, fill=colour)
    sheet.save(path)
    return Path(path)


def sound_map_figure(points: np.ndarray, sound: np.ndarray, nearest: Sequence[int], labels: Sequence[str],
                     size: tuple[float, float] = (5.6, 4.2)):
    """The gallery map with a sound on it (a matplotlib ``Figure``): grey dots for the pictures, the nearest
    ones ringed and labelled (each label once), a star for the sound. No words besides the pictures' own labels,
    so the figure needs no translation; the page says what the marks mean.

    Built with the object API, not pyplot: nothing is registered globally, so a server that draws one per
    request keeps nothing once the figure is sent.
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, dpi=100)
    ax = fig.add_subplot()
    ax.scatter(points[:, 0], points[:, 1], s=9, c="#b8bcc6", linewidths=0, zorder=1)
    near = points[list(nearest)] if len(nearest) else np.zeros((0, 2))
    ax.scatter(near[:, 0], near[:, 1], s=46, facecolors="none", edgecolors="#4f46e5", linewidths=1.4, zorder=2)
    shown: set[str] = set()
    for i in nearest:
        if labels[i] and labels[i] not in shown:
            shown.add(labels[i])
            ax.annotate(labels[i], points[i], xytext=(6, 6), textcoords="offset points", fontsize=8, color="#312e81",
                        bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": "none", "alpha": 0.8}, zorder=4)
    ax.scatter([sound[0]], [sound[1]], marker="*", s=320, c="#ec4899", edgecolors="#111827", linewidths=0.8, zorder=5)
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_color("#e5e7eb")
    fig.tight_layout()
    return fig
