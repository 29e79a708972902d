"""Outputs that are complete or absent, and never a deleted user file.

A stage writes its directory aside (`.NAME.partial-PID` next to it) and renames it into
place only when everything in it is written. A directory that already exists is replaced
only when every file in it is one the stage itself produces (`owned`); otherwise the stage
refuses, naming a foreign file.

A single file of DATA_DIR (vocab.txt, hparams.json) the pipeline writes is noted in
`.stages/written.json`, so that one a user put there is never overwritten.
"""
import contextlib
import errno
import glob
import hashlib
import json
import os
import shutil
from typing import IO, Any, Callable, Iterator, List, Optional

from wrapper import paths
from wrapper.cli import UserError


def foreign_files(directory: str, owned: Callable[[str], bool]) -> List[str]:
    """Files under `directory` (relative paths) for which owned(relpath) is false."""
    found = []
    for root, dirs, files in os.walk(directory):
        for name in files:
            rel = os.path.relpath(os.path.join(root, name), directory)
            if not owned(rel):
                found.append(rel)
    return sorted(found)


def refuse_foreign(directory: str, owned: Callable[[str], bool], what: str) -> None:
    if os.path.isdir(directory):
        foreign = foreign_files(directory, owned)
        if foreign:
            raise UserError("%s %s holds files this stage did not write (%s%s); move them away or "
                            "choose another directory" % (what, directory, foreign[0],
                                                          " and %d more" % (len(foreign) - 1)
                                                          if len(foreign) > 1 else ""))
    elif os.path.exists(directory):
        raise UserError("%s %s exists and is not a directory" % (what, directory))


def _partial_name(final):
    parent, base = os.path.split(os.path.abspath(final))
    return os.path.join(parent, ".%s.partial-%d" % (base, os.getpid()))


def pid_alive(pid: int) -> bool:
    """Whether process `pid` exists (one owned by another user counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def _owner_alive(path):
    """True when the PID in a `.NAME.partial-PID` / `.NAME.old-PID` name is another live run."""
    pid = path.rsplit("-", 1)[-1]
    return pid.isdigit() and int(pid) != os.getpid() and pid_alive(int(pid))


def restore_interrupted_swap(final):
    """A run killed between its two renames left `final` absent and the previous complete set
    as `.NAME.old-PID`: put that set back (it is what `final` was)."""
    if os.path.lexists(final):
        return
    parent, base = os.path.split(os.path.abspath(final))
    olds = [p for p in glob.glob(os.path.join(parent, ".%s.old-*" % base))
            if os.path.isdir(p) and not _owner_alive(p)]
    if olds:
        os.rename(max(olds, key=os.path.getmtime), final)


def remove_stale_partials(final):
    """Leftovers of killed runs: only our own `.NAME.partial-*` / `.NAME.old-*` siblings, and
    none of a run still alive (it would be writing there)."""
    parent, base = os.path.split(os.path.abspath(final))
    for path in glob.glob(os.path.join(parent, ".%s.partial-*" % base)) + \
            glob.glob(os.path.join(parent, ".%s.old-*" % base)):
        if not _owner_alive(path):
            shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def atomic_output_dir(final: str, owned: Callable[[str], bool],
                      what: str = "output directory") -> Iterator[str]:
    """Yields a fresh directory to fill; on success it becomes `final`.

    `owned(relpath)` says which files of an existing `final` this stage may replace.
    On an exception the partial directory is removed and `final` is left as it was.
    """
    restore_interrupted_swap(final)
    refuse_foreign(final, owned, what)
    remove_stale_partials(final)
    partial = _partial_name(final)
    os.makedirs(partial)
    try:
        yield partial
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    fsync_tree(partial)
    if os.path.exists(final):
        old = os.path.join(os.path.dirname(partial),
                           ".%s.old-%d" % (os.path.basename(os.path.abspath(final)), os.getpid()))
        os.rename(final, old)
        os.rename(partial, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(partial, final)


def fsync_tree(directory):
    for root, _, files in os.walk(directory):
        for name in files:
            with open(os.path.join(root, name), "rb") as f:
                os.fsync(f.fileno())


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return "%.1f %s" % (n, unit) if unit != "B" else "%d B" % n
        n /= 1024.0


def disk_full_reason(error: OSError, directory: str, doing: str = "") -> Optional[str]:
    """For a write that failed for lack of room, `no space left on the device [DOING] in DIR
    (X free of Y)` (a quota, EDQUOT: `disk quota exceeded ...`); None for any other error.
    The one wording of a full disk; callers add what was lost and how to go on."""
    if not isinstance(error, OSError) or error.errno not in (errno.ENOSPC, errno.EDQUOT):
        return None
    try:
        fs = os.statvfs(directory)
        free = " (%s free of %s)" % (human_bytes(fs.f_bavail * fs.f_frsize),
                                     human_bytes(fs.f_blocks * fs.f_frsize))
    except OSError:
        free = ""
    return "%s%s in %s%s" % ("disk quota exceeded" if error.errno == errno.EDQUOT else
                             "no space left on the device", " " + doing if doing else "",
                             directory, free)


def partial_path(path: str) -> str:
    """Where a file is written before it is renamed onto `path`: `PATH.partial-PID`."""
    return "%s.partial-%d" % (path, os.getpid())


@contextlib.contextmanager
def atomic_file(path: str, mode: str = "w", rename: bool = True) -> Iterator[IO]:
    """Yields a file open for writing at partial_path(path); when the block ends it is synced
    to the disk and (rename=True) renamed onto `path`: readers see the old file or the new,
    never half of one. On any error (a full disk, Ctrl-C) the partial is removed.
    rename=False leaves the complete partial for the caller to rename with others."""
    tmp = partial_path(path)
    try:
        with open(tmp, mode, encoding=None if "b" in mode else "utf-8") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    if rename:
        os.replace(tmp, path)


def atomic_write_text(path: str, text: str) -> None:
    """Writes `path` (UTF-8) through atomic_file."""
    with atomic_file(path) as f:
        f.write(text)


def atomic_write_bytes(path: str, data: bytes) -> None:
    """Writes `path` through atomic_file."""
    with atomic_file(path, "wb") as f:
        f.write(data)


def os_error_behind(error: BaseException) -> Optional[OSError]:
    """The OSError behind a failed write: torch.save and safetensors report a full disk as
    their own errors, carrying only the system's text ("... No space left on device")."""
    if isinstance(error, OSError):
        return error
    for number in (errno.ENOSPC, errno.EDQUOT):
        if os.strerror(number) in str(error):
            return OSError(number, os.strerror(number))
    return None


