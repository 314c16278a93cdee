"""The aisfx audio network's published weights (Ma & Lerch, "Representation Learning for the Automatic
Indexing of Sound Effects Libraries", ISMIR 2022), read safely and converted to safetensors.

The PyPI package ``aisfx`` 0.1.2 ships its weights (``aisfx/models/checkpoint.pth``, CC-BY 4.0) but pins numpy
1.23 and librosa 0.9, so it is not installed: its wheel is only opened as a zip. The checkpoint is a pickle of
``(state_dict, dataset_info)``; it is read with ``torch.load(weights_only=True)`` after allow-listing the four
numpy types its metadata uses, so no pickled code can run. The network itself is
:class:`wavbrivl.encoder.AisfxTrunk` and its front end ``FrontEndConfig.aisfx()``.
"""
from __future__ import annotations

import zipfile
from pathlib import Path

import torch

LICENCE = "CC-BY-4.0"
ATTRIBUTION = ("aisfx network weights (c) 2022 A. B. Ma and A. Lerch, CC-BY 4.0: 'Representation Learning for the "
               "Automatic Indexing of Sound Effects Libraries', ISMIR 2022; from the PyPI package aisfx 0.1.2")
WHEEL_MEMBER = "aisfx/models/checkpoint.pth"
PREFIX = "embedding_net."


def _allow_numpy_metadata() -> None:
    """Allow-list numpy's scalar reconstructor under both names a pickle can give it: ``numpy.core`` (numpy 1.x,
    which wrote aisfx's checkpoint) and ``numpy._core`` (numpy 2), whichever numpy is installed."""
    import numpy

    try:
        from numpy._core.multiarray import scalar
    except ImportError:  # numpy 1.x: numpy._core is absent, or (1.26.1 on) a stub without multiarray
        from numpy.core.multiarray import scalar
    torch.serialization.add_safe_globals([
        (scalar, "numpy.core.multiarray.scalar"), (scalar, "numpy._core.multiarray.scalar"),
        numpy.dtype, numpy.dtypes.Int64DType, numpy.dtypes.Float64DType,
    ])


def read_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """The trunk's tensors (``conv_block1.conv1.weight`` ...) from ``checkpoint.pth`` or from the aisfx wheel."""
    path = Path(path)
    if path.suffix == ".whl":
        out = path.with_name(path.stem + "-checkpoint.pth")
        try:
            with zipfile.ZipFile(path) as wheel:
                out.write_bytes(wheel.read(WHEEL_MEMBER))
        except (zipfile.BadZipFile, KeyError) as exc:
            raise ValueError(f"{path}: not an aisfx wheel holding {WHEEL_MEMBER} ({exc})") from None
        path = out
    _allow_numpy_metadata()
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - truncated, foreign or unsafe pickles all mean "not this checkpoint"
        raise ValueError(f"{path}: cannot read as an aisfx checkpoint ({type(exc).__name__}: {exc})") from None
    if not (isinstance(obj, tuple) and len(obj) == 2 and isinstance(obj[0], dict)):
        raise ValueError(f"{path}: expected aisfx's (state_dict, dataset_info) tuple")
    trunk = {k[len(PREFIX):]: v for k, v in obj[0].items() if k.startswith(PREFIX)}
    if not trunk:
        raise ValueError(f"{path}: no {PREFIX}* tensors")
    return trunk


def load_into(encoder: torch.nn.Module, path: str | Path) -> None:
    """Put the published weights into an ``AudioEncoder(EncoderConfig.aisfx(...))``'s trunk (strictly)."""
    try:
        encoder.trunk.load_state_dict(read_checkpoint(path), strict=True)
    except RuntimeError as exc:
        raise ValueError(f"{path}: the weights do not fit the aisfx trunk ({exc})") from None
