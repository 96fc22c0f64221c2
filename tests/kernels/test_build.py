"""How the kernels are compiled: one set of JIT options, cached, GIL released, all warmed up."""

from __future__ import annotations

import ast
import pathlib

import numba

from framering import kernels
from framering.kernels.convert_in import _packed_to_rgba, _yuv420_to_rgba
from framering.kernels.convert_out import _convert_frame
from framering.kernels.fill import fill_kernel
from framering.kernels.jit import KERNEL_OPTIONS
from framering.kernels.stack import composite_stack_kernel

PACKAGE = pathlib.Path(kernels.__file__).parent


def dispatchers() -> list[numba.core.registry.CPUDispatcher]:
    found: dict[int, numba.core.registry.CPUDispatcher] = {}
    for path in sorted(PACKAGE.glob("*.py")):
        module = __import__(f"framering.kernels.{path.stem}", fromlist=["_"])
        for value in vars(module).values():
            if isinstance(value, numba.core.dispatcher.Dispatcher):
                found[id(value)] = value
    return list(found.values())


def test_every_kernel_uses_the_shared_jit_options() -> None:
    found = dispatchers()
    assert len(found) >= 15
    for dispatcher in found:
        name = dispatcher.py_func.__qualname__
        for key in ("nogil", "boundscheck", "error_model", "fastmath"):
            assert dispatcher.targetoptions.get(key) == KERNEL_OPTIONS[key], (name, key)
        assert dispatcher.targetoptions.get("nopython", True), name
        # cache=True shows as an on-disk function cache instead of the null cache
        assert type(dispatcher._cache).__name__ == "FunctionCache", name


def test_no_module_but_jit_py_calls_numba_jit() -> None:
    for path in PACKAGE.glob("*.py"):
        if path.name == "jit.py":
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr in {"jit", "njit", "vectorize"}:
                raise AssertionError(f"{path.name} calls numba.{node.attr}: use kernels.jit.KERNEL")


def test_kernels_package_knows_nothing_of_processes() -> None:
    for path in PACKAGE.glob("*.py"):
        text = path.read_text()
        for forbidden in ("multiprocessing", "shared_memory"):
            assert forbidden not in text, f"{path.name} mentions {forbidden}"
        for node in ast.walk(ast.parse(text)):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            for name in names:
                inside = name == "framering.kernels" or name.startswith("framering.kernels.")
                assert inside or not name.startswith("framering"), (
                    f"{path.name} imports {name}: the kernels know nothing of the engine"
                )


def test_warmup_compiles_every_entry_point() -> None:
    # helpers are compiled into their callers; the entry points are what Python calls
    kernels.warmup()
    for entry in (
        composite_stack_kernel,
        fill_kernel,
        _convert_frame,
        _yuv420_to_rgba,
        _packed_to_rgba,
    ):
        assert entry.signatures, f"{entry.py_func.__qualname__} was not compiled by warmup()"