def disk_full_error(error: Optional[BaseException], directory: str,
                    needed_bytes: Optional[int] = None,
                    what: str = "the corpus") -> Optional[UserError]:
    """UserError for a write of `what` that failed for lack of space (ENOSPC, EDQUOT), saying
    what to do; None for any other error."""
    reason = disk_full_reason(error, directory, "writing " + what)
    if reason is None:
        return None
    return UserError("%s%s; free some space there or choose another DATA_DIR" % (
        reason, "; it needs up to %s" % human_bytes(needed_bytes) if needed_bytes else ""))


def read_json(path: str) -> Any:
    """The JSON in `path`, or None when it is absent or unreadable."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


# ---- files of DATA_DIR the pipeline wrote (never overwrite one a user put there) ----------

def _written_file(data_dir):
    return os.path.join(paths.stages_dir(data_dir), "written.json")


def text_digest(text):
    return "sha256=" + hashlib.sha256(text.encode("utf-8")).hexdigest()


def write_owned_text(data_dir: str, path: str, text: str) -> None:
    """Writes `path` atomically, noting first that the pipeline wrote it.

    The note comes before the rename and keeps the previous content's digest too, so a kill
    between the two steps leaves a file that is still recognised as the pipeline's own.
    """
    table = read_json(_written_file(data_dir)) or {}
    rel = os.path.relpath(os.path.abspath(path), os.path.abspath(data_dir))
    known = table.get(rel, [])
    known = [known] if isinstance(known, str) else known
    table[rel] = [text_digest(text)] + [d for d in known if d != text_digest(text)][:1]
    os.makedirs(paths.stages_dir(data_dir), exist_ok=True)
    atomic_write_text(_written_file(data_dir), json.dumps(table, indent=1, sort_keys=True) + "\n")
    atomic_write_text(path, text)


def check_replaceable(data_dir: str, path: str, hint: str) -> None:
    """Raises UserError if `path` exists and is not a file the pipeline wrote there."""
    if not os.path.lexists(path):
        return
    kind = paths.kind_of(path)
    if kind != "regular file":    # a FIFO would block the read below
        raise UserError("%s is a %s, not a file this pipeline wrote; %s" % (path, kind, hint))
    table = read_json(_written_file(data_dir)) or {}
    rel = os.path.relpath(os.path.abspath(path), os.path.abspath(data_dir))
    with open(path, "rb") as f:
        digest = "sha256=" + hashlib.sha256(f.read()).hexdigest()
    if digest not in table.get(rel, []):
        raise UserError("%s was not written by this pipeline (or was edited since); %s"
                        % (path, hint))
