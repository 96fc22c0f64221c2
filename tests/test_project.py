"""The project's promises about itself: exports, README commands, CI."""

from __future__ import annotations

import ast
import pathlib
import re
import subprocess
import sys
import zipfile

import framering
from framering import cluster, kernels

ROOT = pathlib.Path(__file__).resolve().parent.parent


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```(?:bash|sh|shell|console)?\n(.*?)```", text, re.S)
    commands = [line.strip() for block in blocks for line in block.splitlines() if line.strip()]
    return commands[:2]


def test_readme_starts_with_the_main_job_and_the_tests() -> None:
    main_job, tests = readme_commands()
    assert "framering demo" in main_job and "pip install" in main_job
    assert "pytest" in tests and "pip install" in tests


def test_ci_runs_the_readme_test_command() -> None:
    _, tests = readme_commands()
    assert tests in (ROOT / ".ci" / "run").read_text()


def test_public_names_are_exported_explicitly() -> None:
    for package in (framering, kernels, cluster):
        assert isinstance(package.__all__, list)
        for name in package.__all__:
            assert hasattr(package, name), f"{package.__name__}.{name} is in __all__ but missing"
    assert {"composite_stack", "LayerStack", "PixelLayer", "BlendMode", "fill", "clear"} <= set(
        kernels.__all__
    )


# The modules that import Ray: the cluster, and the show its benchmark runs on the nodes.
RAY_MODULES = ("framering.cluster", "framering.benchmarks.cluster_show")


def test_framering_never_imports_ray_outside_framering_cluster() -> None:
    # every module of the package but framering.cluster (walk_packages would import it to
    # look inside), in a fresh interpreter
    probe = (
        "import pkgutil, importlib, sys, framering\n"
        f"SKIPPED = {(*RAY_MODULES, 'framering.__main__')!r}\n"
        "for package in ('framering', 'framering.kernels', 'framering.benchmarks'):\n"
        "    path = importlib.import_module(package).__path__\n"
        "    for m in pkgutil.iter_modules(path, package + '.'):\n"
        "        if m.name not in SKIPPED:\n"
        "            importlib.import_module(m.name)\n"
        "print(sorted(n for n in sys.modules if n == 'ray' or n.startswith('ray.')))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], check=True, capture_output=True, text=True
    ).stdout
    assert out.strip() == "[]"


def test_packages_are_typed() -> None:
    for folder in ("engine", "kernels"):
        assert (ROOT / folder / "py.typed").exists()


def test_the_readme_names_are_importable_from_framering() -> None:
    for name in ("Engine", "Layer", "Transform", "LiveSource", "Source", "FrameSlot"):
        assert name in framering.__all__
    for name in ("PixelLayer", "LayerStack", "composite_stack", "BlendMode"):
        assert name in kernels.__all__


def test_the_wheel_installs_framering_and_nothing_else_at_the_top(tmp_path: pathlib.Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(ROOT)],
        check=True,
    )
    (wheel,) = tmp_path.glob("framering-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert top == {"framering"}
    for module in (
        "framering/__init__.py",
        "framering/kernels/__init__.py",
        "framering/benchmarks/__init__.py",
        "framering/cluster/__init__.py",
        "framering/py.typed",
        "framering/kernels/py.typed",
        "framering/kernels/workloads/studio-1080p.json",
    ):
        assert module in names
    (top_level,) = [n for n in names if n.endswith(".dist-info/top_level.txt")] or [None]
    if top_level is not None:
        assert zipfile.ZipFile(wheel).read(top_level).decode().split() == ["framering"]


def _own_attributes(cls: ast.ClassDef) -> set[str]:
    """Underscored attributes a class gives itself: ``self._x = ...``, annotations, slots."""
    names: set[str] = set()
    for node in ast.walk(cls):
        if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            if isinstance(node.value, ast.Name) and node.value.id == "self":
                names.add(node.attr)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            names.add(node.value)  # __slots__ entries
    return names


# The standard library's own underscored names that the engine needs, each for a reason:
STDLIB_PRIVATE = {
    "os._exit",  # a worker ends at once when its parent is gone
    # (none other: a forked child's copy of multiprocessing's children set is read with getattr)
}


def test_no_module_reaches_into_another_objects_underscored_attributes() -> None:
    reaches = []
    for folder in ("engine", "kernels", "benchmarks"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            tree = ast.parse(path.read_text())
            allowed_in: dict[int, set[str]] = {}
            for cls in (n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)):
                own = _own_attributes(cls)
                for node in ast.walk(cls):
                    allowed_in[id(node)] = own
            for node in ast.walk(tree):
                if not isinstance(node, ast.Attribute) or not node.attr.startswith("_"):
                    continue
                if node.attr.startswith("__") or ast.unparse(node) in STDLIB_PRIVATE:
                    continue
                if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
                    continue
                if node.attr in allowed_in.get(id(node), set()):
                    continue  # the class's own attribute, e.g. on an instance it builds
                reaches.append(f"{path.relative_to(ROOT)}:{node.lineno}: {ast.unparse(node)}")
    assert not reaches, "\n".join(reaches)
