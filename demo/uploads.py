"""Visitors' sounds: embedded once, then deleted from the server; follow-up requests use the embedding.

Gradio keeps every upload and recording in its cache folder for the life of the server: for a stakeholder
demo that is people's voices kept without reason, and a disk that fills. A sound is needed only until it is
embedded, so the first handler that meets an upload embeds it and deletes the file (and its folder). The
page's later requests about the same upload (the labels after a search, another ``k``, a picture minutes
later) come back with the same path, which Gradio names after the file's content, so the embedding is kept
under that path (a bounded LRU of small vectors, never the audio) and handed to the pipeline instead.

Only files inside Gradio's upload folder are deleted, never a bundle's example sounds or their cached
copies (Gradio copies an example into the cache when it is shown; that copy is public data, and deleting it
while the browser loads it would break the player). One more copy is Gradio's own: an MCP client sends a
sound as a base64 ``data:`` URL, which Gradio writes to ``<upload folder>/<hash>/file.<ext>`` before
uploading it to itself; nothing tracks that file, so :meth:`VisitorSounds.sweep` removes such copies once
they are a minute old.
"""
from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any, Iterable

from gradio.processing_utils import hash_file
from gradio.utils import get_upload_folder

from wavbrivl.audio import AudioError
from wavbrivl.pipeline import SoundEmbedding, WavBriVLPipeline

from .messages import DemoError

log = logging.getLogger(__name__)
#: Gradio's name for a sound an MCP client sent inline (base64): ``<64 hex>/file.<audio extension>``.
INLINE_COPY_AGE = 60.0
_INLINE_COPY = re.compile(r"^[0-9a-f]{64}/file\.(wav|mp3|flac|ogg|oga|opus|m4a|aac|webm|mp4)$")


class VisitorSounds:
    """Embeds each upload once, deletes it, and remembers its embedding (or its error) by path."""

    def __init__(self, examples: Iterable[str | Path] = (), *, folder: str | Path | None = None, size: int = 256) -> None:
        self.folder = Path(folder or get_upload_folder()).resolve()
        # Gradio caches a file under a folder named by the file's content hash: the examples' copies live there.
        self.public = {hash_file(p) for p in examples if Path(p).is_file()}
        self.size = size
        self.deleted = 0
        self._known: OrderedDict[str, SoundEmbedding | AudioError] = OrderedDict()
        self._busy: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()
        self._sweeper: threading.Timer | None = None

    @property
    def handled(self) -> list[str]:
        """The uploads handled and deleted whose embeddings are still remembered (oldest first)."""
        with self._lock:
            return list(self._known)

    def is_upload(self, audio: Any) -> bool:
        """A visitor's upload or recording: a file path inside Gradio's upload folder that is not an example."""
        if not isinstance(audio, (str, os.PathLike)):
            return False
        path = Path(audio).resolve()
        return path.is_relative_to(self.folder) and path.parent.name not in self.public

    def resolve(self, pipeline: WavBriVLPipeline, audio: Any) -> Any:
        """What to hand the pipeline for ``audio``: the embedding for an upload (embedding and deleting it the
        first time), ``audio`` itself otherwise. Raises the upload's :class:`AudioError` every time it is asked
        about a bad one, and :class:`DemoError` ``"expired"`` for a deleted upload no longer remembered."""
        if not self.is_upload(audio):
            return audio
        key = str(Path(audio).resolve())
        if Path(key).name.startswith("file.") and self._sweeper is None:  # Gradio's name for an MCP client's sound
            self._sweeper = threading.Timer(INLINE_COPY_AGE + 1, self.sweep)
            self._sweeper.daemon = True
            self._sweeper.start()
        with self._lock:
            known = self._known.get(key)
            if known is None:
                busy = self._busy.setdefault(key, threading.Lock())
        if known is None:
            with busy:  # two requests about one new upload: the second waits for the first's embedding
                with self._lock:
                    known = self._known.get(key)
                if known is None:
                    known = self._embed_and_delete(pipeline, key)
        with self._lock:
            if key in self._known:
                self._known.move_to_end(key)
        if isinstance(known, AudioError):
            raise known.with_traceback(None)  # the remembered error, without piling up earlier tracebacks
        return known

    def _embed_and_delete(self, pipeline: WavBriVLPipeline, key: str) -> SoundEmbedding | AudioError:
        if not os.path.exists(key):
            with self._lock:
                self._busy.pop(key, None)
            raise DemoError("expired")
        known: SoundEmbedding | AudioError
        try:
            try:
                known = SoundEmbedding(pipeline.embed(key))
            except AudioError as exc:
                known = exc
            finally:
                self.delete(Path(key))
            with self._lock:
                self._known[key] = known
                while len(self._known) > self.size:
                    self._known.popitem(last=False)
        finally:
            with self._lock:
                self._busy.pop(key, None)
        return known

    def delete(self, path: Path) -> None:
        """Remove an upload and its (then empty) folder; never anything outside the upload folder."""
        if not Path(path).resolve().is_relative_to(self.folder):
            return
        try:
            path.unlink()
            self.deleted += 1
        except FileNotFoundError:
            return
        except OSError as exc:
            log.warning("could not delete an upload: %s", exc)
            return
        parent = path.parent
        if parent != self.folder and parent.is_relative_to(self.folder):
            try:
                parent.rmdir()
            except OSError:
                pass  # not empty (another file with the same content arrived): Gradio's own clean-up removes it

    def sweep(self, age: float = INLINE_COPY_AGE) -> int:
        """Delete Gradio's untracked inline copies of MCP clients' sounds older than ``age`` seconds; how many.
        Runs a minute after an MCP client's sound was handled (a timer), so the copy never outlives it long."""
        self._sweeper = None
        removed, now = 0, time.time()
        for path in self.folder.glob("*/file.*"):
            rel = path.relative_to(self.folder).as_posix()
            try:
                old = now - path.stat().st_mtime > age
            except OSError:
                continue
            if _INLINE_COPY.match(rel) and path.parent.name not in self.public and old:
                self.delete(path)
                removed += 1
        return removed
