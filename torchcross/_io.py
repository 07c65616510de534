"""Safe file output shared across torchcross: atomic writes, folder locks, stale temp files.

`atomic_write()` writes a file under a unique temporary name in the same folder,
flushes it to disk, renames it over the target and flushes the folder: a kill or a full
disk at any moment leaves the old file or the new one, never part of one. Temporary
names carry the writer's process id, so `remove_stale_temp_files()` can tell the
leftovers of a killed process from the files of a live one. `lock_folder()` keeps
two runs out of one output folder. `read_regular_file()` reads a file without ever
blocking: a FIFO, a device or a directory in its place is an error naming it.
"""

from __future__ import annotations

import contextlib
import errno
import fnmatch
import os
import re
import secrets
import stat
from collections.abc import Callable, Collection, Iterator
from pathlib import Path
from typing import Any, cast

__all__ = [
    "FolderInUseError",
    "atomic_write",
    "lock_folder",
    "process_alive",
    "read_regular_file",
    "remove_stale_temp_files",
    "safe_file_name",
    "special_file_kind",
    "temp_name",
]

Writer = Callable[[Path], Any]
_TEMP = re.compile(r"^\.(?P<name>.+)\.tmp-(?P<pid>\d+)-[0-9a-f]{8}(?P<suffix>.*)$")
LOCK_NAME = ".torchcross.lock"


class FolderInUseError(OSError):
    """Another process holds the lock of an output folder."""


def safe_file_name(name: str) -> str:
    """``name`` as one path component: every character other than letters, digits, ``-``, ``_`` and
    ``.`` becomes ``_`` (dataset ids, task names, methods and labels in the names of written files).

    Examples:
        >>> safe_file_name("oct/disease class")
        'oct_disease_class'
    """
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def temp_name(path: str | os.PathLike[str]) -> Path:
    """A unique hidden temporary name beside ``path`` (same suffix, this process's id).

    Examples:
        >>> name = temp_name("out/results.json").name
        >>> name.startswith(".results.json.tmp-"), name.endswith(".json")
        (True, True)
    """
    path = Path(path)
    return path.with_name(f".{path.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}{path.suffix}")


