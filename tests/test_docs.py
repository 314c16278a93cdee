"""The README and the docs are run, so their commands cannot rot.

Every fenced ``bash`` or ``python`` block in the README, ``docs/*.md`` and the worlds' READMEs carries a marker
on the line before its fence (an HTML comment, invisible on GitHub and on the Hub):

* ``<!-- runnable -->``: run here, in a scratch folder (below), and must exit with status 0. Clauses after ``;``:
  ``slow`` (marked slow: over ~20 s here), ``prints: TEXT`` (its output must contain TEXT), ``creates: PATH``
  (that file must exist afterwards).
* ``<!-- not-run: REASON -->``: not run (it needs the network, a GPU, a long build, or serves until stopped), with
  the reason in the page itself. A test file or script the reason names must exist.

The scratch folder has ``assets/`` and ``benchmarks/`` of this checkout (linked, read-only by convention) and a few
small inputs the docs use as placeholders for the reader's own: ``data/manifest.csv`` (56 rows of the everyday
bundle's training pairs: train, val and test), ``my_sounds/`` (a folder per class of its held-out recordings),
``photos/``, ``more_photos/`` and ``captions.txt`` (drawings and captions of its gallery).
"""
from __future__ import annotations

import csv
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EVERYDAY = ROOT / "assets" / "everyday"
DOCS = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md"), *(ROOT / "wavbrivl" / "worlds").glob("*/README.md")])
CHECKED_LANGUAGES = {"bash", "sh", "shell", "console", "python", "py"}
FENCE = re.compile(r"^(```+)\s*([\w+-]*)[^\n]*$")
MARKER = re.compile(r"^<!--\s*(runnable|not-run)\b(.*?)-->\s*$")
README_BUDGET = 200  # lines after the Space front matter
SCREENSHOT = ROOT / "docs" / "screenshot.png"  # made by tests/test_browser.py
SCREENSHOT_WIDTH = 1100
SCREENSHOT_BYTES = 250_000


@dataclass
class Block:
    doc: Path
    line: int  # of the opening fence, 1-based
    language: str
    code: str
    marker: str | None  # "runnable", "not-run" or None
    clauses: dict[str, str] = field(default_factory=dict)  # a runnable block's: slow, prints, creates
    reason: str = ""  # a not-run block's

    @property
    def name(self) -> str:
        return f"{self.doc.relative_to(ROOT)}:{self.line}"


def parse_blocks(doc: Path) -> list[Block]:
    """The fenced blocks of a Markdown file, each with the marker comment on the nearest non-blank line above it."""
    lines = doc.read_text().splitlines()
    blocks, i = [], 0
    while i < len(lines):
        fence = FENCE.match(lines[i])
        if not fence:
            i += 1
            continue
        end = next((j for j in range(i + 1, len(lines)) if lines[j].startswith(fence.group(1))
                    and not lines[j].strip("`").strip()), len(lines))
        above = next((lines[j] for j in range(i - 1, -1, -1) if lines[j].strip()), "")
        marker = MARKER.match(above.strip())
        kind, rest = (marker.group(1), marker.group(2).strip()) if marker else (None, "")
        clauses = {}
        if kind == "runnable":
            for part in filter(None, (p.strip() for p in rest.split(";"))):
                key, _, value = part.partition(":")
                clauses[key.strip()] = value.strip()
        blocks.append(Block(doc, i + 1, fence.group(2).lower(), "\n".join(lines[i + 1:end]), kind, clauses,
                            rest.lstrip(":").strip() if kind == "not-run" else ""))
        i = end + 1
    return blocks


ALL_BLOCKS = [b for doc in DOCS for b in parse_blocks(doc) if b.language in CHECKED_LANGUAGES]
RUNNABLE = [b for b in ALL_BLOCKS if b.marker == "runnable"]


def test_every_command_block_is_run_or_says_why_not():
    unmarked = [b.name for b in ALL_BLOCKS if b.marker is None]
    assert unmarked == [], "mark each block <!-- runnable --> or <!-- not-run: REASON --> on the line above its fence"
    for b in ALL_BLOCKS:
        if b.marker == "not-run":
            assert len(b.reason.split()) >= 3, f"{b.name}: say why it is not run"
            for cited in re.findall(r"(?:tests|benchmarks|\.ci)/[\w./-]+\w", b.reason):
                assert (ROOT / cited).exists(), f"{b.name}: the reason cites {cited}, which does not exist"
    assert [b.name for b in RUNNABLE if not b.clauses.keys() <= {"slow", "prints", "creates"}] == []
    assert len(RUNNABLE) >= 10  # the parser found the runnable blocks (a broken marker would silently drop them)


def test_the_readme_is_a_front_door():
    text = (ROOT / "README.md").read_text()
    front, body = text.split("\n---\n", 1)
    assert front.startswith("---\ntitle:") and "app_file: app.py" in front  # the Hugging Face Space front matter
    assert len(body.strip("\n").splitlines()) <= README_BUDGET
    title, first = body.strip("\n").splitlines()[0], parse_blocks(ROOT / "README.md")[0]
    assert title == "# wavbrivl"
    assert "python app.py" in first.code and "python -m pytest" in first.code  # the two commands come first
    assert "docs/screenshot.png" in body


