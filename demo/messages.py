"""Everything the demo says to a person, keyed: page texts, status lines and the errors handlers raise.

English is here (:data:`EN`, :data:`ERRORS`); Japanese beside it in :mod:`demo.i18n`, with the same keys
(a test checks). Static page text reaches the browser through ``gr.I18n`` (:func:`page_translations`: the
browser's language picks the table). What a handler returns or raises is not translated by Gradio, so
handlers pick the language from the request's ``Accept-Language`` (:func:`language`) and call :func:`text` /
:func:`to_gradio`. Errors are keyed (:class:`DemoError`), never matched by their wording: the library's
``AudioError.reason`` maps to a key. Nothing a visitor sees names a server path (:func:`redact`).
"""
from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Any, Callable

import gradio as gr

from wavbrivl.audio import AudioError

from .i18n import JA, JA_ERRORS

FORMATS = "WAV, FLAC, OGG, MP3, M4A, WEBM"

#: The page's static texts (through gr.I18n; ``{fields}`` are filled in when the page is built).
PAGE: dict[str, str] = {
    "title": "# WavBriVL: what does the model hear?\n**{bundle_name}**",
    "intro": "Record or upload a sound (up to {max_s} s), or click an example: the model finds the pictures and captions "
             "it is closest to, scores your labels, and can paint what it hears.",
    "privacy": "🔒 Your recordings are not kept: each sound is deleted from the server as soon as it has been analysed.",
    "audio_label": "Your sound (up to {max_s} s)",
    "mic_help_title": "Microphone not working? (permission, https)",
    "mic_help": """\
**Microphone not working?**
* The browser only offers the microphone on **https://** pages or on **http://localhost / 127.0.0.1**. On another
  machine's address, open the app through `python app.py --share` (an https link), a Hugging Face Space, or a
  reverse proxy with TLS.
* If you clicked *Block*: click the lock (or camera) icon left of the address bar, set *Microphone* to *Allow*,
  and reload the page. On macOS also allow the browser in *System Settings → Privacy & Security → Microphone*.
* Pick the right input device in the dropdown under the recorder. No microphone at all? **Upload** a file
  instead (""" + FORMATS + """; up to the length limit shown above).
""",
    "examples_title": ("**Example sounds**: click one. ✓ its kind was heard in training; ✗ never heard (the model only saw "
                       "pictures of it)."),
    "k_label": "Results to show (k)",
    "gallery_label": "Nearest pictures (score · caption)",
    "captions_label": "Nearest captions",
    "labels_out_label": "Zero-shot labels",
    "labels_title": "Labels for zero-shot classification (edit, then press Classify)",
    "labels_placeholder": "one label per line, or comma-separated",
    "classify": "Classify",
    "map_label": "Where your sound landed",
    "map_help": "★ your sound · ◯ the nearest pictures, with their captions · grey dots: the rest of the gallery, "
                "laid out so that similar pictures sit together.",
    "generate_title": "Paint a picture from the sound",
    "prompt_label": "Optional text prompt",
    "prompt_placeholder": "e.g. a watercolour painting",
    "mix_label": "Mix: sound (0) ↔ text prompt (1)",
    "seed": "Seed",
    "steps": "Steps",
    "noise": "Noise level (unCLIP: more = looser)",
    "guidance": "Guidance (0 = the generator's default)",
    "generate_button": "Generate picture",
    "generated_label": "Generated picture",
    "generated_retrieval": "How the picture is made: the generator starts from the drawing in its training set "
                           "nearest your sound (retrieval) and repaints it toward the sound.",
    "about_title": "About this model",
    "about": "**{bundle_name}**\n\n{bundle_description}\n\n🔒 Your recordings are not kept: each sound is deleted from the "
             "server as soon as it has been analysed. Only its embedding (a list of numbers that cannot be played back) "
             "stays in memory for a while, so that the labels, the map and the picture can follow.",
}

