"""Check a ``torch.export`` program (``.pt2``) for parts that run code while it loads.

``torch.export.load`` runs code a file carries in four ways besides the pickled tensors that
``checkpoint`` already reads with ``weights_only=True``:

- opaque constants (``data/constants/opaque_obj_*``) are read with plain ``pickle.loads``, and
  custom objects (``custom_obj_*``) with TorchScript's unpickler;
- every symbolic shape expression (``expr_str`` in ``models/*.json``) goes through
  ``sympy.sympify``, which ``eval``s its text: ``__import__('os').system(...)`` runs;
- AOTInductor parts (``data/aotinductor/``) are shared libraries, loaded as native code;
- and a file in the older zip layout (names at the archive's top level) is read by another path.

This module reads only the archive's index and its JSON with torch's own archive reader (the
names torch will see), never unpickling or evaluating anything, and names the first such part.
A program exported from an ``nn.Module`` has none of them but expressions, which it writes in
``sympy.srepr`` form (``Add(Symbol('s77', positive=True, integer=True), Integer(1))``): those
are parsed with ``ast`` and admitted only when built from calls of sympy's and torch's shape
functions on numbers, booleans and symbol names.
"""

from __future__ import annotations

import ast
import json
import re
import zipfile
from collections.abc import Iterator
from typing import Any

# the sympy classes ``srepr`` writes and the shape functions torch's deserializer passes to sympify
_FUNCTIONS = """
Symbol Integer Rational Float Add Mul Pow Mod Max Min Abs floor ceiling Eq Ne Lt Le Gt Ge
StrictLessThan StrictGreaterThan LessThan GreaterThan Equality Unequality And Or Not Tuple
Piecewise ExprCondPair FloorDiv ModularIndexing Where PythonMod CleanDiv CeilToInt FloorToInt
CeilDiv LShift RShift PowByNatural FloatPow FloatTrueDiv IntTrueDiv TruncToFloat TruncToInt
IsNonOverlappingAndDenseIndicator RoundToInt RoundDecimal ToFloat Identity IntInfinity
NegativeIntInfinity
"""
SHAPE_FUNCTIONS = frozenset(_FUNCTIONS.split())
# sympy's constants, written by name (``int_oo``: torch's integer infinity)
SHAPE_CONSTANTS = frozenset({"oo", "zoo", "nan", "true", "false", "int_oo"})
# the only calls that take a string: a symbol's name, a number's digits (neither evaluates it;
# Max, Min and others sympify a string argument, which evaluates it)
TAKES_TEXT = frozenset({"Symbol", "Integer", "Float"})
SYMBOL_NAME = re.compile(r"[a-z]+[0-9]+")  # s77, u0: how torch names shape symbols
# the parts of a Python expression that stay arithmetic on what the names above give
PLAIN_NODES = (
    ast.Expression, ast.Load, ast.BinOp, ast.UnaryOp, ast.Compare, ast.BoolOp, ast.Tuple,
    ast.operator, ast.unaryop, ast.cmpop, ast.boolop, ast.keyword,
)  # fmt: skip


class UnsafeProgram(Exception):
    """The program holds a part whose loading runs code; ``str()`` says which."""


def check_program(path: str) -> None:
    """Raise :class:`UnsafeProgram` naming the first part of ``path`` that would run code when
    ``torch.export.load`` reads it; return when there is none. Errors of a file that is not a
    program at all are left to ``torch.export.load``; a record that is not JSON is a ValueError."""
    from torch.export.pt2_archive import constants as pt2

    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            if any("/" not in name for name in archive.namelist()):
                raise UnsafeProgram(
                    "is in the zip layout of torch 2.7 and earlier, which this check cannot read "
                    "without loading it; re-save it with torch.export.save on this torch"
                )
    for name, text in _archive_json(path):
        if name.startswith(pt2.CONSTANTS_DIR):
            _check_constants(_parsed(name, text), pt2.TENSOR_CONSTANT_FILENAME_PREFIX)
        elif name.startswith(pt2.MODELS_DIR):
            for expression in _expressions(_parsed(name, text)):
                if not safe_expression(expression):
                    raise UnsafeProgram(
                        f"has a shape expression that is Python code, not arithmetic "
                        f"({expression[:80]!r}; torch evaluates it with sympy.sympify)"
                    )


