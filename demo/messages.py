"""Everything the demo says to a person: page texts and the error messages handlers raise.

Errors are keyed (:class:`DemoError`), never matched by their wording: the library's ``AudioError.reason``
maps to a key here, and :func:`to_gradio` turns a key into the ``gr.Error`` a visitor sees.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import gradio as gr

from wavbrivl.audio import AudioError

TITLE = "WavBriVL: what does the model hear?"
FORMATS = "WAV, FLAC, OGG, MP3, M4A or WEBM"

MIC_HELP = """\
**Microphone not working?**
* The browser only offers the microphone on **https://** pages or on **http://localhost / 127.0.0.1**. On another
  machine's address, open the app through `python app.py --share` (an https link), a Hugging Face Space, or a
  reverse proxy with TLS.
* If you clicked *Block*: click the lock (or camera) icon left of the address bar, set *Microphone* to *Allow*,
  and reload the page. On macOS also allow the browser in *System Settings → Privacy & Security → Microphone*.
* Pick the right input device in the dropdown under the recorder. No microphone at all? **Upload** a file
  instead (""" + FORMATS + """; up to the length limit shown above).
"""

# Runs in the browser on page load: warn when the page cannot ask for the microphone at all.
SECURE_CONTEXT_JS = """
() => (window.isSecureContext && navigator.mediaDevices)
  ? ""
  : "⚠️ This page is not on https:// or localhost, so the browser will not offer the microphone. " +
    "Upload a file, or open the app on localhost, with `--share`, or behind https."
"""

#: key -> (title, message); ``{name}`` and the other fields come from the error's details.
ERRORS: dict[str, tuple[str, str]] = {
    "silent": ("Cannot use this sound", "The sound is silent. Check that the right microphone is selected and not muted, then record again."),
    "empty": ("No audio", "{name} holds no audio. If you recorded, check that the microphone is on and record for at least half a second."),
    "undecodable": ("Unsupported file", "{name} is not an audio file this demo can read. Use " + FORMATS + " audio."),
    "too_long": ("Sound too long", "{name} is {seconds:.0f} s long; this demo takes sounds up to {limit:.0f} s. "
                 "Trim it (or record a short clip) and try again."),
    "non_finite": ("Bad audio", "{name} holds invalid samples (not a number or infinite); record or export it again."),
    "not_found": ("No audio", "{name}: the uploaded file is missing; upload it again."),
    "invalid": ("Bad audio", "{name} cannot be used: {detail}."),
    "no_labels": ("No labels", "Type at least one label (one per line or separated by commas)."),
    "no_sound": ("No audio", "Record or upload a sound first (or type a prompt and move the mix slider to text)."),
    "no_generator": ("No image generator", "Image generation is off: {reason}"),
    "still_loading": ("Still loading", "The model is still loading ({stage}); try again in a minute."),
    "not_loaded": ("Model not loaded", "The model could not be loaded: {error}"),
}


class DemoError(Exception):
    """A problem to show a visitor: a key of :data:`ERRORS` and the fields its message needs."""

    def __init__(self, key: str, **details: Any) -> None:
        super().__init__(key)
        self.key, self.details = key, details


def from_audio_error(exc: AudioError) -> DemoError:
    """The library names the temporary upload path; a visitor needs the file's own name, or "The recording"."""
    name = "The recording" if exc.source.startswith("<") else Path(exc.source).name
    return DemoError(exc.reason, name=name, seconds=exc.seconds or 0.0, limit=exc.limit or 0.0, detail=exc.detail)


def to_gradio(err: DemoError) -> gr.Error:
    title, text = ERRORS[err.key]
    return gr.Error(text.format(**err.details), title=title)