#: What handlers return (in the request's language).
SAID: dict[str, str] = {
    "example": "{mark} {title}",
    "example_note": "{mark} {title}: {note}",
    "default_description": "An audio encoder trained into a frozen open_clip image–text space (WavBriVL): a sound is "
                           "compared with pictures and words by one cosine similarity.",
    "score": "score",
    "caption": "caption",
    "loading": "⏳ Loading: {stage}…",
    "failed": "❌ The model could not be loaded: {error}",
    "ready": "✅ Ready: {index} · {generator}.",
    "index_on": "search over {images} pictures and {captions} captions",
    "index_off": "⚠️ search is off: {reason}",
    "generator_on": "picture generation ready",
    "generator_off": "⚠️ picture generation is off: {reason}",
    "card_problem": "⚠️ The bundle's card (bundle.json) could not be read, so defaults are shown: {reason}",
    "real_on": "Real mode `{preset}`: pictures from {generator}.",
    "real_off": "⚠️ {notice}",
    "space": "Embedding space `{space}` ({dim}-d).",
    "search_note": "{images} pictures and {captions} captions from an index of {size} items ({ms} ms)",
    "labels_capped": "Only the first {n} labels are used.",
    "unsure": "🤔 **The model is unsure** (its best guess has only {prob}). Is it one of these?",
    "unsure_guess": "- {label} ({prob})",
    "generating": "generating",
    "stage_not started": "starting",
    "stage_loading the audio model": "loading the audio model",
    "stage_loading the gallery index": "loading the gallery index",
    "stage_loading the image generator": "loading the picture generator",
    "stage_warming up": "warming up",
    "stage_ready": "ready",
}
EN: dict[str, str] = {**PAGE, **SAID}

#: key -> (title, message); ``{name}`` and the other fields come from the error's details.
ERRORS: dict[str, tuple[str, str]] = {
    "silent": ("Cannot use this sound",
               "The sound is silent. Check that the right microphone is selected and not muted, then record again."),
    "empty": ("No audio",
              "{name} holds no audio. If you recorded, check that the microphone is on and record for at least half a second."),
    "undecodable": ("Unsupported file", "{name} is not an audio file this demo can read. Use " + FORMATS + " audio."),
    "too_long": ("Sound too long", "{name} is {seconds:.0f} s long; this demo takes sounds up to {limit:.0f} s. "
                 "Trim it (or record a short clip) and try again."),
    "non_finite": ("Bad audio", "{name} holds invalid samples (not a number or infinite); record or export it again."),
    "not_found": ("No audio", "{name}: the uploaded file is missing; upload it again."),
    "expired": ("Sound no longer here", "Sounds are deleted once analysed, and this one is no longer remembered. "
                "Record or upload it again."),
    "invalid": ("Bad audio", "{name} cannot be used: {detail}."),
    "no_labels": ("No labels", "Type at least one label (one per line or separated by commas)."),
    "no_sound": ("No audio", "Record or upload a sound first (or type a prompt and move the mix slider to text)."),
    "no_generator": ("No picture generator", "Picture generation is off: {reason}"),
    "still_loading": ("Still loading", "The model is still loading ({stage}); try again in a minute."),
    "not_loaded": ("Model not loaded", "The model could not be loaded: {error}"),
}

TABLES: dict[str, tuple[dict[str, str], dict[str, tuple[str, str]]]] = {"en": (EN, ERRORS), "ja": (JA, JA_ERRORS)}

# Runs in the browser on page load: warn when the page cannot ask for the microphone at all (in the browser's language).
SECURE_CONTEXT_JS = """
() => (window.isSecureContext && navigator.mediaDevices) ? "" :
  ((navigator.language || "").toLowerCase().startsWith("ja")
    ? "⚠️ このページは https:// でも localhost でもないため、ブラウザーがマイクを使わせません。ファイルをアップロードするか、" +
      "localhost、`--share`、または https でアプリを開いてください。"
    : "⚠️ This page is not on https:// or localhost, so the browser will not offer the microphone. " +
      "Upload a file, or open the app on localhost, with `--share`, or behind https.")
"""


