"""Result files: written whole or not at all, one writer at a time, errors in one line.

- ``replaced_atomically``: a temporary file beside the target, renamed onto it when complete.
- ``check_output`` / ``check_input``: refuse paths that are not (or cannot become) regular files
  before any work starts: an empty name, a folder, a FIFO (opening one blocks for ever), a device
  node (``--overwrite`` would replace it), an unwritable folder or file.
- ``OutputLock``: an exclusive ``flock`` on ``.NAME.lock`` beside the output while a run writes
  it, so a second run on the same file is refused with the holder's pid instead of reading a
  file in the middle of its creation. The kernel drops the lock when its holder dies, so a lock
  left by a killed run is simply taken over.
- ``os_error_text``: an ``OSError`` (or h5py's, which often carries the errno only in its text)
  as a few words, ``No space left on device``.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import fcntl
import os
import re
import socket
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

from landscape.errors import ConfigError, SurfaceFileError, first_line


@contextlib.contextmanager
def replaced_atomically(path: Path, tag: str = "tmp") -> Iterator[Path]:
    """A temporary path beside ``path`` for the block to write; renamed onto ``path`` when the
    block ends without an error, removed otherwise. A kill or a failure at any moment leaves
    either the old file or the complete new one at ``path``."""
    tmp = path.with_name(f".{path.name}.{tag}-{os.getpid()}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


def write_bytes_atomically(path: Path, data: bytes | memoryview) -> None:
    """Write ``data`` to ``path`` whole or not at all (plain writes: a full disk is an OSError)."""
    with replaced_atomically(path) as tmp:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)


# --- checks before a run -------------------------------------------------------------------------

_KINDS = (
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISDIR, "a folder"),
)


def not_regular(path: Path) -> str | None:
    """What ``path`` is when it exists and is not a regular file (``a FIFO (named pipe)``)."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    return next((what for test, what in _KINDS if test(mode)), None)


def check_output(out: str | Path, what: str = "--out") -> Path:
    """``out`` as a path this process can create or replace; ConfigError naming the problem."""
    if not str(out).strip():
        raise ConfigError(f"{what} is empty; give the file to write, e.g. {what} results/s.h5")
    path = Path(out)
    kind = not_regular(path)
    if kind is not None:
        raise ConfigError(f"{what} {str(path)!r} is {kind}, not a file; choose a file path")
    folder = path.parent
    if not folder.is_dir():
        raise ConfigError(
            f"output folder {str(folder)!r} does not exist; create it or choose another {what}"
        )
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ConfigError(
            f"cannot write into folder {str(folder)!r} ({_access_reason(folder)}); "
            f"choose another {what}"
        )
    if path.exists() and not os.access(path, os.W_OK):
        raise ConfigError(
            f"{str(path)!r} cannot be written ({_access_reason(path)}); choose another {what}"
        )
    return path


def writable_folder(folder: str | Path, what: str = "--out") -> Path:
    """``folder``, created if missing, checked to take new files; ConfigError otherwise."""
    path = Path(folder)
    kind = not_regular(path)
    if path.exists() and kind != "a folder":
        raise ConfigError(f"{what} {str(path)!r} is {kind or 'a file'}, not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"cannot create folder {str(path)!r} ({os_error_text(exc)}); choose another {what}"
        ) from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise ConfigError(
            f"cannot write into folder {str(path)!r} ({_access_reason(path)}); "
            f"choose another {what}"
        )
    return path


def check_input(path: str | Path, what: str) -> Path:
    """An existing regular file to read; SurfaceFileError naming what it is instead."""
    file = Path(path)
    kind = not_regular(file)
    if kind is not None:
        raise SurfaceFileError(f"{what} {str(file)!r} is {kind}, not a file; check the path")
    if not file.is_file():
        raise SurfaceFileError(f"{what} {str(file)!r} does not exist; check the path")
    return file


def _access_reason(path: Path) -> str:
    """Why ``os.access`` said no: a read-only file system, an immutable file, or permissions."""
    try:
        if os.statvfs(path).f_flag & os.ST_RDONLY:
            return "read-only file system"
    except OSError:
        pass
    return "permission denied, or the file or folder is immutable (chattr +i)"


# --- one writer at a time ------------------------------------------------------------------------


class OutputBusy(SurfaceFileError):
    """Another live run holds the output's lock."""


