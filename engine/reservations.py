"""Slot reservations: which stream may take a free slot of the ring, so that none starves.

Each stream holds a :class:`SlotAccount`: the slots it reserved when it opened, and the slots
it holds now (acquired, in flight, or kept because frames in flight read them). Reservations
never add up to more than the ring. One rule keeps them:

- a stream holding fewer slots than it reserved may take any free slot;
- a stream at or above its reservation may borrow a free slot only if, after it, as many
  slots stay free as the other streams are still owed (what they reserved and do not hold).

So the free slots cover what is owed, and a stream below its reservation finds a free slot at
once, however greedy its neighbours. The only wait is right after a stream opened while others
were borrowing: the slots it is owed come back as the borrowers release theirs, and it is
served before any borrower. The default stream (``eng.acquire()``) reserves nothing: it uses
what no stream reserved, which is the whole ring until a stream is opened.

Every method runs under the frame table's lock.
"""

from __future__ import annotations

from dataclasses import dataclass

from framering.errors import InvalidValueError, SlotReservationError
from framering.slots import Submit


@dataclass(eq=False)
class SlotAccount:
    """One stream's slots: reserved, and held now (written under the frame table's lock)."""

    name: str
    reserved: int
    submit: Submit
    """Where its slots' ``submit`` goes (the engine's jobs, told which stream it is)."""
    held: int = 0
    closed: bool = False


class Reservations:
    """The accounts of one ring, and the rule above."""

    def __init__(self, slots: int, default_submit: Submit) -> None:
        self.slots = slots
        self.default = SlotAccount("default", 0, default_submit)
        self._accounts: dict[str, SlotAccount] = {"default": self.default}

    def open(
        self, name: str, reserved: int, submit: Submit, keep_unreserved: int = 0
    ) -> SlotAccount:
        """A new account reserving ``reserved`` slots, or a clear error if the ring cannot
        honour it while leaving ``keep_unreserved`` to nobody (or the name is taken)."""
        if name in self._accounts:
            raise InvalidValueError(f"a stream named {name!r} is open already")
        taken = self.reserved()
        if keep_unreserved and taken + reserved > self.slots - keep_unreserved:
            raise SlotReservationError(
                f"stream {name!r} asks for {reserved} reserved slot(s), which would leave the "
                f"default stream's running live loop {self.slots - taken - reserved} of the "
                f"{keep_unreserved} unreserved slots it needs ({self.slots} in the ring, "
                f"{taken} reserved already): reserve fewer, make the engine with more slots, "
                f"or end the default stream's loop first"
            )
        if taken + reserved > self.slots:
            others = ", ".join(
                f"{a.name!r} {a.reserved}" for a in self._accounts.values() if a.reserved
            )
            raise SlotReservationError(
                f"stream {name!r} asks for {reserved} reserved slot(s), but the ring has "
                f"{self.slots} and {taken} are reserved already"
                + (f" ({others})" if others else "")
                + f": {self.slots - taken} left. Make the engine with more slots "
                f"(Engine(..., slots=)), or reserve fewer"
            )
        account = SlotAccount(name, reserved, submit)
        self._accounts[name] = account
        return account

    def close(self, account: SlotAccount) -> None:
        """The stream closed: its reservation ends at once (what it still holds is counted
        until released, as a borrower's)."""
        if self._accounts.get(account.name) is account and account is not self.default:
            del self._accounts[account.name]
        account.closed = True
        account.reserved = 0

    def reserved(self) -> int:
        return sum(a.reserved for a in self._accounts.values())

    def owed(self) -> int:
        """Slots the accounts reserved and do not hold."""
        return sum(max(0, a.reserved - a.held) for a in self._accounts.values())

    def may_take(self, account: SlotAccount, free: int) -> bool:
        """``account`` may take one of ``free`` free slots now."""
        if free <= 0:
            return False
        if account.held < account.reserved:
            return True
        return free - 1 >= self.owed()

    def accounts(self) -> list[SlotAccount]:
        return list(self._accounts.values())
