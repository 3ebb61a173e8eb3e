"""The one module that writes files: atomically, only where it may, and cleanly on faults.

Every output of the toolkit goes through here, so four promises hold everywhere:

* **Atomic.** A file is written to ``.NAME.tmp-PID`` beside it and renamed over the old
  one; a directory is written to ``.NAME.tmp-PID`` and swapped with the old one in one
  ``renameat2(RENAME_EXCHANGE)`` (two renames where the file system lacks it). A reader
  sees the old copy or the new one, never a mix, and a killed writer leaves the old one.
* **Never replace what it did not create.** A directory the toolkit writes holds a
  marker file (:data:`MARKER_NAME`) naming its purpose. :func:`check_output_dir` refuses
  an existing directory without the marker of the same purpose (unless ``overwrite``),
  a run directory as anything but itself, an input as the output, an existing regular
  file, a symbolic link, and the current directory.
* **Faults are one line.** A full or read-only disk raises
  :class:`~maskedlm.errors.MaskedLMError` naming the path and what was kept; the
  temporary files are removed first.
* **Dead writers leave nothing for good.** The temporary and swapped-out folders of
  processes that died are removed (or, for an interrupted swap, put back) by the next
  writer or reader; a live writer's are left alone.

The run lock (:class:`RunLock`) lives here too: it is a file like the others.

>>> atomic_write_text(Path("out/card.md"), "# card\\n")  # doctest: +SKIP
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import json
import os
import re
import shutil
import socket
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

from maskedlm.errors import MaskedLMError

LOCK_NAME = ".maskedlm.lock"
MARKER_NAME = ".maskedlm-output.json"
# Purposes whose directories are runs: a run is only ever written by its own kind of job.
RUN_PURPOSES = ("pretrain", "finetune")
# errno values that mean "the disk said no", not "the program is wrong".
WRITE_FAULTS = {errno.ENOSPC: "no space left on the device", errno.EDQUOT: "disk quota exceeded",
                errno.EROFS: "read-only file system", errno.EACCES: "permission denied",
                errno.EPERM: "operation not permitted", errno.EFBIG: "file too large",
                errno.EIO: "input/output error"}
_RENAME_EXCHANGE = 2  # linux/fs.h
_AT_FDCWD = -100


# ----------------------------------------------------------------------------- temp names
def temp_path(path: Path, kind: str = "tmp", suffix: str = "") -> Path:
    """``DIR/.NAME.KIND-PID[SUFFIX]``: hidden, beside ``path`` (same file system, so the
    final rename is atomic), and owned by this process."""
    return path.parent / f".{path.name}.{kind}-{os.getpid()}{suffix}"


def _writer_pid(name: str) -> int | None:
    """The PID in ``.NAME.tmp-PID[.ext]`` / ``.NAME.old-PID``, else None."""
    if not name.startswith("."):
        return None
    for kind in (".tmp-", ".old-"):
        i = name.rfind(kind)
        if i > 0:
            digits = name[i + len(kind):].split(".", 1)[0]
            return int(digits) if digits.isdigit() else None
    return None


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` runs on this host (a process we may not signal counts as alive)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale_temps(target: Path) -> list[Path]:
    """Remove the ``.NAME.tmp-PID*`` entries of ``target`` left by dead processes; the list
    of what was removed. ``.NAME.old-PID`` folders are left to :func:`recover_interrupted_swap`."""
    target = Path(target)
    removed: list[Path] = []
    try:
        siblings = list(target.parent.glob(f".{target.name}.tmp-*"))
    except OSError:
        return removed
    for p in siblings:
        pid = _writer_pid(p.name)
        if pid is None or pid == os.getpid() or pid_alive(pid):
            continue
        _remove(p)
        removed.append(p)
    return removed


def _remove(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p, ignore_errors=True)
    else:
        try:
            p.unlink()
        except OSError:
            pass


# ----------------------------------------------------------------------------- faults
def write_fault(e: BaseException, target: Path, kept: str | None = None) -> MaskedLMError | None:
    """The one-line error for an ``OSError`` the disk raised while writing ``target``
    (full, read-only, no permission); None for anything else (a bug keeps its traceback).

    Writers in Rust (safetensors, tokenizers) raise their own exception types with the
    I/O error in the message, "... (os error 28)"; those count too."""
    code = disk_errno(e)
    if code is None:
        return None
    if kept is None:
        kept = ("the previous copy there is kept and loadable" if Path(target).exists()
                else "nothing was written")
    filename = getattr(e, "filename", None)
    where = filename if filename and code in (errno.EACCES, errno.EPERM) else target
    return MaskedLMError(f"{where}: cannot write: {WRITE_FAULTS[code]}; {kept}")


def _nearly_full(path: Path, margin: int = 1 << 20) -> bool:
    """Whether the file system holding ``path`` has less than ``margin`` bytes free."""
    p = Path(path)
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        st = os.statvfs(p)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < margin


_OS_ERROR = re.compile(r"\(os error (\d+)\)")


def disk_errno(e: BaseException) -> int | None:
    """The errno of a disk fault (:data:`WRITE_FAULTS`) behind ``e``, else None."""
    if isinstance(e, OSError):
        return e.errno if e.errno in WRITE_FAULTS else None
    if isinstance(e, Exception):
        m = _OS_ERROR.search(str(e))
        if m and int(m.group(1)) in WRITE_FAULTS:
            return int(m.group(1))
    return None


@contextmanager
def writing(target: Path, cleanup: Iterable[Path] = (), kept: str | None = None) -> Iterator[None]:
    """Turn a disk fault inside the block into a one-line error about ``target``, after
    removing ``cleanup`` (the block's temporary files); other errors pass through, also
    after the cleanup."""
    try:
        yield
    except BaseException as e:
        # Some writers report a full disk without an errno (torch.save: a RuntimeError from
        # its C++ stream; numpy's tofile: "OSError: N requested and M written"): the free
        # space is looked at before the cleanup gives it back
        full = (isinstance(e, RuntimeError | OSError) and disk_errno(e) is None
                and _nearly_full(target))
        for p in cleanup:
            _remove(p)
        if full:
            e = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        err = write_fault(e, target, kept)
        if err is not None:
            raise err from None
        raise


# ----------------------------------------------------------------------------- files
def atomic_write_with(path: str | Path, write: Callable[[Path], Any], suffix: str = "") -> Path:
    """Call ``write(tmp_path)`` then rename ``tmp_path`` to ``path``; ``suffix`` ends the
    temporary name for writers that go by the extension (``.png``, ``.npy``).

    ``path`` must not be a directory; a symbolic link at ``path`` is replaced by the file,
    never followed.

    >>> atomic_write_with(Path("x.npy"), lambda t: np.save(t, a), suffix=".npy")  # doctest: +SKIP
    """
    path = Path(path)
    if path.is_dir() and not path.is_symlink():
        raise MaskedLMError(f"{path}: is a directory; give a file name")
    tmp = temp_path(path, suffix=suffix)
    with writing(path, cleanup=[tmp]):
        path.parent.mkdir(parents=True, exist_ok=True)
        clean_stale_temps(path)
        write(tmp)
        os.replace(tmp, path)
    return path


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temporary file + rename)."""
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            f.write(data)
    return atomic_write_with(path, write)


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8, whatever the locale) to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_stream(path: str | Path, write: Callable[[BinaryIO], Any]) -> Path:
    """``write(f)`` on an open binary temporary file (``np.save``, ``np.savez``,
    ``torch.save``), then rename it to ``path``."""
    def run(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            write(f)
    return atomic_write_with(path, run)


def atomic_save_figure(fig: Any, path: str | Path, dpi: int = 110, tight: bool = True,
                       **savefig: Any) -> Path:
    """Save a matplotlib figure as PNG through a temporary file (no half-written picture)."""
    if tight:
        fig.tight_layout()
    return atomic_write_with(path, lambda tmp: fig.savefig(tmp, dpi=dpi, format="png", **savefig),
                             suffix=".png")


def append_line(path: str | Path, line: str) -> None:
    """Append one line (UTF-8) to a log such as ``metrics.jsonl``; never through a
    symbolic link (``O_NOFOLLOW``)."""
    path = Path(path)
    with writing(path, kept="the lines written before are kept"):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        except OSError as e:
            if e.errno == errno.ELOOP:
                raise MaskedLMError(f"{path}: is a symbolic link; a run's files are never "
                                    "written through one") from None
            raise
        with os.fdopen(fd, "ab") as f:
            f.write((line.rstrip("\n") + "\n").encode("utf-8"))


def repair_jsonl(path: str | Path, keep: Callable[[dict[str, Any]], bool] | None = None) -> int:
    """Rewrite a JSON-lines log without its torn lines (a writer killed mid-line leaves
    one at the end) and, with ``keep``, without the records ``keep`` rejects; the number
    of lines dropped. A missing file is left missing."""
    path = Path(path)
    if path.is_symlink():
        raise MaskedLMError(f"{path}: is a symbolic link; a run's files are never written through one")
    if not path.is_file():
        return 0
    lines, dropped = [], 0
    for ln in path.read_bytes().decode("utf-8", errors="replace").splitlines():
        if not ln.strip():
            continue
        try:
            rec = json.loads(ln)
        except json.JSONDecodeError:
            dropped += 1
            continue
        if not isinstance(rec, dict) or (keep is not None and not keep(rec)):
            dropped += 1
            continue
        lines.append(ln)
    if dropped:
        atomic_write_text(path, "".join(ln + "\n" for ln in lines))
    return dropped


# ----------------------------------------------------------------------------- markers
def write_marker(directory: str | Path, purpose: str) -> None:
    """Mark ``directory`` as written by this toolkit for ``purpose``."""
    (Path(directory) / MARKER_NAME).write_text(json.dumps(
        {"written_by": "maskedlm", "purpose": purpose}) + "\n")


def read_marker(directory: str | Path) -> str | None:
    """The purpose ``directory`` was written for: its marker's, or for directories from
    before markers, the one its own files show (``run.json``: pretrain; ``task.json`` +
    ``head.safetensors``: finetune); None if it is not ours."""
    d = Path(directory)
    try:
        raw = (d / MARKER_NAME).read_text()[:4096]
        info = json.loads(raw)
        if isinstance(info, dict) and info.get("written_by") == "maskedlm":
            return str(info.get("purpose"))
    except (OSError, ValueError, UnicodeDecodeError):
        pass
    if (d / "run.json").is_file() and (d / "checkpoint").is_dir():
        return "pretrain"
    if (d / "task.json").is_file() and (d / "head.safetensors").is_file():
        return "finetune"
    return None


def _ours_only(d: Path) -> bool:
    """Whether ``d`` holds nothing but our lock and marker files."""
    try:
        return all(p.name in (LOCK_NAME, MARKER_NAME) for p in d.iterdir())
    except OSError:
        return False


def check_output_dir(path: str | Path, purpose: str, *, overwrite: bool = False,
                     inputs: Iterable[str | Path | None] = (), whole: bool = True) -> Path:
    """Refuse, with one line, an output directory that writing ``purpose`` there could
    destroy something in; return the path.

    Refused always: a regular file at ``path``; an input named in ``inputs``; a run
    directory for anything but its own kind of run; and with ``whole`` (a directory that
    is replaced whole, not added to), also a symbolic link, the current directory or one
    holding it, and a directory holding an input. Refused unless ``overwrite``:
    an existing, non-empty directory without this toolkit's marker for ``purpose``.

    >>> check_output_dir("exports/hf", "export-hf", inputs=["runs/x"])  # doctest: +SKIP
    """
    p = Path(path)
    if whole and p.is_symlink():
        raise MaskedLMError(f"{p}: is a symbolic link; outputs are never written through one "
                            "(give the directory it points to, or a new one)")
    if p.exists() and not p.is_dir():
        raise MaskedLMError(f"{p}: exists and is not a directory; an existing file is never "
                            "replaced (choose a new output directory)")
    here = Path.cwd().resolve()
    real = p.resolve()
    if whole and (real == here or real in here.parents):
        raise MaskedLMError(f"{p}: is the current directory (or holds it); choose a new "
                            "output directory")
    for src in inputs:
        if src is None or str(src) == "":
            continue
        s = Path(src).resolve()
        if s == real or (whole and real in s.parents):
            raise MaskedLMError(f"{p}: is the input {src} (or holds it); the output must be "
                                "another directory")
    if not p.is_dir():
        return p
    found = read_marker(p)
    if found == purpose:
        return p
    if found in RUN_PURPOSES:
        raise MaskedLMError(f"{p}: is a {found} run; it is never replaced by a "
                            f"{purpose} (choose another output directory)")
    if overwrite or _ours_only(p):
        return p
    what = f"holds a {found} output" if found else "exists and was not written by maskedlm"
    raise MaskedLMError(f"{p}: {what}; choose a new directory, or pass --overwrite to "
                        f"replace it with the {purpose}")


# ----------------------------------------------------------------------------- directories
def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one atomic step (Linux ``renameat2(RENAME_EXCHANGE)``); False
    where the kernel, C library or file system lacks it (the caller falls back)."""
    fn = getattr(_libc(), "renameat2", None)
    if fn is None:
        return False
    rc = fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if rc == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EXDEV):
        return False
    raise OSError(err, os.strerror(err), str(b))


_LIBC: Any = None


def _libc() -> Any:
    global _LIBC  # noqa: PLW0603 - a handle loaded once; no state of its own
    if _LIBC is None:
        try:
            _LIBC = ctypes.CDLL(None, use_errno=True)
        except OSError:
            _LIBC = False
    return _LIBC or None


def recover_interrupted_swap(target: str | Path, wait: float = 5.0) -> bool:
    """Put the previous copy back if a writer died between the two renames of the
    fallback swap (``target`` gone, ``.NAME.old-PID`` left); True if it did.

    A live writer's ``.old-PID`` is left alone: it is mid-swap, and ``target`` comes back
    within moments (this waits up to ``wait`` seconds for it), so a reader opening a
    checkpoint while the trainer swaps it never undoes the swap."""
    target = Path(target)
    if not target.parent.is_dir():
        return False
    deadline = time.monotonic() + wait
    while True:
        olds = sorted(target.parent.glob(f".{target.name}.old-*"), key=lambda p: p.stat().st_mtime)
        if target.exists():
            for old in olds:  # a dead writer's swapped-out copy, after its new one took over
                pid = _writer_pid(old.name)
                if pid is not None and pid != os.getpid() and not pid_alive(pid):
                    shutil.rmtree(old, ignore_errors=True)
            return False
        if not olds:
            return False
        dead = [o for o in olds if (pid := _writer_pid(o.name)) is None or pid == os.getpid()
                or not pid_alive(pid)]
        if dead and len(dead) == len(olds):
            os.replace(dead[-1], target)
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


def atomic_write_dir(target: str | Path, write: Callable[[Path], None], keep: Iterable[str] = (),
                     purpose: str | None = None, overwrite: bool = False,
                     inputs: Iterable[str | Path | None] = ()) -> Path:
    """Run ``write(tmp_dir)``, then swap ``tmp_dir`` in as ``target`` (the old copy is
    removed last).

    With ``purpose``, ``target`` is first checked by :func:`check_output_dir` and the new
    copy carries the marker of ``purpose``; without it the caller has checked (a run's
    own ``checkpoint/``). Entries of the old ``target`` named in ``keep`` move into the
    new one (a rename: files another writer holds open, such as TensorBoard's event
    file, stay valid); so does a held :class:`RunLock` file.

    >>> atomic_write_dir("exports/x", lambda d: (d / "a.txt").write_text("a"), purpose="x")  # doctest: +SKIP
    """
    target = Path(target)
    if purpose is not None:
        check_output_dir(target, purpose, overwrite=overwrite, inputs=inputs)
    tmp, old = temp_path(target), temp_path(target, "old")
    with writing(target, cleanup=[tmp]):
        target.parent.mkdir(parents=True, exist_ok=True)
        recover_interrupted_swap(target)
        clean_stale_temps(target)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        write(tmp)
        marker = purpose or (read_marker(target) if target.is_dir() else None)
        if marker:
            write_marker(tmp, marker)
    if (target / LOCK_NAME).exists():  # the run's lock moves with it (same inode, still held)
        os.replace(target / LOCK_NAME, tmp / LOCK_NAME)
    if target.exists() and not target.is_symlink() and _exchange(tmp, target):
        old = tmp  # the old copy now sits at the temporary name
    else:
        if target.exists() or target.is_symlink():
            os.replace(target, old)
        try:
            os.replace(tmp, target)
        except BaseException:
            if old.exists() and not target.exists():
                os.replace(old, target)
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    for name in keep:
        if (old / name).exists() and not (target / name).exists():
            os.replace(old / name, target / name)
    if old.is_symlink():
        old.unlink()
    else:
        shutil.rmtree(old, ignore_errors=True)
    return target


# ----------------------------------------------------------------------------- the run lock
class RunLock:
    """One process per run directory: ``DIR/.maskedlm.lock`` holds an exclusive ``flock``
    and says who holds it (pid, host, start time).

    The kernel drops the lock when its process dies, however it dies, so the lock of a
    dead process is taken over (with a note naming it) and there is no stale lock to
    delete by hand. A second process stops at once with a one-line error naming the
    holder. Checkpoint swaps of ``DIR`` itself (:func:`atomic_write_dir`) carry the lock
    file along. The directory is removed on release if the lock was all it held.

    With ``purpose``, the directory is first checked by :func:`check_output_dir` and
    marked as a run of that purpose.

    >>> with RunLock("runs/x", purpose="pretrain"):  # doctest: +SKIP
    ...     train()
    """

    def __init__(self, run_dir: str | Path, purpose: str | None = None, overwrite: bool = False,
                 inputs: Iterable[str | Path | None] = (), whole: bool = True) -> None:
        self.dir = Path(run_dir)
        self.path = self.dir / LOCK_NAME
        self.fd: int | None = None
        self.created_dir = False
        self.purpose, self.overwrite, self.inputs, self.whole = purpose, overwrite, list(inputs), whole

    def __enter__(self) -> RunLock:
        if self.purpose is not None:
            check_output_dir(self.dir, self.purpose, overwrite=self.overwrite, inputs=self.inputs,
                             whole=self.whole)
        self.created_dir = not self.dir.exists()
        with writing(self.dir, kept="nothing was written"):
            self.dir.mkdir(parents=True, exist_ok=True)
            self._take()
            if self.purpose is not None and read_marker(self.dir) != self.purpose:
                write_marker(self.dir, self.purpose)
        return self

    def _take(self) -> None:
        for _ in range(10):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _lock_holder(fd)
                os.close(fd)
                raise MaskedLMError(f"{self.dir}: in use by {holder} (lock {self.path}); wait for it "
                                    "to finish or choose another --out") from None
            try:  # the file we locked may have been removed by its releasing holder: retry
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if not same:
                os.close(fd)
                continue
            previous = _lock_holder(fd)
            if previous != "an unknown process":
                print(f"note: {self.path}: taking over the lock of {previous}, which is no longer "
                      "running", file=sys.stderr)
            os.ftruncate(fd, 0)
            os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                     "started": time.strftime("%Y-%m-%d %H:%M:%S")}).encode())
            os.fsync(fd)
            self.fd = fd
            return
        raise MaskedLMError(f"{self.path}: could not take the lock (it keeps changing hands)")

    def __exit__(self, *exc: Any) -> None:
        if self.fd is None:
            return
        self.path.unlink(missing_ok=True)  # before unlocking: a waiter re-checks the inode
        os.close(self.fd)
        self.fd = None
        if self.created_dir and _ours_only(self.dir):  # only the lock and marker: nothing run
            (self.dir / MARKER_NAME).unlink(missing_ok=True)
            try:
                self.dir.rmdir()
            except OSError:
                pass


def _lock_holder(fd: int) -> str:
    """``pid N on HOST since T`` from a lock file's contents."""
    try:
        info = json.loads(os.pread(fd, 4096, 0).decode())
        return f"pid {info['pid']} on {info['host']} since {info['started']}"
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        return "an unknown process"