def check_screenshot(path: Path) -> None:
    """A PNG of the page at the width the browser test uses, a full page tall, small enough for a README."""
    from PIL import Image

    assert path.stat().st_size <= SCREENSHOT_BYTES, f"{path}: {path.stat().st_size} bytes"
    with Image.open(path) as image:
        assert image.format == "PNG" and image.width == SCREENSHOT_WIDTH and image.height >= 900, (image.format, image.size)
        image.verify()


def test_the_committed_screenshot_is_a_small_picture_of_the_page():
    check_screenshot(SCREENSHOT)


def test_ci_runs_the_readmes_test_command():
    """The README's second command is what .ci/run runs (with the linter in between)."""
    install, test = parse_blocks(ROOT / "README.md")[0].code.splitlines()[1].split("#")[0].split("&&")
    ci = (ROOT / ".ci" / "run").read_text()
    assert install.strip() in ci and f"&& {test.strip()}\n" in ci


def test_every_training_option_is_documented():
    from dataclasses import fields

    from wavbrivl.train import TrainConfig

    text = (ROOT / "docs" / "TRAINING.md").read_text()
    missing = [f.name for f in fields(TrainConfig) if f"`--{f.name.replace('_', '-')}`" not in text]
    assert missing == []


def test_relative_links_resolve():
    """Every relative link and image in the docs points at a file or folder of the checkout, and every #anchor
    at a heading of the page it names."""
    broken = []
    for doc in DOCS:
        for target in re.findall(r"\]\(([^)\s]+)\)", doc.read_text()):
            if re.match(r"[a-z]+:", target):
                continue
            path, _, anchor = target.partition("#")
            file = (doc.parent / path).resolve() if path else doc
            if not file.exists():
                broken.append(f"{doc.relative_to(ROOT)}: {target}")
            elif anchor and file.suffix == ".md" and file.exists() and anchor not in _anchors(file):
                broken.append(f"{doc.relative_to(ROOT)}: {target} (no such heading)")
    assert broken == []


def _anchors(doc: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    headings = re.findall(r"^#+\s+(.*)$", doc.read_text(), flags=re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


@pytest.fixture(scope="module")
def scratch_inputs(tmp_path_factory) -> Path:
    """The placeholders the docs use for the reader's own data, made from the everyday bundle's parts."""
    root = tmp_path_factory.mktemp("doc-inputs")
    pairs = EVERYDAY / "pairs"
    rows = list(csv.DictReader(open(pairs / "manifest.csv", newline="")))
    take = {"train": 40, "val": 8, "test": 8}
    picked = []
    for split, n in take.items():
        picked += [r for r in rows if r["split"] == split][:n * 5:5]
    (root / "data").mkdir()
    with open(root / "data" / "manifest.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        for r in picked:
            images = "|".join(str(pairs / p) for p in r["image"].split("|"))
            writer.writerow({**r, "audio": str(pairs / r["audio"]), "image": images})
    for r in [r for r in rows if r["split"] == "test" and r["label"] in ("dog", "rain", "clapping")]:
        folder = root / "my_sounds" / r["label"]
        if len(list(folder.glob("*"))) < 3:
            folder.mkdir(parents=True, exist_ok=True)
            shutil.copy(pairs / r["audio"], folder)
    gallery = sorted((EVERYDAY / "gallery").glob("*.png"))
    for name, files in (("photos", gallery[:6]), ("more_photos", gallery[6:9])):
        (root / name).mkdir()
        for p in files:
            shutil.copy(p, root / name)
    (root / "captions.txt").write_text("a dog barking\nrain falling\nsomeone clapping their hands\na cat meowing\n")
    return root


@pytest.mark.parametrize("block", [pytest.param(b, id=b.name, marks=[pytest.mark.slow] if "slow" in b.clauses else [])
                                   for b in RUNNABLE])
def test_runnable_block(block: Block, scratch_inputs: Path, tmp_path: Path):
    work = tmp_path / "work"
    shutil.copytree(scratch_inputs, work)
    for name in ("assets", "benchmarks"):
        (work / name).symlink_to(ROOT / name)
    script = work / ("block.py" if block.language in ("python", "py") else "block.sh")
    script.write_text(block.code + "\n")
    command = [sys.executable, script.name] if script.suffix == ".py" else ["bash", "-eo", "pipefail", script.name]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
           "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
           "HF_HUB_OFFLINE": "1", "MPLBACKEND": "Agg", "WAVBRIVL_CACHE": str(tmp_path / "cache")}
    proc = subprocess.run(command, cwd=work, env=env, capture_output=True, text=True, timeout=900)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{block.name} failed:\n{output[-4000:]}"
    if "prints" in block.clauses:
        assert block.clauses["prints"] in output, f"{block.name}: expected {block.clauses['prints']!r} in:\n{output[-4000:]}"
    if "creates" in block.clauses:
        assert (work / block.clauses["creates"]).exists(), f"{block.name}: {block.clauses['creates']} was not written"
