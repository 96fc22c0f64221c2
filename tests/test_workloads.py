"""The reference workloads are built exactly by their recipes."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import numpy as np
import pytest

from framering.kernels.workloads import WORKLOAD_NAMES, build, load_spec, make_alpha


def test_ramp_alpha_follows_the_column() -> None:
    alpha = make_alpha("ramp", 5, 2, seed=0, i=0)
    np.testing.assert_array_equal(alpha[0], [0, 63, 127, 191, 255])  # floor(255 c / 4)


def test_disc_alpha_is_a_soft_disc() -> None:
    alpha = make_alpha("disc", 256, 256, seed=0, i=0)
    assert alpha[0, 0] == 0 and alpha[128, 128] == 255
    # pixel centre (0.5, 128.5): d = 127.5, 255 * (128 - 127.5) / 8 = 15.94 -> 16
    assert alpha[128, 0] == 16


def test_studio_layers_match_the_recipe() -> None:
    studio = build("studio-1080p")
    assert (studio.width, studio.height, len(studio.layers)) == (1920, 1080, 4)
    camera = studio.layers[1]
    rgb = np.random.default_rng(1 * 1000 + 1).integers(0, 256, (720, 1280, 3), dtype=np.uint8)
    np.testing.assert_array_equal(camera.pixels[..., :3], rgb)
    assert (camera.x, camera.y, camera.opacity) == (96, 72, 1.0)


def test_sprites_share_one_array_at_seeded_positions() -> None:
    sprites = build("sprites-1080p")
    assert len(sprites.layers) == 201
    assert len({id(layer.pixels) for layer in sprites.layers[1:]}) == 1
    rng = np.random.default_rng(3 * 1000 + 900 + 1)
    xs = rng.integers(-48, 1920 - 48, 200)
    assert [layer.x for layer in sprites.layers[1:]] == xs.tolist()


@pytest.mark.parametrize("name", WORKLOAD_NAMES)
def test_workload_specs_load(name: str) -> None:
    assert load_spec(name)["name"] == name


def test_unknown_workload_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown workload"):
        load_spec("nope")


def test_workload_specs_load_from_the_installed_package_whatever_the_directory(
    tmp_path: pathlib.Path,
) -> None:
    # the specs ship inside framering.kernels; a lookup by a top-level name ("kernels") only
    # worked from the repository's root, where the folder happens to be importable
    script = "from framering.kernels import workloads; print(workloads.load_spec('stress-4k'))"
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "'name': 'stress-4k'" in done.stdout