class OutputLock:
    """An exclusive ``flock`` on ``.NAME.lock`` beside ``target``, held while a run writes it."""

    def __init__(self, target: Path) -> None:
        self.target = target
        self.path = target.with_name(f".{target.name}.lock")
        self._fd: int | None = None

    def acquire(self) -> OutputLock:
        for _ in range(10):  # a finishing holder may unlink the file between our open and lock
            fd = self._open()
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                holder = _read_holder(fd)
                os.close(fd)
                if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    raise SurfaceFileError(
                        f"cannot lock {str(self.path)!r} ({os_error_text(exc)})"
                    ) from None
                raise OutputBusy(
                    f"{str(self.target)!r} is being written by another run ({holder}); wait for "
                    "it to finish (rerunning the same command then resumes or finds it complete), "
                    "or choose another --out"
                ) from None
            if _same_file(fd, self.path):
                self._fd = fd
                self._describe_holder()
                return self
            os.close(fd)
        raise SurfaceFileError(f"cannot lock {str(self.path)!r}: it keeps being replaced")

    def _open(self) -> int:
        try:
            return os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise SurfaceFileError(
                f"cannot create the lock file {str(self.path)!r} ({os_error_text(exc)}); "
                "choose another --out"
            ) from None

    def _describe_holder(self) -> None:
        """Write who holds the lock, for the message a second run prints (best effort: on a
        full disk the lock works without it)."""
        when = _dt.datetime.now().isoformat(timespec="seconds")
        text = f"pid {os.getpid()} on {socket.gethostname()}, since {when}\n".encode()
        with contextlib.suppress(OSError):
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, text, 0)

    def release(self) -> None:
        """Remove the lock file and drop the lock (in that order: see ``acquire``)."""
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            if _same_file(self._fd, self.path):
                os.unlink(self.path)
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> OutputLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _same_file(fd: int, path: Path) -> bool:
    try:
        a, b = os.fstat(fd), os.stat(path)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _read_holder(fd: int) -> str:
    with contextlib.suppress(OSError):
        text = os.pread(fd, 200, 0).decode(errors="replace").strip()
        if text:
            return text
    return "pid unknown"


# --- the output of one run ----------------------------------------------------------------------


class Output:
    """The file one run writes, held under its lock from before the first read to the last write.

    A new file is created in place (atomically: see ``create``). An existing file of the same
    run is resumed. With ``overwrite``, an existing file is not touched until the new one is
    complete: the run writes ``.NAME.partial`` beside it and ``commit`` renames that over the
    old file; a rerun of the same ``--overwrite`` command resumes the partial file.
    """

    def __init__(self, final: str | Path, overwrite: bool = False, what: str = "--out") -> None:
        self.final = check_output(final, what)
        self.overwrite = overwrite
        self.partial = self.final.with_name(f".{self.final.name}.partial")
        self.lock = OutputLock(self.final).acquire()
        self.path: Path | None = None  # where this run writes, once ``open`` has chosen
        self.resumed = False

    def existing(self, check: Callable[[Path], None]) -> Path | None:
        """The file this run would resume, once ``check(path)`` accepted it; None: start afresh.

        Without ``overwrite``: --out itself (``check`` raises for a file of another run). With
        it: the partial file of an interrupted ``--overwrite`` run, if ``check`` accepts it.
        """
        if not self.overwrite:
            if self.final.exists():
                check(self.final)
                return self.final
            return None
        if self.final.exists() and self.partial.exists():
            try:
                check(self.partial)
            except SurfaceFileError:
                return None  # a partial file of another config: started afresh
            return self.partial
        return None

    def open(self, check: Callable[[Path], None], create: Callable[[Path], None]) -> Path:
        """Choose where the run writes: an existing file to resume, or a new one ``create``d."""
        found = self.existing(check)
        if found is not None:
            self.path, self.resumed = found, True
            return found
        replacing = self.overwrite and self.final.exists()
        self.path = self.partial if replacing else self.final
        create(self.path)
        return self.path

    def commit(self) -> None:
        """The run is complete: its partial file replaces the old one (a rename, no copy)."""
        if self.path is None or self.path == self.final:
            return
        try:
            os.replace(self.path, self.final)
        except OSError as exc:
            raise SurfaceFileError(
                f"cannot replace {str(self.final)!r} ({os_error_text(exc)}); the complete new "
                f"surface is kept as {str(self.path)!r}"
            ) from None
        self.path = self.final

    def close(self) -> None:
        self.lock.release()


# --- messages ------------------------------------------------------------------------------------


def os_error_text(exc: BaseException) -> str:
    """A few words for an OSError: its strerror, or the errno HDF5 wrote into its message."""
    if isinstance(exc, OSError) and exc.errno:
        return os.strerror(exc.errno)
    found = re.search(r"errno = (\d+)", str(exc))
    if found:
        return os.strerror(int(found.group(1)))
    return first_line(exc)
