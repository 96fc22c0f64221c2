"""Prefetch hints change no byte, and the per-CPU choice of when to give them is read as
documented."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from framering.kernels import LayerStack, composite_stack
from framering.kernels.hints import DEFAULT_MIN_PIXELS, check_prefetch_min, choose
from tests.layers import layers, rgba


@settings(max_examples=150, deadline=None)
@given(
    st.integers(1, 400),
    st.integers(1, 12),
    st.integers(0, 2**32 - 1),
    st.data(),
    st.sampled_from([1, 16, DEFAULT_MIN_PIXELS]),
    st.booleans(),
)
def test_hinted_rows_give_the_bytes_of_unhinted_ones(
    w: int, h: int, seed: int, data: st.DataObject, prefetch_min: int, clear: bool
) -> None:
    rng = np.random.default_rng(seed)
    start = rgba(rng, h, w, "random", premultiplied=False)
    stack = LayerStack.prepare(
        w, h, [data.draw(layers(w, h, max_side=420)) for _ in range(data.draw(st.integers(1, 6)))]
    )
    plain, hinted = start.copy(), start.copy()
    composite_stack(plain, stack, clear=clear, prefetch_min=0)
    composite_stack(hinted, stack, clear=clear, prefetch_min=prefetch_min)
    np.testing.assert_array_equal(hinted, plain)
    rows = tuple(sorted(data.draw(st.lists(st.integers(0, h), min_size=2, max_size=2))))
    composite_stack(plain, stack, rows=rows, prefetch_min=0)
    composite_stack(hinted, stack, rows=rows, prefetch_min=prefetch_min)
    np.testing.assert_array_equal(hinted, plain)


def test_hints_are_on_except_where_they_were_measured_to_lose() -> None:
    assert choose("auto", "znver4") == DEFAULT_MIN_PIXELS
    assert choose("", "sapphirerapids") == DEFAULT_MIN_PIXELS
    assert choose("auto", "znver3") == 0
    assert choose("on", "znver3") == DEFAULT_MIN_PIXELS
    assert choose("OFF", "znver5") == 0
    assert choose(" 1024 ", "znver3") == 1024


@pytest.mark.parametrize("setting", ["sometimes", "-1", "1e3"])
def test_a_bad_prefetch_setting_is_refused_with_what_it_may_be(setting: str) -> None:
    with pytest.raises(ValueError, match="FRAMERING_PREFETCH must be auto, on, off"):
        choose(setting, "znver3")


@pytest.mark.parametrize("value", [-1, 256.0, True, "256"])
def test_a_caller_prefetch_min_must_be_a_width(value: object) -> None:
    with pytest.raises(ValueError, match="prefetch_min must be an int"):
        check_prefetch_min(value)
    with pytest.raises(ValueError, match="prefetch_min"):
        composite_stack(np.zeros((2, 2, 4), np.uint8), [], prefetch_min=value)  # type: ignore[arg-type]


def test_per_cpu_choices_key_on_the_cpu_numba_compiles_for(monkeypatch: pytest.MonkeyPatch) -> None:
    import llvmlite.binding
    from numba.core import config

    from framering.kernels.cpu import host_cpu

    monkeypatch.setattr(config, "CPU_NAME", None)
    assert host_cpu() == llvmlite.binding.get_host_cpu_name()
    monkeypatch.setattr(config, "CPU_NAME", "znver3")  # NUMBA_CPU_NAME=znver3
    assert host_cpu() == "znver3"