def process_alive(pid: int) -> bool:
    """Whether a process with this id exists on this machine."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory handles
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - file systems that cannot sync a directory
        pass
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove_quietly(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError, NotADirectoryError):  # no folder: nothing to remove
        path.unlink()


def _write_failure(path: Path, exc: OSError) -> str:
    """Why writing ``path`` failed and what to do, naming the folder that is in the way."""
    folder = path.parent
    # the deepest folder on the way that exists: where the file (or its folder) is created
    there = next((p for p in (folder, *folder.parents) if os.path.lexists(p)), folder)
    if not there.is_dir():
        hint = f"{str(there)!r} is a file where a folder should be: move it away, or write elsewhere"
    elif exc.errno == errno.ENOSPC:
        hint = "free some space and run again"
    elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        hint = f"make the folder {str(there)!r} writable, or write elsewhere"
    else:
        hint = f"check the folder {str(there)!r} and run again"
    return f"cannot write {str(path)!r}: {exc.strerror or exc}; it was left as it was; {hint}"


def atomic_write(path: str | os.PathLike[str], data: str | bytes | Writer) -> Path:
    """Write ``data`` to ``path`` so that it is either fully replaced or left as it was.

    ``data`` is text (written as UTF-8), bytes, or a function that writes the file it is
    given (e.g. ``lambda tmp: torch.save(state, tmp)``); the temporary file keeps
    ``path``'s suffix, so writers that pick a format by suffix work. The folder is
    created if needed.

    Raises:
        OSError: naming ``path``, the cause (a full disk, a folder that cannot be created
            or written) and what to do; the old file, if any, is unchanged and the
            temporary file is removed.

    Examples:
        >>> import tempfile
        >>> target = Path(tempfile.mkdtemp()) / "notes.txt"
        >>> _ = atomic_write(target, "first")
        >>> _ = atomic_write(target, lambda tmp: tmp.write_text("second"))
        >>> target.read_text(), sorted(p.name for p in target.parent.iterdir())
        ('second', ['notes.txt'])
    """
    path = Path(path)
    tmp = temp_name(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(data, str):
            data = data.encode("utf-8")
        if isinstance(data, bytes):
            with open(tmp, "xb") as fh:
                fh.write(data)
        elif callable(data):
            data(tmp)
        else:
            raise TypeError(
                f"data must be str, bytes or a function writing a path, got {type(data).__name__}"
            )
        _fsync_file(tmp)
        os.replace(tmp, path)
    except OSError as exc:
        _remove_quietly(tmp)
        raise OSError(exc.errno, _write_failure(path, exc)) from exc
    except BaseException:
        _remove_quietly(tmp)
        raise
    _fsync_dir(path.parent)
    return path


def _stale_temp_target(name: str) -> str | None:
    """The file a temporary of `atomic_write()` by a dead process was for (else ``None``).

    Only names that `temp_name()` makes count: ``.<name>.tmp-<pid>-<8 hex digits><name's
    suffix>``, with ``<pid>`` a process that no longer exists.
    """
    m = _TEMP.match(name)
    if m is None or m["suffix"] != Path(m["name"]).suffix or process_alive(int(m["pid"])):
        return None
    return m["name"]


def remove_stale_temp_files(
    folder: str | os.PathLike[str], names: Collection[str], *, recursive: bool = False
) -> list[Path]:
    """Delete the temporary files that `atomic_write()` calls of dead processes left in ``folder``.

    Only the temporaries of the files that ``names`` match (names or glob patterns,
    e.g. ``["results.json", "*.pt"]``) are removed, and only regular files: a user's file
    that merely looks like a temporary of another name is left alone. With
    ``recursive``, subfolders are searched too (without following symbolic links).

    Returns:
        the files removed.

    Examples:
        >>> import tempfile
        >>> folder = Path(tempfile.mkdtemp())
        >>> _ = (folder / ".a.json.tmp-999999999-0123abcd.json").write_text("{")
        >>> _ = (folder / ".b.txt.tmp-999999999-0123abcd.txt").write_text("mine")
        >>> [p.name for p in remove_stale_temp_files(folder, ["*.json"])]
        ['.a.json.tmp-999999999-0123abcd.json']
        >>> [p.name for p in folder.iterdir()]
        ['.b.txt.tmp-999999999-0123abcd.txt']
    """
    if isinstance(names, str):
        raise TypeError(f"names must be a collection of names or patterns, not the string {names!r}")
    folder = Path(folder)
    if not folder.is_dir():
        return []
    if recursive:
        places = [(Path(top), files) for top, _, files in os.walk(folder)]  # symlinks are not followed
    else:
        places = [(folder, [p.name for p in folder.iterdir()])]
    removed = []
    for top, files in places:
        for name in sorted(files):
            path = top / name
            target = _stale_temp_target(name) if name.startswith(".") else None
            if target is None or not any(fnmatch.fnmatchcase(target, n) for n in names):
                continue
            try:
                if not stat.S_ISREG(os.lstat(path).st_mode):
                    continue
                path.unlink()
            except FileNotFoundError:  # removed meanwhile
                continue
            removed.append(path)
    return removed


_PID_LINE = re.compile(rb"\d*\n?")


def _not_ours(lock: Path, problem: str) -> OSError:
    return FileExistsError(
        f"the lock file {str(lock)!r} {problem}; torchcross leaves it as it is: move it away and run again"
    )


def _open_lock(lock: Path) -> int:
    """Open (or create) the lock file without following a symbolic link; only a lock file of ours."""
    if os.path.islink(lock):
        raise _not_ours(lock, "is a symbolic link (torchcross does not follow it)")
    if os.path.lexists(lock) and not os.path.isfile(lock):
        raise _not_ours(lock, "is not a regular file")
    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(lock, flags | getattr(os, "O_CLOEXEC", 0), 0o644)
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # made a link meanwhile
            raise _not_ours(lock, "is a symbolic link (torchcross does not follow it)") from None
        raise OSError(
            exc.errno, f"cannot open the lock file {str(lock)!r}: {exc.strerror or exc}; check the folder"
        ) from exc
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            problem = "is not a regular file"
        elif info.st_nlink > 1:
            problem = "has other names (hard links), so it may be another file"
        elif info.st_size > 32 or not _PID_LINE.fullmatch(os.pread(fd, 33, 0)):
            problem = "holds other data than a process id, so it is not a torchcross lock file"
        else:
            return fd
    except BaseException:
        os.close(fd)
        raise
    os.close(fd)
    raise _not_ours(lock, problem)


@contextlib.contextmanager
def lock_folder(folder: str | os.PathLike[str], what: str = "output folder") -> Iterator[Path]:
    """Hold an exclusive lock on ``folder`` (a ``.torchcross.lock`` file in it) while in the block.

    The lock is released when the block ends or the process dies. Where ``fcntl`` is
    missing (Windows) the block runs unlocked. The lock file is opened without following
    a symbolic link, and only an empty file or one holding a process id (a lock file of an
    earlier run) is used: nothing else is ever truncated.

    Raises:
        FolderInUseError: another process holds the lock (naming the folder and its id).
        OSError: the lock file is a symbolic link, not a regular file, or not a lock file
            (naming it; it is left as it is).

    Examples:
        >>> import tempfile
        >>> with lock_folder(tempfile.mkdtemp()) as lock:
        ...     lock.name
        '.torchcross.lock'
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    lock = folder / LOCK_NAME
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield lock
        return
    fd = _open_lock(lock)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            raise FolderInUseError(
                f"{what} {str(folder)!r} is in use by another torchcross run (process {holder}); "
                "wait for it to finish or choose another folder"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        try:
            yield lock
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def special_file_kind(mode: int) -> str | None:
    """``None`` for a regular file, else what ``mode`` (an ``st_mode``) is: ``"a FIFO"``, ...

    The one naming of non-regular files in the library's messages.

    Examples:
        >>> import os
        >>> special_file_kind(os.stat(os.devnull).st_mode), special_file_kind(os.stat(".").st_mode)
        ('a character device', 'a directory')
    """
    if stat.S_ISREG(mode):
        return None
    for test, name in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return "a special file"


def read_regular_file(path: str | os.PathLike[str], what: str = "file") -> bytes:
    """The bytes of ``path`` if it is a regular file (or a link to one); opening never blocks.

    The file is opened non-blocking and checked with ``fstat`` before anything is read, so
    a FIFO (which would wait for a writer), a device such as ``/dev/zero`` (endless) or a
    directory in its place is refused instead of hanging or filling memory.

    Args:
        path: the file.
        what: what the file is, for the message (e.g. ``"episode set file"``).

    Raises:
        ValueError: ``path`` is a FIFO, a device, a socket or a directory (naming it).
        OSError: it cannot be opened or read (e.g. ``FileNotFoundError``), naming it.

    Examples:
        >>> import tempfile
        >>> folder = Path(tempfile.mkdtemp())
        >>> _ = (folder / "a.txt").write_text("hello")
        >>> read_regular_file(folder / "a.txt")
        b'hello'
        >>> read_regular_file(folder, "results file")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: results file '...' is a directory, not a regular file; ...
    """
    name = os.fspath(path)
    try:
        fd = os.open(name, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except IsADirectoryError:  # pragma: no cover - Linux opens directories read-only
        fd = None
    except OSError as exc:
        raise type(exc)(exc.errno, f"cannot open {what} {name!r}: {exc.strerror or exc}") from None
    try:
        mode = os.stat(name).st_mode if fd is None else os.fstat(fd).st_mode
        kind = special_file_kind(mode)
        if kind is not None:
            raise ValueError(
                f"{what} {name!r} is {kind}, not a regular file; give the path of the file itself"
            )
        chunks = []
        while chunk := os.read(cast(int, fd), 1 << 20):  # a regular file: fd was opened
            chunks.append(chunk)
        return b"".join(chunks)
    except OSError as exc:
        raise type(exc)(exc.errno, f"cannot read {what} {name!r}: {exc.strerror or exc}") from None
    finally:
        if fd is not None:
            os.close(fd)
