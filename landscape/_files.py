"""Result files: written whole or not at all, one writer at a time, errors in one line, and
never through a file that is not ours.

- ``replaced_atomically``: a new ``mkstemp`` file beside the target, renamed onto it when
  complete; the target must be absent or a regular file (``check_replaceable``), so a FIFO, a
  device or a symbolic link under the name is refused, never written through or replaced.
  ``staged_into``: the same for writers that name their files themselves.
- ``check_output`` / ``check_input``: refuse paths that are not (or cannot become) regular files
  before any work starts: an empty name, a folder, a FIFO (opening one blocks for ever), a device
  node (``--overwrite`` would replace it), an unwritable folder or file, and an output named as
  a symbolic link (a link planted there would lead to a file that is not ours).
- ``OutputLock``: an exclusive ``flock`` on ``.NAME.lock`` beside the output (opened with
  ``O_NOFOLLOW``: a link planted there is refused) and a lock on the output file's identity
  (device, inode) while a run writes it, so a second run on the same file, by whatever name, is
  refused with the holder's pid instead of reading a file in the middle of its creation. The
  kernel drops the locks when their holder dies, so a lock left by a killed run is taken over.
- ``MemoryFile`` / ``DiskFile`` / ``result_file``: a result file in memory (what the Python API
  computes without ``out=``) or on disk, asked the same questions (``ResultFile``: its name, its
  identity for provenance, what h5py opens), so no caller asks which it is.
- ``os_error_text``: an ``OSError`` (or h5py's, which often carries the errno only in its text)
  as a few words, ``No space left on device``.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import fcntl
import io
import os
import re
import socket
import stat
import struct
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

from landscape.errors import ConfigError, SurfaceFileError, first_line


@contextlib.contextmanager
def replaced_atomically(path: Path, tag: str = "tmp") -> Iterator[Path]:
    """A temporary path beside ``path`` for the block to write; renamed onto ``path`` when the
    block ends without an error, removed otherwise. A kill or a failure at any moment leaves
    either the old file or the complete new one at ``path``.

    ``path`` must be absent or a regular file (``ConfigError`` otherwise, before the block runs
    and again before the rename): a FIFO, a device or a symbolic link there is not replaced. The
    temporary file is made by ``mkstemp`` (a new name, ``O_EXCL``: nothing planted beside the
    target is followed or truncated) with the target's extension, so writers that pick a format
    by the name (matplotlib) see the real one; it gets the old file's permissions, or the usual
    ``0666 & ~umask`` of a new file.
    """
    check_replaceable(path)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.{tag}-", suffix=path.suffix, dir=path.parent)
    tmp = Path(name)
    try:
        os.fchmod(fd, _new_file_mode(path))
        os.close(fd)
        yield tmp
        check_replaceable(path)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


@contextlib.contextmanager
def staged_into(folder: Path) -> Iterator[Path]:
    """A new private folder inside ``folder`` for a writer that names its files itself (a
    TensorBoard writer, ``save_pretrained``); when the block ends without an error, each file
    it wrote is renamed into ``folder``, where only an absent name or a regular file may stand
    (``check_replaceable``). The private folder is removed either way."""
    with tempfile.TemporaryDirectory(prefix=".staged-", dir=folder) as private:
        yield Path(private)
        files = sorted(Path(private).iterdir())
        for file in files:
            check_replaceable(folder / file.name)
        for file in files:
            os.replace(file, folder / file.name)


def write_bytes_atomically(path: Path, data: bytes | memoryview, mode: int | None = None) -> None:
    """Write ``data`` to ``path`` whole or not at all (plain writes: a full disk is an OSError);
    ``mode``: the new file's permissions (else as ``replaced_atomically`` gives them)."""
    with replaced_atomically(path) as tmp:
        fd = os.open(tmp, os.O_WRONLY | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            if mode is not None:
                os.fchmod(fd, mode)
            os.fsync(fd)
        finally:
            os.close(fd)


def _new_file_mode(path: Path) -> int:
    """The permissions a replacement of ``path`` gets: the old file's, else ``0666 & ~umask``."""
    with contextlib.suppress(OSError):
        return stat.S_IMODE(os.lstat(path).st_mode)
    return 0o666 & ~_umask()


def _umask() -> int:
    """The process's umask, read without changing it (Linux); 022 where it cannot be read."""
    with contextlib.suppress(OSError, ValueError), open("/proc/self/status") as f:
        for line in f:
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    return 0o022


# --- checks before a run -------------------------------------------------------------------------

_KINDS = (
    (stat.S_ISLNK, "a symbolic link"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISDIR, "a folder"),
)


def not_regular(path: Path, follow: bool = True) -> str | None:
    """What ``path`` is when it exists and is not a regular file (``a FIFO (named pipe)``);
    ``follow=False``: a symbolic link is named as such instead of followed."""
    try:
        mode = os.stat(path, follow_symlinks=follow).st_mode
    except OSError:
        return None
    return next((what for test, what in _KINDS if test(mode)), None)


def check_replaceable(path: Path) -> None:
    """``path`` is absent or a regular file: the only things a writer may replace. A FIFO, a
    device, a folder or a symbolic link with a name we write (a plot, a temporary file) is
    someone else's: ConfigError, nothing written."""
    kind = not_regular(path, follow=False)
    if kind is not None:
        raise ConfigError(
            f"{str(path)!r} is {kind}, not a file landscape wrote, and is not replaced; "
            "remove it or write elsewhere"
        )


def check_output(out: str | Path, what: str = "--out") -> Path:
    """``out`` as a path this process can create or replace; ConfigError naming the problem.

    A symbolic link is refused, not followed: a link planted where an output goes (``s.h5 ->
    ~/.bashrc`` in a shared folder) would make the command replace a file that is not its own.
    A user who means the link's file names it. Links among the folders above are followed."""
    if not str(out).strip():
        raise ConfigError(f"{what} is empty; give the file to write, e.g. {what} results/s.h5")
    path = Path(out)
    if path.is_symlink():
        target = os.path.realpath(path)
        raise ConfigError(
            f"{what} {str(out)!r} is a symbolic link (to {target!r}); nothing is written through "
            f"a link: give the file's own path ({what} {target}) or another name"
        )
    kind = not_regular(path, follow=False)
    if kind is not None:
        raise ConfigError(f"{what} {str(out)!r} is {kind}, not a file; choose a file path")
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


HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"  # the first 8 bytes of an HDF5 file (no user block)


def check_not_hdf5(path: Path, what: str) -> None:
    """Refuse to replace an HDF5 file (a surface or curvature file: hours of compute) with
    another command's output: ``export --out s.h5 --format csv``, ``inspect --json s.h5`` or
    ``--slurm s.h5`` typed by mistake replaced the surface. ``path`` is ``check_output``'s."""
    try:
        with open(path, "rb") as f:  # a regular file or none (check_output): no FIFO to block on
            head = f.read(len(HDF5_SIGNATURE))
    except OSError:  # absent (or unreadable: then not read as ours either)
        return
    if head == HDF5_SIGNATURE:
        raise ConfigError(
            f"{what} {str(path)!r} is an HDF5 file (a surface or curvature file?), which this "
            "would replace; choose another name"
        )


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


def check_input(path: str | Path | ResultFile, what: str) -> Any:
    """An existing regular file to read, as h5py opens it (a ``Path``, or a ``MemoryFile`` as
    it is); SurfaceFileError naming what it is instead."""
    return result_file(path).readable(what)


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
    """The locks a run holds while it writes ``target``, so that a second run is refused.

    - an exclusive ``flock`` on ``.NAME.lock`` beside the target (beside the file a symbolic
      link leads to, given one; commands never are: ``check_output`` refuses them): this holds
      before the target exists, and its text names the holder;
    - an exclusive open-file-description lock (``F_OFD_SETLK``) on each file the run writes, once
      it exists: a lock on the file's identity (device, inode), so a run reaching the same file
      by another name (a hard link, a bind mount) is refused too. It does not meet HDF5's own
      ``flock`` (Linux keeps the two kinds apart on local file systems).

    The lock file is opened with ``O_NOFOLLOW`` and must be a regular file with one link: a
    symbolic or hard link planted under its name is refused, never followed or truncated.
    """

    def __init__(self, target: Path) -> None:
        self.target = Path(os.path.realpath(target)) if target.is_symlink() else target
        self.path = self.target.with_name(f".{self.target.name}.lock")
        self._fd: int | None = None
        self._held: dict[tuple[int, int], int] = {}  # (device, inode) -> fd holding its lock

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
                try:
                    self.hold(self.target)
                except BaseException:
                    self.release()
                    raise
                return self
            os.close(fd)
        raise SurfaceFileError(f"cannot lock {str(self.path)!r}: it keeps being replaced")

    def _open(self) -> int:
        flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK
        try:
            fd = os.open(self.path, flags, 0o644)
        except OSError as exc:
            why = "a symbolic link" if exc.errno == errno.ELOOP else os_error_text(exc)
            raise SurfaceFileError(
                f"cannot create the lock file {str(self.path)!r} ({why}); remove it if landscape "
                "did not make it, or choose another --out"
            ) from None
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
            os.close(fd)
            what = not_regular(self.path, follow=False) or f"a file with {info.st_nlink} links"
            raise SurfaceFileError(
                f"the lock file {str(self.path)!r} is {what}, not a lock landscape made; "
                "remove it, or choose another --out"
            )
        return fd

    def hold(self, file: Path) -> None:
        """Lock ``file``'s identity (device, inode) for this run, if it exists; OutputBusy when
        another run holds it, by whatever name it reached the file."""
        fd = _open_identity(file)
        if fd is None:
            return
        info = os.fstat(fd)
        identity = (info.st_dev, info.st_ino)
        if identity in self._held or not _ofd_lock(fd):
            os.close(fd)
            if identity in self._held:
                return
            raise OutputBusy(
                f"{str(file)!r} is being written by another run that reached it by another name "
                f"(a hard or symbolic link to the same file: device {info.st_dev}, inode "
                f"{info.st_ino}); wait for it to finish, or choose another --out"
            )
        self._held[identity] = fd

    def _describe_holder(self) -> None:
        """Write who holds the lock, for the message a second run prints (best effort: on a
        full disk the lock works without it)."""
        when = _dt.datetime.now().isoformat(timespec="seconds")
        text = f"pid {os.getpid()} on {socket.gethostname()}, since {when}\n".encode()
        with contextlib.suppress(OSError):
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, text, 0)

    def release(self) -> None:
        """Remove the lock file and drop the locks (in that order: see ``acquire``)."""
        for fd in self._held.values():
            os.close(fd)  # closing the description drops its lock
        self._held.clear()
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


