"""Safe file output shared across torchcross: atomic writes, folder locks, stale temp files.

`atomic_write()` writes a file under a unique temporary name in the same folder,
flushes it to disk, renames it over the target and flushes the folder: a kill or a full
disk at any moment leaves the old file or the new one, never part of one. Temporary
names carry the writer's process id, so `remove_stale_temp_files()` can tell the
leftovers of a killed process from the files of a live one. `lock_folder()` keeps
two runs out of one output folder.
"""

from __future__ import annotations

import errno
import os
import re
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = [
    "FolderInUseError",
    "atomic_write",
    "lock_folder",
    "process_alive",
    "remove_stale_temp_files",
    "temp_name",
]

Writer = Callable[[Path], Any]
_TEMP = re.compile(r"^\.(?P<name>.+)\.tmp-(?P<pid>\d+)-[0-9a-f]{8}(?P<suffix>\.[A-Za-z0-9]+)?$")
LOCK_NAME = ".torchcross.lock"


class FolderInUseError(OSError):
    """Another process holds the lock of an output folder."""


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


def atomic_write(path: str | os.PathLike[str], data: str | bytes | Writer) -> Path:
    """Write ``data`` to ``path`` so that it is either fully replaced or left as it was.

    ``data`` is text (written as UTF-8), bytes, or a function that writes the file it is
    given (e.g. ``lambda tmp: torch.save(state, tmp)``); the temporary file keeps
    ``path``'s suffix, so writers that pick a format by suffix work. The folder is
    created if needed.

    Raises:
        OSError: naming ``path`` (e.g. a full disk); the old file, if any, is unchanged
            and the temporary file is removed.

    Examples:
        >>> import tempfile
        >>> target = Path(tempfile.mkdtemp()) / "notes.txt"
        >>> _ = atomic_write(target, "first")
        >>> _ = atomic_write(target, lambda tmp: tmp.write_text("second"))
        >>> target.read_text(), sorted(p.name for p in target.parent.iterdir())
        ('second', ['notes.txt'])
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_name(path)
    try:
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
        tmp.unlink(missing_ok=True)
        hint = (
            "free some space and run again" if exc.errno == errno.ENOSPC else "check the folder and run again"
        )
        raise OSError(
            exc.errno, f"cannot write {str(path)!r}: {exc.strerror or exc}; it was left as it was; {hint}"
        ) from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return path


def remove_stale_temp_files(folder: str | os.PathLike[str], recursive: bool = True) -> list[Path]:
    """Delete the temporary files `atomic_write()` calls of dead processes left in ``folder``.

    Returns:
        the files removed.

    Examples:
        >>> import tempfile
        >>> folder = Path(tempfile.mkdtemp())
        >>> _ = (folder / ".a.json.tmp-999999999-0123abcd.json").write_text("{")
        >>> [p.name for p in remove_stale_temp_files(folder)], list(folder.iterdir())
        (['.a.json.tmp-999999999-0123abcd.json'], [])
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for path in folder.rglob(".*.tmp-*") if recursive else folder.glob(".*.tmp-*"):
        m = _TEMP.match(path.name)
        if m is None or not path.is_file() or path.is_symlink() or process_alive(int(m["pid"])):
            continue
        path.unlink(missing_ok=True)
        removed.append(path)
    return removed


@contextmanager
def lock_folder(folder: str | os.PathLike[str], what: str = "output folder") -> Iterator[Path]:
    """Hold an exclusive lock on ``folder`` (a ``.torchcross.lock`` file in it) while in the block.

    The lock is released when the block ends or the process dies. Where ``fcntl`` is
    missing (Windows) the block runs unlocked.

    Raises:
        FolderInUseError: another process holds the lock (naming the folder and its id).

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
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
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
