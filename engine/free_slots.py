"""The ring's free slots, and which one a stream gets: its own most recent, if it has one.

A slot keeps the picture of the last frame it held, and damage tracking recomposites only
what changed since then (``framering.damage``). That is only cheap when the slot's last frame
was the *same stream's*, and recent: a slot last written by another stream, or many frames
ago, differs nearly everywhere and is recomposited whole. A plain first-in first-out free list
hands every stream the slot freed longest ago, so with several streams on one ring (or one
stream on a ring larger than it needs) every frame was composited whole. So:

- a stream gets the free slot it freed most recently (last in, first out): the one whose
  picture is nearest the frame it is about to make, and the likeliest still in cache;
- a stream with no free slot of its own gets the slot freed longest ago (or never used):
  the one its previous stream is least likely to want back soon.

Which slot a stream gets changes how much is recomposited, never what a frame holds: the
damage of a slot is always measured against that slot's own last frame.

Every method runs under the frame table's lock.
"""

from __future__ import annotations

from framering.reservations import SlotAccount


class FreeSlots:
    """The free slots of one ring, each remembering the account that freed it."""

    def __init__(self, slots: int) -> None:
        self._oldest_first: dict[int, None] = dict.fromkeys(range(slots))
        self._last_holder: list[SlotAccount | None] = [None] * slots
        self._recent: dict[SlotAccount, dict[int, None]] = {}  # per account, newest last

    def __len__(self) -> int:
        return len(self._oldest_first)

    def take(self, account: SlotAccount) -> int:
        """The slot ``account`` gets (one is free): its own most recently freed, else the
        slot freed longest ago."""
        own = self._recent.get(account)
        if own:
            index, _ = own.popitem()  # dicts pop their newest entry
        else:
            index = next(iter(self._oldest_first))
            holder = self._last_holder[index]
            if holder is not None:
                self._recent.get(holder, {}).pop(index, None)
        del self._oldest_first[index]
        self._last_holder[index] = None
        return index

    def give(self, index: int, account: SlotAccount | None) -> None:
        """Slot ``index`` is free again; ``account`` held it last."""
        if account is not None and account.closed:
            account = None  # (a slot a closed stream still held: nobody's now)
        self._oldest_first[index] = None
        self._last_holder[index] = account
        if account is not None:
            self._recent.setdefault(account, {})[index] = None

    def forget(self, account: SlotAccount) -> None:
        """``account`` closed: its free slots go to whoever asks, oldest first as before."""
        for index in self._recent.pop(account, {}):
            self._last_holder[index] = None
