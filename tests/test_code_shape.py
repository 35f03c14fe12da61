"""The package's shape: no function over MAX_LINES lines outside the CLI (issue 24 item 6)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "landscape"
MAX_LINES = 60
# the CLI's commands are mostly option declarations, one decorator a line
EXEMPT_FILES = {"cli.py"}
# none: a function that grows past MAX_LINES is split into named steps, not listed here
EXEMPT_FUNCTIONS: set[str] = set()


def long_functions(root: Path = PACKAGE) -> dict[str, int]:
    """Every function (nested ones too, each on its own) longer than MAX_LINES lines, from its
    ``def`` line to its last, by ``path::name``."""
    found: dict[str, int] = {}
    for path in sorted(root.rglob("*.py")):
        if path.name in EXEMPT_FILES and path.parent == root:
            continue
        where = path.relative_to(root.parent).as_posix()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_LINES:
                    found[f"{where}::{node.name}"] = lines
    return found


def test_no_function_in_the_package_exceeds_sixty_lines() -> None:
    found = long_functions()
    too_long = {name: n for name, n in found.items() if name not in EXEMPT_FUNCTIONS}
    assert not too_long, (
        f"functions over {MAX_LINES} lines (split them into named steps): {too_long}"
    )


def test_the_exemptions_are_still_needed() -> None:
    """An exemption goes once its function is short: the list only ever shrinks."""
    stale = EXEMPT_FUNCTIONS - set(long_functions())
    assert not stale, f"remove from EXEMPT_FUNCTIONS, now within {MAX_LINES} lines: {stale}"


def test_the_walk_finds_a_long_function(tmp_path: Path) -> None:
    """The check itself: a 61-line function is found, a nested one too, a 60-line one is not."""
    pkg = tmp_path / "landscape"
    pkg.mkdir()
    body = "\n".join(f"    x{i} = {i}" for i in range(59))
    inner = "\n".join(f"        y{i} = {i}" for i in range(60))
    (pkg / "m.py").write_text(
        f"def short():\n{body}\n\n\ndef long():\n{body}\n    return 1\n\n\n"
        f"def outer():\n    def inner():\n{inner}\n"
    )
    (pkg / "cli.py").write_text(f"def command():\n{body}\n    return 1\n")
    assert long_functions(pkg) == {
        "landscape/m.py::long": 61, "landscape/m.py::outer": 62, "landscape/m.py::inner": 61
    }  # fmt: skip
