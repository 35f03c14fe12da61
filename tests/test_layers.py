"""The package's layers (DESIGN §1, issue 24 items 3 and 5): the import contract in
pyproject.toml holds, and the API's names are plain functions, not callable modules."""

from __future__ import annotations

import subprocess
import sys
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_import_contract_holds() -> None:
    """``lint-imports`` (``make lint``) as a test too: no import up a layer, no circle."""
    run = [sys.executable, "-c", "import sys; from importlinter.cli import lint_imports; "
           "sys.exit(lint_imports(no_cache=True, no_logo=True))"]  # fmt: skip
    done = subprocess.run(run, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "BROKEN" not in done.stdout and "0 broken" in done.stdout


def test_the_api_names_are_plain_functions_whatever_was_imported_first() -> None:
    import landscape
    import landscape.diagnostics
    import landscape.runs.curvature
    import landscape.runs.inspect
    import landscape.runs.surface
    from landscape import api

    for name in ("compute", "curvature", "inspect", "load"):
        assert isinstance(getattr(landscape, name), types.FunctionType), name
        assert getattr(landscape, name) is getattr(api, name)
    assert not (ROOT / "landscape" / "_callable.py").exists()


def private_imports(package: Path) -> list[str]:
    """``from landscape.x import _name`` in the files under ``package``: a private function or
    constant taken across modules (a private module, ``from landscape import _files``, is the
    package's own business and allowed)."""
    import ast

    found = []
    for path in sorted(package.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not (
                isinstance(node, ast.ImportFrom) and (node.module or "").startswith("landscape")
            ):
                continue
            where = ROOT / Path(*node.module.split("."))
            for alias in node.names:
                private = alias.name.startswith("_") and not alias.name.startswith("__")
                if private and not (where / f"{alias.name}.py").is_file():
                    found.append(f"{path.name}:{node.lineno} {alias.name}")
    return found


def test_no_private_name_is_imported_across_modules(tmp_path: Path) -> None:
    assert private_imports(ROOT / "landscape") == []
    # the check itself: a private function taken from another module is caught, a private
    # module is not
    (tmp_path / "m.py").write_text(
        "from landscape import _files\nfrom landscape.plot.figures import _hidden\n"
    )
    assert private_imports(tmp_path) == ["m.py:2 _hidden"]
