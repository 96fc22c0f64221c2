"""How the kernels are compiled: one set of JIT options, cached, GIL released, all warmed up."""

from __future__ import annotations

import ast
import inspect
import pathlib
import subprocess
import sys
import types
from collections.abc import Callable, Iterator

import numba

from framering import kernels
from framering.kernels.jit import KERNEL_OPTIONS

PACKAGE = pathlib.Path(kernels.__file__).parent
ROOT = pathlib.Path(__file__).resolve().parents[2]


def modules() -> list[types.ModuleType]:
    return [
        __import__(f"framering.kernels.{path.stem}", fromlist=["_"])
        for path in sorted(PACKAGE.glob("*.py"))
    ]


def dispatchers() -> list[numba.core.registry.CPUDispatcher]:
    found: dict[int, numba.core.registry.CPUDispatcher] = {}
    for module in modules():
        for value in vars(module).values():
            if isinstance(value, numba.core.dispatcher.Dispatcher):
                found[id(value)] = value
    return list(found.values())


def _code_objects(code: types.CodeType) -> Iterator[types.CodeType]:
    yield code
    for constant in code.co_consts:
        if isinstance(constant, types.CodeType):  # nested functions, comprehensions
            yield from _code_objects(constant)


def _named_dispatchers(function: Callable[..., object]) -> set[int]:
    """ids of the dispatchers that ``function``'s code names among its module's globals."""
    namespace = function.__globals__  # type: ignore[attr-defined]
    return {
        id(namespace[name])
        for code in _code_objects(function.__code__)
        for name in code.co_names
        if isinstance(namespace.get(name), numba.core.dispatcher.Dispatcher)
    }


def _python_functions(module: types.ModuleType) -> Iterator[Callable[..., object]]:
    """The plain Python functions and methods (properties too) that ``module`` defines."""
    for value in vars(module).values():
        if getattr(value, "__module__", None) != module.__name__:
            continue
        if inspect.isfunction(value):
            yield value
        elif inspect.isclass(value):
            for attribute in vars(value).values():
                function = getattr(attribute, "fget", None) or getattr(
                    attribute, "__func__", attribute
                )
                if inspect.isfunction(function):
                    yield function


def entry_points() -> list[numba.core.registry.CPUDispatcher]:
    """Every compiled function that Python calls, found in the package, not kept in a list.

    A dispatcher that only other kernels call is no entry point: it is compiled into its
    callers' machine code (the ``inline="always"`` helpers at Numba IR level, the others such
    as ``blend_channel`` or ``deliver_rows`` into the callers' library), and a caller loaded
    from Numba's cache never compiles it on its own, so its ``signatures`` may stay empty. An
    entry point is a dispatcher, not inlined, that the package's Python code calls, or that no
    kernel calls (then nothing but Python can).
    """
    every = dispatchers()
    from_python: set[int] = set()
    for module in modules():
        for function in _python_functions(module):
            from_python |= _named_dispatchers(function)
    from_kernels: set[int] = set()
    for dispatcher in every:
        from_kernels |= _named_dispatchers(dispatcher.py_func) - {id(dispatcher)}
    return [
        d
        for d in every
        if d.targetoptions.get("inline") != "always"
        and (id(d) in from_python or id(d) not in from_kernels)
    ]


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


# Run in a fresh interpreter, so that only warmup() can have compiled anything (in this one,
# every other test has called kernels too).
WARMUP_CHECK = """
from framering import kernels
kernels.warmup()
from tests.kernels.test_build import entry_points
print(" ".join(d.py_func.__qualname__ for d in entry_points() if not d.signatures))
"""


def test_entry_points_are_found_and_helpers_are_not() -> None:
    names = {d.py_func.__qualname__ for d in entry_points()}
    # one kernel behind each public function that compiles: what the discovery must find
    assert {
        "composite_stack_kernel",
        "fill_kernel",
        "_convert_frame",
        "_yuv420_to_rgba",
        "_packed_to_rgba",
    } <= names
    assert not names & {"deliver_rows", "blend_channel", "blend_general", "copy_span"}


def _fresh_interpreter(script: str) -> list[str]:
    """What ``script`` prints, run in a new interpreter (nothing compiled yet)."""
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=150,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_warmup_compiles_every_entry_point() -> None:
    missing = _fresh_interpreter(WARMUP_CHECK)
    assert not missing, f"warmup() does not compile {missing}"


SAME_SPECIALISATION_CHECK = """
import numpy as np
from framering import kernels
from framering.kernels.stack import composite_stack_kernel
kernels.warmup()
before = len(composite_stack_kernel.signatures)
frame = np.zeros((8, 8, 4), np.uint8)
layer = kernels.PixelLayer(np.full((8, 8, 4), 200, np.uint8))
boxes = np.array([[0, 0, 4, 4]], np.int64)
kernels.composite_stack(frame, [layer], rects=boxes)  # writable, as a caller's own array
boxes.flags.writeable = False
kernels.composite_stack(frame, [layer], rects=boxes)  # read-only, as a worker's message
print(len(composite_stack_kernel.signatures) - before)
"""


def test_the_stack_kernel_is_specialised_once_whatever_the_boxes_writability() -> None:
    # a worker passes boxes read from its message: a specialisation that warmup() did not
    # make would be loaded at its first frame, which then misses a 60 fps tick (~20 ms)
    assert _fresh_interpreter(SAME_SPECIALISATION_CHECK) == ["0"]