def _open_identity(file: Path) -> int | None:
    """``file`` opened for writing without following a link or blocking on a FIFO; None when
    it is absent or not a regular file (``check_output`` names those)."""
    flags = os.O_WRONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK
    try:
        fd = os.open(file, flags)
    except OSError:
        return None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        return None
    return fd


# struct flock on 64-bit Linux: l_type, l_whence (shorts), l_start, l_len (off_t), l_pid, padding
_WHOLE_FILE = struct.pack("hhqqi4x", fcntl.F_WRLCK, os.SEEK_SET, 0, 0, 0)


def _ofd_lock(fd: int) -> bool:
    """An exclusive open-file-description lock on the whole file, without waiting: False when
    another description holds one. True where the system has no such locks (not Linux)."""
    op = getattr(fcntl, "F_OFD_SETLK", None)
    if op is None or struct.calcsize("P") != 8:  # the layout above is 64-bit Linux's
        return True
    try:
        fcntl.fcntl(fd, op, _WHOLE_FILE)
    except OSError as exc:
        # another holder; any other error (a file system without such locks) leaves the run
        # under its lock file alone
        return exc.errno not in (errno.EAGAIN, errno.EACCES)
    return True


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
        if self.final.exists() and os.path.lexists(self.partial):
            _check_ours(self.partial)
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
            self.lock.hold(found)
            self.path, self.resumed = found, True
            return found
        replacing = self.overwrite and self.final.exists()
        self.path = self.partial if replacing else self.final
        create(self.path)
        self.lock.hold(self.path)
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


