"""What the page says about the bundle and the service, in each language.

The static texts (``gr.I18n``: title with the bundle's display name, description, example list), the status
line and the embedding-space line. Everything comes from the bundle's card (``bundle.json``, in the
languages it provides) and :mod:`demo.messages`, never from a server path: a checkpoint without a card is
shown by its folder's name, and problems are shown with :func:`~demo.messages.redact` applied.
"""
from __future__ import annotations

from typing import Any

import gradio as gr

from wavbrivl.bundle import ExampleSound, localize

from .loading import PipelineLoader
from .messages import TABLES, page_translations, redact, stage, text


def example_files(loader: PipelineLoader) -> list[tuple[str, ExampleSound]]:
    """``(path, example)`` for the bundle's example sounds, in the card's order."""
    if loader.root is None:
        return []
    return [(str(loader.root / e.file), e) for e in loader.card.examples]


def example_title(loader: PipelineLoader, example: ExampleSound, lang: str = "en") -> str:
    """What an example is and whether its kind was heard in training (✓) or never (✗), with the card's note."""
    note = localize(example.note, lang)
    return text("example_note" if note else "example", lang, mark="✓" if example.heard else "✗",
                title=loader.card.example_title(example, lang), note=note)


def page_fields(loader: PipelineLoader, lang: str) -> dict[str, Any]:
    card = loader.card
    return {"bundle_name": card.display_name(lang), "max_s": f"{loader.config.max_seconds:.0f}",
            "bundle_description": localize(card.description, lang) or text("default_description", lang)}


def translations(loader: PipelineLoader) -> gr.I18n:
    """The page's ``gr.I18n``: ``launch(i18n=...)`` takes it, the browser's language picks the table."""
    examples = example_files(loader)
    return page_translations(
        {lang: page_fields(loader, lang) for lang in TABLES},
        {lang: {f"example_{i}": example_title(loader, e, lang) for i, (_, e) in enumerate(examples)} for lang in TABLES})


def status(loader: PipelineLoader, lang: str = "en") -> str:
    """One line (markdown): loading, failed with the reason, or ready with what is on and what is off."""
    if not loader.state.done.is_set():
        return text("loading", lang, stage=stage(loader.state.stage, lang))
    if loader.state.error or loader.pipeline is None:
        return text("failed", lang, error=redact(loader.state.error or "?"))
    p = loader.pipeline
    index = (text("index_on", lang, images=p.index.count("image"), captions=p.index.count("text")) if p.index is not None
             else text("index_off", lang, reason=redact(p.problems.get("index", "this bundle has no gallery index"))))
    generator = (text("generator_on", lang) if p.generator is not None
                 else text("generator_off", lang, reason=redact(p.problems.get("generator", "this bundle has no generator"))))
    lines = [text("ready", lang, index=index, generator=generator)]
    if loader.notice:  # real mode asked for but the offline bundle served: why (the one line the log has too)
        lines.append(text("real_off", lang, notice=redact(loader.notice)))
    elif loader.config.real:
        lines.append(text("real_on", lang, preset=loader.config.real,
                          generator=p.generator.source if p.generator is not None else "—"))
    if "card" in p.problems:
        lines.append(text("card_problem", lang, reason=redact(p.problems["card"])))
    return "\n\n".join(lines)


def space_line(loader: PipelineLoader, lang: str = "en") -> str:
    """The embedding space the bundle works in (for the "about" panel), once the model is loaded."""
    p = loader.pipeline
    return text("space", lang, space=p.backbone_id, dim=p.embed_dim) if p is not None else ""
