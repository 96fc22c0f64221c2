"""The project's promises about itself: exports, README commands, CI."""

from __future__ import annotations

import pathlib
import re

import engine
import kernels

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
    for package in (engine, kernels):
        assert isinstance(package.__all__, list)
        for name in package.__all__:
            assert hasattr(package, name), f"{package.__name__}.{name} is in __all__ but missing"
    assert {"composite_stack", "LayerStack", "PixelLayer", "BlendMode", "fill", "clear"} <= set(
        kernels.__all__
    )


def test_packages_are_typed() -> None:
    for package in ("engine", "kernels"):
        assert (ROOT / package / "py.typed").exists()
