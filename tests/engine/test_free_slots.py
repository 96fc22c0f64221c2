"""Which free slot a stream gets: its own newest, else the one freed longest ago."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from framering import Engine, Layer
from framering.free_slots import FreeSlots
from framering.reservations import SlotAccount


def account(name: str) -> SlotAccount:
    return SlotAccount(name, 0, submit=None)  # type: ignore[arg-type]


def test_a_stream_gets_back_the_slot_it_freed_last() -> None:
    free, show = FreeSlots(4), account("show")
    taken = [free.take(show) for _ in range(3)]
    assert taken == [0, 1, 2]  # never used: in order
    for index in taken:
        free.give(index, show)
    assert free.take(show) == 2
    assert free.take(show) == 1


def test_a_stream_with_no_slot_of_its_own_gets_the_one_freed_longest_ago() -> None:
    free, show, other = FreeSlots(3), account("show"), account("other")
    for index in [free.take(show) for _ in range(3)]:
        free.give(index, show)
    assert free.take(other) == 0  # oldest first, not the show's newest (2)
    assert free.take(show) == 2
    free.give(0, other)
    assert free.take(other) == 0


def test_a_slot_another_stream_took_is_no_longer_offered_as_its_own() -> None:
    free, show, other = FreeSlots(2), account("show"), account("other")
    a, b = free.take(show), free.take(show)
    free.give(a, show)
    free.give(b, show)
    assert free.take(other) == a
    assert free.take(show) == b
    assert len(free) == 0


def test_a_closed_streams_slots_go_to_others_oldest_first() -> None:
    free, show, other = FreeSlots(2), account("show"), account("other")
    a, b = free.take(show), free.take(show)
    free.give(b, show)
    free.give(a, show)
    free.forget(show)
    assert free.take(other) == b


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 2)), max_size=60))
def test_no_slot_is_handed_out_twice_and_every_freed_slot_comes_back(
    steps: list[tuple[bool, int]],
) -> None:
    slots = 4
    accounts = [account(f"s{i}") for i in range(3)]
    free = FreeSlots(slots)
    held: dict[int, SlotAccount] = {}
    for taking, who in steps:
        if taking and len(free):
            index = free.take(accounts[who])
            assert index not in held and 0 <= index < slots
            held[index] = accounts[who]
        elif not taking and held:
            index = sorted(held)[who % len(held)]
            free.give(index, held.pop(index))
        if who == 2 and not taking:
            free.forget(accounts[2])
        assert len(free) == slots - len(held)
    while len(free):
        held[free.take(accounts[0])] = accounts[0]
    assert sorted(held) == list(range(slots))


def test_streams_sharing_a_ring_reuse_their_own_slots_and_recomposite_nothing_still() -> None:
    rng = np.random.default_rng(5)
    with Engine(64, 48, slots=7, workers=1) as eng:  # odd: turns do not line up with slots
        scenes = [
            [Layer(eng.upload(rng.integers(0, 256, (48, 64, 4), dtype=np.uint8)))] for _ in range(2)
        ]
        streams = [eng.open_stream(f"show-{i}", slots=2) for i in range(2)]
        first = [stream.render(scene) for stream, scene in zip(streams, scenes, strict=True)]
        for _ in range(19):  # turn and turn about on one ring
            for stream, scene, picture in zip(streams, scenes, first, strict=True):
                np.testing.assert_array_equal(stream.render(scene), picture)
        # 2 of 40 frames whole (each stream's first); a first-in first-out free list hands
        # each stream the other's last slot, so every frame would be whole
        assert eng.metrics().damaged_fraction <= 0.1
        for stream in streams:
            stream.close()


def test_a_slot_a_closed_stream_gives_back_is_nobodys() -> None:
    free, show, other = FreeSlots(2), account("show"), account("other")
    a, b = free.take(show), free.take(show)
    free.give(b, show)
    free.forget(show)
    show.closed = True
    free.give(a, show)  # it held this one when it closed
    assert free.take(other) == b  # oldest first: nothing is kept for the closed stream
    assert free.take(other) == a