def _archive_json(path: str) -> Iterator[tuple[str, str]]:
    """``(name, text)`` of the archive's JSON records as torch's reader names them; raises
    :class:`UnsafeProgram` for compiled code. Nothing is unpickled or evaluated."""
    from torch.export.pt2_archive import constants as pt2
    from torch.export.pt2_archive._package import PT2ArchiveReader

    try:
        reader = PT2ArchiveReader(path)
        names = reader.get_file_names()
    except Exception:  # not a program: torch.export.load reports it in its own words
        return
    compiled = [n for n in names if n.startswith(pt2.AOTINDUCTOR_DIR)]
    if compiled:
        raise UnsafeProgram(
            f"holds AOTInductor-compiled native code ({compiled[0]}), a shared library that "
            "loading runs"
        )
    for name in names:  # torch reads every record under models/ as a program, whatever its name
        if name.startswith(pt2.MODELS_DIR) or (
            name.startswith(pt2.CONSTANTS_DIR) and name.endswith("_constants_config.json")
        ):
            try:
                text = reader.read_string(name)
            except (RuntimeError, UnicodeDecodeError) as exc:
                raise ValueError(f"its record {name} cannot be read ({exc})") from None
            yield name, text


def _parsed(name: str, text: str) -> Any:
    """The JSON record ``name``; ValueError when it is not JSON (or nested past Python's stack)."""
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError(f"{name} is nested too deeply to be a program's record") from None
    except ValueError as exc:
        raise ValueError(f"{name} is not JSON ({exc})") from None


def _check_constants(config: Any, tensor_prefix: str) -> None:
    """Only tensor constants; an opaque or custom object is a pickle of a Python object."""
    entries = config.get("config", {}) if isinstance(config, dict) else {}
    for fqn, meta in entries.items() if isinstance(entries, dict) else ():
        path_name = meta.get("path_name", "") if isinstance(meta, dict) else ""
        if not str(path_name).startswith(tensor_prefix):
            raise UnsafeProgram(
                f"holds the constant {fqn!r} as a pickled Python object ({path_name}), which "
                "torch unpickles with plain pickle"
            )


def _expressions(tree: Any) -> Iterator[str]:
    """Every ``expr_str`` string anywhere in a model's JSON (walked without recursion)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "expr_str" and isinstance(value, str):
                    yield value
                else:
                    stack.append(value)
        elif isinstance(node, list):
            stack.extend(node)


def safe_expression(text: str) -> bool:
    """True when ``text`` is a sympy expression built only from shape functions, numbers,
    booleans, symbol names and arithmetic: nothing ``eval`` could turn into a call of Python."""
    try:
        tree = ast.parse(text, mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return False
    texts = {  # the string arguments allowed: the first of Symbol('s0'), Float('1.5'), ...
        id(node.args[0])
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and _called(node) in TAKES_TEXT and node.args
    }
    return all(_allowed(node, texts) for node in ast.walk(tree))


def _called(call: ast.Call) -> str | None:
    return call.func.id if isinstance(call.func, ast.Name) else None


def _allowed(node: ast.AST, texts: set[int]) -> bool:
    if isinstance(node, ast.Call):  # f(...) only for the functions above, no **kwargs
        return _called(node) in SHAPE_FUNCTIONS and all(k.arg for k in node.keywords)
    if isinstance(node, ast.Name):
        return (
            node.id in SHAPE_FUNCTIONS
            or node.id in SHAPE_CONSTANTS
            or SYMBOL_NAME.fullmatch(node.id) is not None
        )
    if isinstance(node, ast.Constant):
        if isinstance(node.value, str):
            return id(node) in texts
        return node.value is None or isinstance(node.value, (bool, int, float))
    return isinstance(node, PLAIN_NODES)