def language(request: Any = None) -> str:
    """The visitor's language among ours, from the request's ``Accept-Language`` (by its q-values); English otherwise."""
    headers = getattr(request, "headers", None) or {}
    header = headers.get("accept-language", "") if hasattr(headers, "get") else ""
    ranked = []
    for i, part in enumerate(header.split(",")):
        tag, _, params = part.strip().partition(";")
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                q = 0.0
        ranked.append((-q, i, tag.strip().split("-")[0].lower()))
    return next((tag for _, _, tag in sorted(ranked) if tag in TABLES), "en")


def text(key: str, lang: str = "en", **fields: Any) -> str:
    """The text for ``key`` in ``lang`` (English if that table lacks it), with ``fields`` filled in."""
    table = TABLES.get(lang, TABLES["en"])[0]
    return table.get(key, EN[key]).format(**fields)


def stage(name: str, lang: str = "en") -> str:
    """A loading stage as the page shows it; a stage we have no words for is shown as the loader named it."""
    return text(f"stage_{name}", lang) if f"stage_{name}" in EN else name


class DemoError(Exception):
    """A problem to show a visitor: a key of :data:`ERRORS` and the fields its message needs."""

    def __init__(self, key: str, **details: Any) -> None:
        super().__init__(key)
        self.key, self.details = key, details


def from_audio_error(exc: AudioError) -> DemoError:
    """The library names the temporary upload path; a visitor needs the file's own name, or "The recording"."""
    name = "The recording" if exc.source.startswith("<") else Path(exc.source).name
    return DemoError(exc.reason, name=name, seconds=exc.seconds or 0.0, limit=exc.limit or 0.0, detail=exc.detail)


def to_gradio(err: DemoError, lang: str = "en") -> gr.Error:
    title, message = TABLES.get(lang, TABLES["en"])[1].get(err.key, ERRORS[err.key])
    details = {k: redact(v) if isinstance(v, str) else v for k, v in err.details.items()}
    if lang == "ja" and details.get("name") == "The recording":
        details["name"] = "録音"
    return gr.Error(message.format(**details), title=title)


_ABS_PATH = re.compile(r"(?<![\w.:/~-])/(?:[^\s/'\"()]+/)*([^\s/'\"()]+/[^\s/'\"(),;]+)")


def redact(message: str) -> str:
    """A message without server paths: every absolute path is cut to its last two parts ("shapes/bundle.json"),
    which still names the file and its bundle but not where the server keeps it."""
    return _ABS_PATH.sub(r"\1", message)


def page_translations(fields: dict[str, dict[str, Any]], extra: dict[str, dict[str, str]] | None = None) -> gr.I18n:
    """``gr.I18n`` for the page: every :data:`PAGE` key in each language, filled in with that language's
    ``fields[lang]``, plus ``extra[lang]`` keys already written per language (the bundle's example titles)."""
    tables = {}
    for lang in TABLES:
        table = {key: text(key, lang, **fields.get(lang, fields["en"])) for key in PAGE}
        table.update({key: redact(value) for key, value in (extra or {}).get(lang, {}).items()})
        tables[lang] = table
    return gr.I18n(**tables)


def visitor_errors(fn: Callable) -> Callable:
    """Problems a visitor can meet become readable ``gr.Error`` messages in their language; the app keeps serving."""
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        lang = next((language(a) for a in [*args, *kwargs.values()] if isinstance(a, gr.Request)), "en")
        try:
            return fn(*args, **kwargs)
        except AudioError as exc:
            raise to_gradio(from_audio_error(exc), lang) from None
        except DemoError as exc:
            raise to_gradio(exc, lang) from None
    return wrapper