class MemoryFile(io.BytesIO):
    """A result file that lives in memory only: the bytes of an HDF5 file, which h5py opens as
    it opens a path (``h5py.File(memory_file, mode)``). What the Python API computes without
    ``out=`` is kept in one, so that nothing is written anywhere; ``Surface.save`` writes its
    bytes to a file. ``name``: what readers call it (plot files are named after it)."""

    def __init__(self, name: str = "surface") -> None:
        super().__init__()
        self.name = name

    def __str__(self) -> str:
        return f"<in-memory {self.name}>"

    def replace_with(self, image: bytes | memoryview) -> None:
        """Make the file ``image`` (a whole HDF5 file's bytes)."""
        self.seek(0)
        self.truncate()
        self.write(image)
        self.seek(0)

    # what readers ask of a result file (``ResultFile``): here, answered without a disk

    @property
    def label(self) -> str:
        return self.name

    @property
    def identity(self) -> str:
        return str(self)

    @property
    def image(self) -> MemoryFile:
        return self

    @property
    def result_path(self) -> MemoryFile:
        return self

    def exists(self) -> bool:
        return True

    def readable(self, what: str) -> MemoryFile:
        return self

    def resolved(self) -> MemoryFile:
        return self


class DiskFile:
    """A result file on disk, answering what a ``MemoryFile`` answers (``ResultFile``)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    @property
    def label(self) -> str:
        return str(self.path)  # as given: messages and plots name the file the user named

    @property
    def identity(self) -> str:
        return str(self.path.resolve())

    @property
    def image(self) -> None:
        return None

    @property
    def result_path(self) -> str:
        return str(self.path)

    def exists(self) -> bool:
        return self.path.is_file()

    def readable(self, what: str) -> Path:
        """The path, once it is an existing regular file (a FIFO would block, a device or a
        folder is not a result file): SurfaceFileError naming what it is instead."""
        kind = not_regular(self.path)
        if kind is not None:
            raise SurfaceFileError(
                f"{what} {str(self.path)!r} is {kind}, not a file; check the path"
            )
        if not self.path.is_file():
            raise SurfaceFileError(f"{what} {str(self.path)!r} does not exist; check the path")
        return self.path

    def resolved(self) -> Path:
        return self.path.resolve()

    def replace_with(self, image: bytes | memoryview) -> None:
        """Make the file ``image``, whole or not at all (``write_bytes_atomically``)."""
        write_bytes_atomically(self.path, image)


class ResultFile(Protocol):
    """A result file (surface, curvature map) on disk (``DiskFile``) or in memory
    (``MemoryFile``): what readers and runs ask of it, so that none of them asks which it is."""

    @property
    def label(self) -> str:
        """What readers call it (``SurfaceValues.path``): the path as given, or the name."""

    @property
    def identity(self) -> str:
        """What provenance records (a curvature map's ``source``): the resolved path, or
        ``<in-memory NAME>``."""

    @property
    def image(self) -> MemoryFile | None:
        """Its bytes, when they are kept in memory (``Surface.save`` writes them)."""

    @property
    def result_path(self) -> str | MemoryFile:
        """What a run hands back (``RunResult.path``): the path string, or the MemoryFile."""

    def exists(self) -> bool:
        """Whether there is a file to read (a MemoryFile always is one)."""

    def readable(self, what: str) -> Path | MemoryFile:
        """What h5py opens, once checked to be a regular file to read (``check_input``)."""

    def resolved(self) -> Path | MemoryFile:
        """What h5py opens, symbolic links followed (a file rewritten in place is the link's)."""

    def replace_with(self, image: bytes | memoryview) -> None:
        """Make the file ``image`` (a whole HDF5 file's bytes)."""


def result_file(path: str | Path | ResultFile) -> ResultFile:
    """``path`` as a ``ResultFile``: a MemoryFile or DiskFile as it is, a path as a DiskFile."""
    return path if isinstance(path, (MemoryFile, DiskFile)) else DiskFile(path)


class MemoryOutput:
    """The ``Output`` of a run kept in memory: nothing to resume, lock or rename."""

    overwrite = False
    resumed = False

    def __init__(self, name: str = "surface") -> None:
        self.final = self.path = MemoryFile(name)

    def existing(self, check: Callable[[Path], None]) -> None:
        return None

    def open(self, check: Callable[[Path], None], create: Callable[[MemoryFile], None]) -> Any:
        create(self.final)
        return self.final

    def commit(self) -> None:
        return None

    def close(self) -> None:
        return None


def _check_ours(partial: Path) -> None:
    """A partial file to resume must be one a run made: a regular file with one link (a link
    planted under its name would be written through, then renamed over the output)."""
    kind = not_regular(partial, follow=False)
    if kind is None and os.lstat(partial).st_nlink != 1:
        kind = f"a file with {os.lstat(partial).st_nlink} hard links"
    if kind is not None:
        raise SurfaceFileError(
            f"{str(partial)!r} is {kind}, not a partial file landscape made; remove it"
        )


# --- messages ------------------------------------------------------------------------------------


def os_error_text(exc: BaseException) -> str:
    """A few words for an OSError: its strerror, or the errno HDF5 wrote into its message."""
    if isinstance(exc, OSError) and exc.errno:
        return os.strerror(exc.errno)
    found = re.search(r"errno = (\d+)", str(exc))
    if found:
        return os.strerror(int(found.group(1)))
    return first_line(exc)
