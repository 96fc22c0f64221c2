"""Shared-memory segments: names, creation with a capacity check, attaching, unlinking.

Lifetimes, as ``multiprocessing.shared_memory`` intends them but stricter:

- Only the engine's own process creates and unlinks segments. It creates the file itself,
  reserves every page at once (``posix_fallocate``: tmpfs hands out pages on first touch, so
  a segment that was only sized would kill its first writer with SIGBUS when /dev/shm runs
  out; reserving turns that into a ``SharedMemoryError`` at creation), and maps it through
  ``SharedMemory`` so that Python's resource tracker unlinks it should the process die
  without closing the engine.
- The creator holds an exclusive ``flock`` on each segment for as long as it lives. The lock
  is the proof of life the orphan sweep asks for: it is released by the kernel when the owner
  dies, whatever PID namespace the owner or the sweeper runs in.
- Workers only attach. They must not register with the resource tracker (CPython issue
  82300): depending on the Python version and start method, an attaching process's tracker
  unlinks the segment, or warns of a leak, when that process exits, and ownership becomes
  ambiguous. They therefore open the file behind the segment and map it themselves.
- A segment's name says who owns it: ``framering-<owner pid>-<engine token>-<what>``. The
  sweep reclaims a segment only when it is provably dead and ours: the file belongs to our
  uid, its lock can be taken (no owner holds it) and its pid is not alive here. Anything it
  may not open or remove is skipped, never fatal.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import mmap
import os
import re
import secrets
import threading
from dataclasses import dataclass
from multiprocessing import shared_memory
from typing import Final

import psutil

from framering.errors import SharedMemoryError

log = logging.getLogger("framering")

PREFIX: Final = "framering"
SHM_DIR: Final = "/dev/shm"
# Keep this much of /dev/shm free beyond what a new segment needs: tmpfs allocates pages on
# first touch, so a segment that barely fits would kill its writer with SIGBUS later, and other
# programs (and the next segment) need room too.
SHM_HEADROOM_BYTES: Final = 4 * 1024 * 1024

# Guards the hand-over of a created segment's lock fd to whoever closes it.
_FD_LOCK = threading.Lock()

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
    """A segment this process created and reserved: it alone unlinks it, and it holds the
    segment's lock until then."""

    name: str
    size: int
    _shm: shared_memory.SharedMemory
    _lock_fd: int

    @classmethod
    def create(cls, name: str, size: int, what: str) -> CreatedSegment:
        check_capacity(size, what)  # the friendly message, before any file exists
        path = os.path.join(SHM_DIR, name)
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
        except OSError as error:
            raise SharedMemoryError(f"could not create {what} ({name}): {error}") from error
        try:
            # Blocking: a sweeper in another process may hold the lock for the moment it
            # takes to look at a file it found (it lets go at once, seeing our pid alive).
            fcntl.flock(fd, fcntl.LOCK_EX)
            if os.stat(path).st_ino != os.fstat(fd).st_ino:  # a sweeper that could not see us
                raise SharedMemoryError(f"{what} ({name}) was removed while being created")
            _reserve(fd, size, what, name)
            shm = shared_memory.SharedMemory(name=name, create=False)
        except OSError as error:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            os.close(fd)
            if isinstance(error, SharedMemoryError):
                raise
            raise SharedMemoryError(f"could not create {what} ({name}): {error}") from error
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            os.close(fd)
            raise
        return cls(name, size, shm, fd)

    @property
    def buf(self) -> memoryview:
        buf = self._shm.buf
        assert buf is not None, "segment already closed"
        return buf

    def close_and_unlink(self) -> None:
        """Remove the name from /dev/shm, unmap it where possible, and drop the lock.

        The name always goes. The mapping stays alive while numpy views of it exist (for
        instance a finished frame still held by the caller): unmapping it under them would
        turn the next read into a segfault, so it is left to the garbage collector. Safe to
        call again (a close that was interrupted finishes).
        """
        try:
            self._shm.unlink()
        except FileNotFoundError:
            pass
        try:
            self._shm.close()
        except BufferError:
            pass
        with _FD_LOCK:  # taken once, even by two threads: never closed twice
            fd, self._lock_fd = self._lock_fd, -1
        if fd >= 0:
            os.close(fd)  # after the unlink: a sweeper never sees it unlocked


def _reserve(fd: int, size: int, what: str, name: str) -> None:
    """Give the segment ``size`` bytes of real pages now, or raise SharedMemoryError."""
    try:
        os.posix_fallocate(fd, 0, size)
    except OSError as error:
        if error.errno not in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
            raise SharedMemoryError(f"could not reserve {what} ({name}): {error}") from error
        free = shm_free_bytes() / 2**20
        raise SharedMemoryError(
            f"/dev/shm ran out of room for {what} ({size / 2**20:.1f} MiB, {free:.1f} MiB "
            f"free): enlarge it (in Docker: --shm-size), or ask for fewer or smaller slots"
        ) from error


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


def _provably_orphaned(name: str) -> bool:
    """Ours (our uid), unlocked (no owner holds it in any namespace), and its pid is gone."""
    path = os.path.join(SHM_DIR, name)
    try:
        if os.stat(path).st_uid != os.getuid():
            return False
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False  # gone already, or not ours to open: never fatal
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False  # its owner holds the lock: alive, wherever its pid lives
        return not pid_alive(owner_pid(name) or 0)
    finally:
        os.close(fd)


def orphaned_segments() -> list[str]:
    """framering segments whose owner is provably gone (a parent killed with SIGKILL)."""
    return [name for name in list_segments() if _provably_orphaned(name)]


def reclaim_orphans(dry_run: bool = False) -> list[str]:
    """Unlink every framering segment whose owner is provably gone; returns their names.

    Never touches a segment whose owner lives (its lock is held), nor one of another user; a
    pid reused by an unrelated process makes a segment look owned and it is left alone (the
    safe mistake). A file that cannot be removed is skipped.
    """
    names = orphaned_segments()
    removed = []
    for name in names:
        if dry_run:
            removed.append(name)
            continue
        try:
            os.unlink(os.path.join(SHM_DIR, name))
            removed.append(name)
            log.info("reclaimed shared memory /dev/shm/%s: its engine's process is gone", name)
        except FileNotFoundError:
            removed.append(name)  # Python's resource tracker got there first
        except OSError:
            pass  # not ours to remove after all: skipped, never fatal
    return removed
