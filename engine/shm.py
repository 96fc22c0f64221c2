"""Shared-memory segments: names, creation with a capacity check, attaching, unlinking.

Lifetimes, as ``multiprocessing.shared_memory`` intends them but stricter:

- Only the engine's own process creates and unlinks segments. It creates them through
  ``SharedMemory`` so that Python's resource tracker unlinks them should the process die
  without closing the engine.
- Workers only attach. They must not register with the resource tracker (CPython issue
  82300): depending on the Python version and start method, an attaching process's tracker
  unlinks the segment, or warns of a leak, when that process exits, and ownership becomes
  ambiguous. They therefore open the file behind the segment and map it themselves.
- A segment's name says who owns it: ``framering-<owner pid>-<engine token>-<what>``, so that
  segments of a process killed with SIGKILL can be recognised and reclaimed safely (never one
  whose owner is still alive).
"""

from __future__ import annotations

import mmap
import os
import re
import secrets
from dataclasses import dataclass
from multiprocessing import shared_memory
from typing import Final

import psutil

from framering.errors import SharedMemoryError

PREFIX: Final = "framering"
SHM_DIR: Final = "/dev/shm"
# Keep this much of /dev/shm free beyond what a new segment needs: tmpfs allocates pages on
# first touch, so a segment that barely fits would kill its writer with SIGBUS later, and other
# programs (and the next segment) need room too.
SHM_HEADROOM_BYTES: Final = 4 * 1024 * 1024

_NAME = re.compile(rf"^{PREFIX}-(\d+)-([0-9a-f]+)-(.+)$")


def new_engine_token() -> str:
    """A short random token that makes one engine's segment names unique."""
    return secrets.token_hex(4)


def segment_name(token: str, what: str) -> str:
    """``framering-<pid>-<token>-<what>`` for a segment owned by this process."""
    return f"{PREFIX}-{os.getpid()}-{token}-{what}"


def owner_pid(name: str) -> int | None:
    """The pid encoded in a framering segment name, or None if the name is not one of ours."""
    match = _NAME.match(name)
    return int(match.group(1)) if match else None


def shm_free_bytes() -> int:
    """Bytes still free in /dev/shm (what a tmpfs can hand out before SIGBUS)."""
    stats = os.statvfs(SHM_DIR)
    return stats.f_bavail * stats.f_frsize


def check_capacity(size: int, what: str) -> None:
    """Raise :class:`SharedMemoryError` unless /dev/shm has room for ``size`` more bytes."""
    if not os.path.isdir(SHM_DIR):
        return  # not Linux-like; let the OS decide
    free = shm_free_bytes()
    if size + SHM_HEADROOM_BYTES > free:
        raise SharedMemoryError(
            f"/dev/shm has {free / 2**20:.1f} MiB free but {what} needs {size / 2**20:.1f} MiB "
            f"(plus {SHM_HEADROOM_BYTES / 2**20:.0f} MiB headroom); enlarge it (in Docker: "
            f"--shm-size), or ask for fewer or smaller slots"
        )


@dataclass(eq=False)
class CreatedSegment:
    """A segment this process created: it alone unlinks it."""

    name: str
    size: int
    _shm: shared_memory.SharedMemory

    @classmethod
    def create(cls, name: str, size: int, what: str) -> CreatedSegment:
        check_capacity(size, what)
        try:
            shm = shared_memory.SharedMemory(name=name, create=True, size=size)
        except OSError as error:
            raise SharedMemoryError(f"could not create {what} ({name}): {error}") from error
        return cls(name, size, shm)

    @property
    def buf(self) -> memoryview:
        buf = self._shm.buf
        assert buf is not None, "segment already closed"
        return buf

    def close_and_unlink(self) -> None:
        """Remove the name from /dev/shm and unmap it where possible.

        The name always goes. The mapping stays alive while numpy views of it exist (for
        instance a finished frame still held by the caller): unmapping it under them would
        turn the next read into a segfault, so it is left to the garbage collector.
        """
        try:
            self._shm.unlink()
        except FileNotFoundError:
            pass
        try:
            self._shm.close()
        except BufferError:
            pass


@dataclass(eq=False)
class AttachedSegment:
    """A segment created elsewhere, mapped here without the resource tracker."""

    name: str
    size: int
    _map: mmap.mmap

    @classmethod
    def attach(cls, name: str) -> AttachedSegment:
        try:
            fd = os.open(os.path.join(SHM_DIR, name), os.O_RDWR)
        except OSError as error:
            raise SharedMemoryError(
                f"cannot attach shared-memory segment {name}: {error}"
            ) from error
        try:
            size = os.fstat(fd).st_size
            # Populate the page tables now: otherwise a worker's first frames into each slot
            # pay thousands of page faults and arrive late.
            flags = mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0)
            mapping = mmap.mmap(fd, size, flags=flags)
        finally:
            os.close(fd)
        return cls(name, size, mapping)

    @property
    def buf(self) -> memoryview:
        return memoryview(self._map)

    def close(self) -> None:
        """Unmap (never unlink: the creator does that). Views still alive keep it mapped."""
        try:
            self._map.close()
        except BufferError:
            pass


def list_segments() -> list[str]:
    """Names of framering segments now in /dev/shm."""
    if not os.path.isdir(SHM_DIR):
        return []
    return sorted(name for name in os.listdir(SHM_DIR) if owner_pid(name) is not None)


def pid_alive(pid: int) -> bool:
    """True if a process with this pid exists (a zombie counts as gone)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
    except psutil.Error:
        return True  # exists, but we may not look at it: certainly not ours to reclaim


def orphaned_segments() -> list[str]:
    """framering segments whose owning process is gone (a parent killed with SIGKILL)."""
    return [name for name in list_segments() if not pid_alive(owner_pid(name) or 0)]


def reclaim_orphans(dry_run: bool = False) -> list[str]:
    """Unlink every framering segment whose owner is gone; returns their names.

    Never touches a segment whose owner is alive. A pid reused by an unrelated process makes
    a segment look owned: it is left alone (the safe mistake).
    """
    names = orphaned_segments()
    if not dry_run:
        for name in names:
            try:
                os.unlink(os.path.join(SHM_DIR, name))
            except FileNotFoundError:
                pass  # Python's resource tracker got there first
    return names
