"""The project's promises about itself: exports, README commands, CI."""

from __future__ import annotations

import pathlib
import re
import subprocess
import sys
import zipfile

import framering
from framering import kernels

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
    for package in (framering, kernels):
        assert isinstance(package.__all__, list)
        for name in package.__all__:
            assert hasattr(package, name), f"{package.__name__}.{name} is in __all__ but missing"
    assert {"composite_stack", "LayerStack", "PixelLayer", "BlendMode", "fill", "clear"} <= set(
        kernels.__all__
    )


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
        "framering/py.typed",
        "framering/kernels/py.typed",
        "framering/kernels/workloads/studio-1080p.json",
    ):
        assert module in names
    (top_level,) = [n for n in names if n.endswith(".dist-info/top_level.txt")] or [None]
    if top_level is not None:
        assert zipfile.ZipFile(wheel).read(top_level).decode().split() == ["framering"]
