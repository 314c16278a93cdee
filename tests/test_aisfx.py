"""The aisfx network: its front end, its trunk, and reading its published checkpoint without unpickling code."""
from __future__ import annotations

import io
import pickle
import re
import zipfile

import numpy as np
import pytest
import torch

from wavbrivl import aisfx
from wavbrivl.audio import AudioFrontEnd, FrontEndConfig, unit_sum_mel_bands
from wavbrivl.encoder import AudioEncoder, EncoderConfig

from .conftest import tone


def fake_checkpoint(path, seed: int = 0):
    """A checkpoint laid out as aisfx's: a pickled (state_dict, dataset_info) with numpy scalars in the info."""
    torch.manual_seed(seed)
    trunk = AudioEncoder(EncoderConfig.aisfx(16)).trunk.state_dict()
    state = {f"embedding_net.{k}": v for k, v in trunk.items()} | {"fc.weight": torch.zeros(3, 512)}
    torch.save((state, {"sfx_library": {"n_classes": np.int64(3), "mean": np.float64(0.5)}}), path)
    return trunk


def test_front_end_is_aisfx_s():
    cfg = FrontEndConfig.aisfx()
    assert cfg.window_samples == 101376 and cfg.sample_rate == 44100
    bands = unit_sum_mel_bands(cfg)
    assert bands.shape == (1025, 96) and torch.allclose(bands.sum(0), torch.ones(96), atol=1e-5)
    fe = AudioFrontEnd(cfg)
    silence = fe(torch.zeros(1, cfg.window_samples))
    assert silence.shape == (1, 1, 96, 100) and silence.abs().max() == 0  # zero padding reads as silence
    feats = fe(torch.from_numpy(tone(1000, cfg.window_seconds, sr=44100))[None])[0, 0]
    centres = torch.argmax(bands, dim=0).float() * 44100 / 2048
    assert abs(float(centres[feats.mean(1).argmax()]) - 1000) < 120  # the 1 kHz band is the loudest
    quiet = fe(torch.from_numpy(tone(1000, cfg.window_seconds, sr=44100, amp=0.05))[None])
    assert quiet.mean() < feats.mean()  # no per-clip normalisation: level is heard, as aisfx was trained


def test_published_weights_load_into_the_trunk(tmp_path):
    trunk = fake_checkpoint(tmp_path / "checkpoint.pth")
    wheel = tmp_path / "aisfx-0.1.2-py2.py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.write(tmp_path / "checkpoint.pth", aisfx.WHEEL_MEMBER)
    for source in (tmp_path / "checkpoint.pth", wheel):
        encoder = AudioEncoder(EncoderConfig.aisfx(16))
        aisfx.load_into(encoder, source)
        for k, v in trunk.items():
            assert torch.equal(encoder.trunk.state_dict()[k], v), k
    x = AudioFrontEnd(FrontEndConfig.aisfx())(torch.randn(2, FrontEndConfig.aisfx().window_samples) * 0.1)
    assert encoder.eval()(x).shape == (2, 16) and encoder.trunk(x).shape == (2, 512)


def test_unsafe_or_foreign_files_are_refused(tmp_path):
    class Payload:
        def __reduce__(self):
            return (print, ("code ran",))

    evil = tmp_path / "evil.pth"
    evil.write_bytes(pickle.dumps((Payload(), {})))
    with pytest.raises(ValueError, match="evil.pth: cannot read as an aisfx checkpoint"):
        aisfx.read_checkpoint(evil)
    torch.save(({"other.weight": torch.zeros(1)}, {}), tmp_path / "other.pth")
    with pytest.raises(ValueError, match="no embedding_net"):
        aisfx.read_checkpoint(tmp_path / "other.pth")
    (tmp_path / "bad.whl").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not an aisfx wheel"):
        aisfx.read_checkpoint(tmp_path / "bad.whl")
    wrong = {f"embedding_net.{k}": v for k, v in AudioEncoder(EncoderConfig.aisfx(16)).trunk.state_dict().items()
             if "conv_block4" not in k}
    torch.save((wrong, {}), tmp_path / "partial.pth")
    with pytest.raises(ValueError, match="do not fit the aisfx trunk"):
        aisfx.load_into(AudioEncoder(EncoderConfig.aisfx(16)), tmp_path / "partial.pth")


@pytest.mark.parametrize("module", ["numpy.core.multiarray", "numpy._core.multiarray"])
def test_checkpoint_metadata_from_either_numpy_reads(tmp_path, module):
    """aisfx's checkpoint was pickled by numpy 1.x (its scalars name ``numpy.core.multiarray.scalar``); numpy 2
    names the same reconstructor ``numpy._core.multiarray.scalar``. Both must read on the installed numpy."""
    trunk = AudioEncoder(EncoderConfig.aisfx(16)).trunk.state_dict()
    state = {f"embedding_net.{k}": v for k, v in trunk.items()}
    buf = io.BytesIO()
    torch.save((state, {"n_classes": np.int64(3), "mean": np.float64(0.5)}), buf, _use_new_zipfile_serialization=False)
    written = re.sub(rb"numpy\.(_?core)\.multiarray\nscalar\n", module.encode() + b"\nscalar\n", buf.getvalue())
    other = "numpy._core.multiarray" if module == "numpy.core.multiarray" else "numpy.core.multiarray"
    assert module.encode() + b"\nscalar\n" in written and other.encode() + b"\nscalar\n" not in written
    (tmp_path / "checkpoint.pth").write_bytes(written)
    read = aisfx.read_checkpoint(tmp_path / "checkpoint.pth")
    assert read.keys() == trunk.keys() and all(torch.equal(read[k], v) for k, v in trunk.items())
