"""``wavbrivl embed`` and ``python -m wavbrivl``."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np

from wavbrivl import WavBriVL
from wavbrivl.cli import main

from .conftest import tone, write_wav


def test_embed_writes_embeddings_and_skips_bad_files(tmp_path, tiny_checkpoint, capsys):
    a = write_wav(tmp_path / "a.wav", tone(440, 1.0))
    b = write_wav(tmp_path / "b.flac", tone(880, 3.0))
    bad = tmp_path / "c.wav"
    bad.write_text("text")
    out = tmp_path / "emb.npy"
    code = main(["embed", str(a), str(bad), str(b), "--checkpoint", str(tiny_checkpoint), "--out", str(out)])
    assert code == 0
    emb = np.load(out)
    assert emb.shape == (2, 32)
    sidecar = json.loads((tmp_path / "emb.files.json").read_text())
    assert sidecar["files"] == [str(a), str(b)] and sidecar["backbone_id"] == "wavbrivl-tiny-clip/random-seed0"
    expected = WavBriVL.from_pretrained(tiny_checkpoint).embed_audio([a, b]).numpy()
    np.testing.assert_allclose(emb, expected, atol=1e-6)
    err = capsys.readouterr().err
    assert "c.wav" in err and "embedded 2 of 3 files; 1 skipped" in err


def test_python_dash_m_is_the_same_command(tmp_path):
    a = write_wav(tmp_path / "a.wav", tone(440, 1.0))
    proc = subprocess.run(
        [sys.executable, "-m", "wavbrivl", "embed", str(a), "--preset", "tiny"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(str(a))
    proc = subprocess.run([sys.executable, "-m", "wavbrivl", "embed", "--preset", "tiny", str(tmp_path / "none.wav")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "none.wav: file not found" in proc.stderr
