"""A bundle's card (``bundle.json``): what a checkpoint folder *is*, as data.

A bundle is a checkpoint folder plus what a product shows beside it: a display name and a one-paragraph
description, default zero-shot labels and prompt templates, example sounds (each saying what it is and whether
its kind was heard in training), the licence and attribution of every part, and the generator settings it
was tuned for. The demo and the command line read these instead of knowing any particular world, so a new
bundle needs no code. A folder without a card (a plain checkpoint, a hub id) gets :meth:`BundleCard.default`.

Texts people read (name, description, example titles and notes) are either a string or a mapping from a
language code to a string (``{"en": ..., "ja": ...}``); :func:`localize` picks one.
"""
from __future__ import annotations

import json
import os
import warnings
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Union

from .hub import HubParts, generator_source
from .zeroshot import DEFAULT_TEMPLATES, check_templates

BUNDLE_FILE = "bundle.json"
BUNDLE_FORMAT = "wavbrivl-bundle"
BUNDLE_VERSION = 1

LocalizedText = Union[str, dict[str, str]]
#: Bundle folders under ``assets/`` that were renamed: the old name -> the new one. The old path still loads (with a
#: FutureWarning naming the new one) for one release after the rename, then its entry goes.
RENAMED_BUNDLES = {"starter": "shapes"}

#: Labels offered when a checkpoint has no card: everyday sounds, so the zero-shot chart means something.
GENERIC_LABELS = (
    "a dog barking", "rain falling", "a person speaking", "music playing", "a car engine",
    "birds singing", "people clapping", "a siren", "footsteps", "water running",
)


def localize(text: LocalizedText | None, language: str = "en", fallback: str | None = None) -> str:
    """The text in ``language`` ("ja", "ja-JP" ...), else English, else ``fallback``, else any language given."""
    if not text:
        return fallback or ""
    if isinstance(text, str):
        return text
    base = language.split("-")[0].lower()
    for key in (language, base, "en"):
        if text.get(key):
            return text[key]
    return fallback or next((v for v in text.values() if v), "")


class BundleError(ValueError):
    """A ``bundle.json`` that cannot be used; the message names the file and the field."""


@dataclass
class ExampleSound:
    """An example a visitor can click: ``file`` is relative to the bundle folder."""

    file: str
    label: str  # what the sound is, in the bundle's label vocabulary
    heard: bool  # whether sounds of its kind were heard in training (False: pictures and captions only)
    title: LocalizedText = ""  # how to show it (default: the label)
    note: LocalizedText = ""  # e.g. an honest "known miss: heard as a cat"


@dataclass
class BundlePart:
    """One component (or data source) of the bundle, with the licence it is under and whom to credit."""

    name: str
    licence: str
    attribution: str
    files: list[str] = field(default_factory=list)  # paths inside the bundle; empty for training data
    source: str = ""


@dataclass
class GeneratorSettings:
    """The generation defaults the bundle was tuned for (None: the generator's own default)."""

    steps: int | None = None
    guidance: float | None = None
    noise_level: int = 0
    seed: int = 0
    # The generator starts each picture from the training drawing nearest the sound (retrieval-augmented): the
    # page says so beside the picture, since the drawing's shape is retrieved, not invented.
    retrieval: bool = False


@dataclass
class Calibration:
    """How far the zero-shot probabilities can be trusted, fitted by the build (see :mod:`wavbrivl.calibration`).

    ``logit_scale`` multiplies the cosine scores before the softmax; None keeps the backbone's own (what a
    card without this block, written before calibration existed, always meant). ``unsure_below``: when the top
    probability is lower, the page says the model is unsure and offers its first few guesses instead of a
    winner. ``fitted_on`` says on what the scale was fitted (clips, labels, figures), for people.
    """

    logit_scale: float | None = None
    unsure_below: float = 0.4
    fitted_on: str = ""


