"""Peer audio encoders built from their own published code, with random weights (speed does not depend on them).

* LAION-CLAP's HTSAT-tiny: ``laion_clap/clap_module/htsat.py`` from the ``laion_clap`` 1.1.7 wheel and the
  ``torchlibrosa`` 0.1.0 wheel, downloaded from PyPI with ``pip download --no-deps`` into a cache folder and
  imported from there (installing laion_clap would pin old versions of half the stack). HTSAT needs only two
  small functions of the package's ``utils.py`` (whose imports pull h5py and more), which are loaded alone.
  torchlibrosa builds its filterbanks with librosa: ``pip install wavbrivl[bench]``.

Wav2CLIP's layout is part of wavbrivl itself (``wavbrivl.wav2clip``) and aisfx's network too (``arch="aisfx"``).
"""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import types
import zipfile
from pathlib import Path

CACHE = Path.home() / ".cache" / "wavbrivl-bench"
WHEELS = {"laion_clap": "1.1.7", "torchlibrosa": "0.1.0"}


def _unpacked(name: str, version: str) -> Path:
    folder = CACHE / f"{name}-{version}"
    if not folder.is_dir():
        CACHE.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", f"{name}=={version}", "-d", str(CACHE)],
                       check=True)
        wheel = next(CACHE.glob(f"{name}-{version}-*.whl"))
        with zipfile.ZipFile(wheel) as z:
            z.extractall(folder)
    return folder


def htsat_tiny():
    """``(model, projection, sample_rate)``: CLAP's HTSAT-tiny audio branch and its 768 -> 512 -> 512 projection."""
    import torch

    clap = _unpacked("laion_clap", WHEELS["laion_clap"]) / "laion_clap" / "clap_module"
    sys.path.insert(0, str(_unpacked("torchlibrosa", WHEELS["torchlibrosa"])))
    package = types.ModuleType("clap_module_bench")
    package.__path__ = [str(clap)]
    sys.modules[package.__name__] = package
    utils = types.ModuleType(f"{package.__name__}.utils")
    source = (clap / "utils.py").read_text()
    for fn in ("do_mixup", "interpolate"):
        start = source.index(f"def {fn}(")
        exec(compile("import torch\n" + source[start : source.index("\ndef ", start + 1)], str(clap / "utils.py"), "exec"),
             utils.__dict__)
    sys.modules[utils.__name__] = utils
    modules = {}
    for sub in ("feature_fusion", "htsat"):
        spec = importlib.util.spec_from_file_location(f"{package.__name__}.{sub}", clap / f"{sub}.py")
        modules[sub] = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = modules[sub]
        spec.loader.exec_module(modules[sub])
    config = types.SimpleNamespace(**json.loads((clap / "model_configs" / "HTSAT-tiny.json").read_text())["audio_cfg"])
    model = modules["htsat"].create_htsat_model(config, enable_fusion=False).eval()
    projection = torch.nn.Sequential(torch.nn.Linear(768, 512), torch.nn.ReLU(), torch.nn.Linear(512, 512)).eval()
    return model, projection, int(config.sample_rate)
