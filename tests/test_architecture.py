"""The module boundaries docs/ARCHITECTURE.md promises, checked on the source."""
from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def imported_modules(path: Path) -> set[str]:
    """Absolute names of every module a file imports (relative imports resolved against its package)."""
    package = ".".join(path.relative_to(REPO).with_suffix("").parts[:-1])
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            names.add(base)
            names |= {f"{base}.{a.name}" for a in node.names}
    return names


def offenders(files, forbidden: str) -> list[str]:
    return [f"{p.relative_to(REPO)} imports {m}" for p in files for m in sorted(imported_modules(p))
            if m == forbidden or m.startswith(forbidden + ".")]


def test_general_modules_never_import_a_world():
    dispatcher = REPO / "wavbrivl" / "commands" / "world.py"  # `wavbrivl world NAME`: discovers the worlds
    general = [p for p in (REPO / "wavbrivl").rglob("*.py")
               if "worlds" not in p.relative_to(REPO / "wavbrivl").parts and p != dispatcher]
    assert len(general) > 20
    assert offenders(general, "wavbrivl.worlds") == []


def test_the_demo_imports_no_world_and_the_library_no_demo():
    assert offenders(sorted((REPO / "demo").glob("*.py")) + [REPO / "app.py"], "wavbrivl.worlds") == []
    assert offenders(sorted((REPO / "wavbrivl").rglob("*.py")), "demo") == []


def test_demo_modules_stay_small():
    sizes = {p.name: len(p.read_text().splitlines()) for p in (REPO / "demo").glob("*.py")}
    assert all(n <= 250 for n in sizes.values()), sizes


def test_the_import_scanner_sees_relative_imports():
    source = REPO / "wavbrivl" / "worlds" / "shapes" / "build.py"
    assert "wavbrivl.model" in imported_modules(source) and "wavbrivl.worlds.shapes.world" in imported_modules(source)