@dataclass
class BundleCard:
    name: LocalizedText
    description: LocalizedText = ""
    labels: list[str] = field(default_factory=lambda: list(GENERIC_LABELS))
    templates: list[str] = field(default_factory=lambda: list(DEFAULT_TEMPLATES))
    examples: list[ExampleSound] = field(default_factory=list)
    parts: list[BundlePart] = field(default_factory=list)
    generator: GeneratorSettings = field(default_factory=GeneratorSettings)
    calibration: Calibration = field(default_factory=Calibration)
    hub: HubParts | None = None  # parts named on the Hugging Face Hub, resolved at run time (wavbrivl.hub)
    format: str = BUNDLE_FORMAT
    format_version: int = BUNDLE_VERSION

    @classmethod
    def default(cls, name: str, folder: Path | None = None) -> "BundleCard":
        """A card for a checkpoint that has none: generic labels and templates, any ``examples/*.wav``."""
        examples = []
        if folder is not None and (folder / "examples").is_dir():
            examples = [ExampleSound(f"examples/{p.name}", label=p.stem.replace("_", " "), heard=True)
                        for p in sorted((folder / "examples").glob("*.wav"))[:24]]
        return cls(name=name, examples=examples)

    # ------------------------------------------------------------------ files
    @classmethod
    def load(cls, folder: str | Path) -> "BundleCard":
        """Read and check ``folder/bundle.json``; problems name the file and the field."""
        path = Path(folder) / BUNDLE_FILE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise BundleError(f"{path}: not valid JSON ({exc})") from None
        return cls.from_dict(data, source=str(path), folder=Path(folder))

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = BUNDLE_FILE, folder: Path | None = None) -> "BundleCard":
        if not isinstance(data, dict):
            raise BundleError(f"{source}: expected a JSON object")
        if data.get("format") != BUNDLE_FORMAT or data.get("format_version") != BUNDLE_VERSION:
            raise BundleError(f"{source}: not a {BUNDLE_FORMAT} v{BUNDLE_VERSION} card "
                              f"(format {data.get('format')!r}, version {data.get('format_version')!r})")
        if not data.get("name"):
            raise BundleError(f"{source}: the field 'name' is missing or empty")
        card = cls(
            name=data["name"], description=data.get("description", ""),
            labels=[str(x) for x in data.get("labels") or GENERIC_LABELS],
            templates=[str(x) for x in data.get("templates") or DEFAULT_TEMPLATES],
            examples=[_entry(ExampleSound, e, f"{source}: examples[{i}]") for i, e in enumerate(data.get("examples", []))],
            parts=[_entry(BundlePart, p, f"{source}: parts[{i}]") for i, p in enumerate(data.get("parts", []))],
            generator=_entry(GeneratorSettings, data.get("generator", {}), f"{source}: generator"),
            calibration=_entry(Calibration, data.get("calibration", {}), f"{source}: calibration"),
            hub=_hub_parts(data["hub"], f"{source}: hub") if data.get("hub") else None,
        )
        scale, unsure = card.calibration.logit_scale, card.calibration.unsure_below
        if not (scale is None or (isinstance(scale, (int, float)) and scale > 0)) or not (
                isinstance(unsure, (int, float)) and 0 <= unsure <= 1):
            raise BundleError(f"{source}: 'calibration' needs a positive logit_scale (or null) and unsure_below in [0, 1]")
        try:
            check_templates(card.templates)
        except ValueError as exc:
            raise BundleError(f"{source}: 'templates': {exc}") from None
        if folder is not None:
            missing = [e.file for e in card.examples if not (folder / e.file).is_file()]
            if missing:
                raise BundleError(f"{source}: example file(s) not in the bundle: {', '.join(missing[:5])}")
        return card

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if self.hub is None:
            data.pop("hub")
        else:
            data["hub"] = self.hub.to_dict()
        return {"format": data.pop("format"), "format_version": data.pop("format_version"), **data}

    def save(self, folder: str | Path) -> Path:
        path = Path(folder) / BUNDLE_FILE
        path.write_text(json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        return path

    # ------------------------------------------------------------------ shown text
    def display_name(self, language: str = "en") -> str:
        return localize(self.name, language)

    def example_title(self, example: ExampleSound, language: str = "en") -> str:
        return localize(example.title, language, fallback=example.label)


def _entry(cls: type, data: Any, where: str) -> Any:
    """One entry of the card as ``cls``; a missing or unknown field is named, with where it is."""
    if not isinstance(data, dict):
        raise BundleError(f"{where}: expected a JSON object, not {type(data).__name__}")
    names = {f.name for f in fields(cls)}
    missing = [f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING and f.name not in data]
    unknown = sorted(set(data) - names)
    if missing:
        raise BundleError(f"{where} lacks the field(s) {', '.join(repr(m) for m in missing)}")
    if unknown:
        raise BundleError(f"{where} has unknown field(s) {', '.join(repr(u) for u in unknown)}")
    return cls(**data)


def _hub_parts(data: Any, where: str) -> HubParts:
    """The card's ``hub`` section; every generator entry is checked now (a known name or a complete source)."""
    parts = _entry(HubParts, data, where)
    for i, entry in enumerate(parts.generators):
        try:
            generator_source(entry)
        except ValueError as exc:
            raise BundleError(f"{where}.generators[{i}]: {exc}") from None
    return parts


def current_bundle_path(path: str | os.PathLike) -> Path:
    """``path``, or the bundle's new folder when ``path`` names a renamed one (``assets/starter`` ->
    ``assets/shapes``, with a FutureWarning): scripts and commands written before the rename keep working."""
    path = Path(path)
    new_name = RENAMED_BUNDLES.get(path.name)
    if new_name is None or path.parent.name != "assets" or path.exists():
        return path
    moved = path.with_name(new_name)
    if not (moved / "config.json").is_file():
        return path
    warnings.warn(f"{path} is now {moved}: the old path is read until the next release, use the new one",
                  FutureWarning, stacklevel=4)
    return moved
