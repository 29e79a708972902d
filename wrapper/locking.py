"""Locks that keep two runs off the same outputs; a killed holder never blocks the next run.

The lock is `fcntl.flock` on a lock file under DATA_DIR/.locks (outside every stage's
output directory, so no stage ever sees it as a foreign file):
- a stage on the data directory: its stage outputs (corpus, vocab, hparams,
  pretrain_tfrecords) exclusively: corpus, vocab, hparams and pretrain-data take it;
- a stage on model N: the model directory D/models/N exclusively, plus the data
  directory's outputs shared (a training run reads the TFRecords and vocab: a rebuild of them
  must wait, another model may train beside it).
The holder writes its PID, command line and start time into the lock file, so a refused
run says who holds the lock. The stage's commands inherit the lock's file descriptor: the
lock lives exactly as long as they do (and any child they hand the descriptor to).
The kernel drops a flock when its last holder dies, SIGKILL and OOM kills included, so a
stale lock file never blocks: the next run takes it and rewrites the holder line. Lock files
are never deleted (unlinking a lock file while another process waits on it would let two
runs hold "the" lock at once).

wrapper/pipeline.py (every Make stage target) takes the locks in-process with held(), and
hands their descriptors to the stage's commands; `make evaluate` takes its directory's. On a read-only DATA_DIR the lock file is
opened read-only (a flock needs no write access), or skipped when it was never made there.

A stage nested inside another one that holds the same lock (`make all` wrapped around
`make pretrain`) sees the holder is one of its ancestors and goes on without locking again.
"""
import contextlib
import errno
import fcntl
import os
import shlex
import sys
import time
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Optional, Tuple, Union

from wrapper import paths
from wrapper.fsutil import pid_alive
from wrapper.cli import UserError

DATA_LOCK_NAME = "data.lock"


def locks_dir(data_dir: str) -> str:
    return os.path.join(data_dir, ".locks")


def data_lock_file(data_dir: str) -> str:
    return os.path.join(locks_dir(data_dir), DATA_LOCK_NAME)


def model_lock_file(data_dir: str, model_name: str) -> str:
    return os.path.join(locks_dir(data_dir), "model-%s.lock" % model_name.replace(os.sep, "_"))


def evaluation_lock_file(data_dir: str, out_dir: str) -> str:
    """make evaluate's lock on one results directory (models/N/evaluation or evaluation/X)."""
    rel = os.path.relpath(os.path.abspath(out_dir), os.path.abspath(data_dir))
    return os.path.join(locks_dir(data_dir), "evaluate-%s.lock" % rel.replace(os.sep, "_"))


def _parent_pid(pid):
    """The parent of `pid`, or None when it cannot be told (no /proc, process gone)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            stat = f.read()
        return int(stat.rsplit(")", 1)[1].split()[1])   # the name may hold spaces or ')'
    except (OSError, ValueError, IndexError):
        pass
    try:
        import subprocess
        out = subprocess.run(["ps", "-o", "ppid=", "-p", str(pid)], stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, universal_newlines=True,
                             timeout=10).stdout
        return int(out.strip())
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return None


def is_ancestor(pid: int) -> bool:
    """True when `pid` is this process or one of its ancestors."""
    current = os.getpid()
    for _ in range(256):
        if current == pid:
            return True
        if current in (None, 0, 1):
            return False
        current = _parent_pid(current)
    return False


def read_holder(path: str) -> Tuple[Optional[int], Union[Dict[str, str], str]]:
    """(pid or None, text) recorded by the lock's holder."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read().strip()
    except OSError:
        return None, ""
    fields = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    try:
        pid = int(fields.get("pid", ""))
    except ValueError:
        pid = None
    return pid, fields


def describe_holder(fields: Union[Dict[str, str], str], pid: Optional[int]) -> str:
    if pid is None:
        return "another process"
    text = "PID %d" % pid
    if fields.get("label") or fields.get("command"):
        command = fields.get("label") or fields["command"]
        if len(command) > 160:
            command = command[:157] + "..."
        text += " (%s)" % command
    if fields.get("since"):
        text += ", running since %s" % fields["since"]
    return text


def _live_holder_beside(path):
    """A live holder recorded in another lock file of the same directory.

    Shared holders (trainings reading the data directory) record themselves in their model
    lock only; when they block an exclusive request, name one of them.
    """
    directory = os.path.dirname(os.path.abspath(path))
    try:
        names = sorted(os.listdir(directory))
    except OSError:
        return None, {}
    for name in names:
        other = os.path.join(directory, name)
        if not name.endswith(".lock") or os.path.abspath(other) == os.path.abspath(path):
            continue
        pid, fields = read_holder(other)
        if pid is not None and pid != os.getpid() and pid_alive(pid) and _is_locked(other):
            return pid, fields
    return None, {}


def _is_locked(path):
    """True when someone holds an exclusive flock on `path` now."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except OSError:
        return True
    finally:
        os.close(fd)


class Lock(object):
    """An acquired flock on `path`; `fd` is the descriptor that holds it (None when nested)."""

    def __init__(self, path, fd):
        self.path, self.fd = path, fd

    def release(self):
        if self.fd is not None:
            os.close(self.fd)   # closing the last descriptor drops the flock
            self.fd = None


def _open_lock_file(path):
    """(descriptor, writable) for the lock file; (None, False) when it is absent and cannot be
    made (a read-only DATA_DIR: the stages that only read it still run, and a flock works on a
    descriptor opened read-only)."""
    try:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644), True
    except OSError as e:
        if e.errno not in (errno.EROFS, errno.EACCES, errno.EPERM):
            raise UserError("cannot create the lock file %s: %s" % (path, e.strerror or e))
    try:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC), False
    except FileNotFoundError:
        return None, False
    except OSError as e:   # there, but unreadable: running unlocked would be silent
        raise UserError("cannot open the lock file %s: %s" % (path, e.strerror or e))


def acquire(path: str, what: str, shared: bool = False, command: Optional[str] = None,
            label: Optional[str] = None, attempts: int = 3) -> Lock:
    """Takes the lock on `path` without waiting; raises UserError naming the holder.

    A run never waits on another one: it is refused at once, saying who holds the lock and
    how to stop it. The only pause is at most (attempts - 1) x 0.2 s for a holder that has
    its lock but has not yet written its name into the lock file.

    `what` names the protected thing for the message ("model directory data/models/x").
    """
    fd, writable = _open_lock_file(path)
    if fd is None:
        return Lock(path, None)     # a read-only directory nobody ever locked: nothing to keep
    mode = (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB
    for attempt in range(attempts):
        try:
            fcntl.flock(fd, mode)
            break
        except OSError as e:
            if e.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                os.close(fd)
                raise
        pid, fields = read_holder(path)
        if pid is not None and not pid_alive(pid):
            pid = None              # a stale line: the holder is someone without a record
        if pid is None:
            pid, fields = _live_holder_beside(path)
        if pid is not None and is_ancestor(pid):
            os.close(fd)            # our own parent holds it: a nested stage
            return Lock(path, None)
        if pid is None and attempt + 1 < attempts:
            time.sleep(0.2)         # the holder may be writing its line right now
            continue
        os.close(fd)
        raise UserError("%s is in use by %s; wait for it to finish, or stop it%s (lock file %s)"
                        % (what, describe_holder(fields, pid),
                           " (kill %d)" % pid if pid else "", path))
    if not shared and writable:
        command = command or " ".join(shlex.quote(a) for a in sys.argv)
        record = "pid=%d\nlabel=%s\ncommand=%s\nsince=%s\n" % (
            os.getpid(), label or command, command, time.strftime("%Y-%m-%d %H:%M:%S %Z"))
        os.ftruncate(fd, 0)
        os.pwrite(fd, record.encode("utf-8"), 0)
    return Lock(path, fd)


@contextlib.contextmanager
def held(path: str, what: str, shared: bool = False, **kwargs: Any) -> Iterator[Lock]:
    """`with held(lock_file, "model directory X") as lock:` for stages run from this process
    (wrapper/pipeline.py); kwargs go to acquire()."""
    lock = acquire(path, what, shared=shared, **kwargs)
    try:
        yield lock
    finally:
        lock.release()


@dataclass(frozen=True)
class StageLock:
    path: str          # the lock file
    what: str          # what it guards, in words, for the message naming its holder
    shared: bool       # several readers at once; a writer waits for them


def stage_locks(data_dir: str, model_name: Optional[str] = None) -> List[StageLock]:
    """The locks of a stage on the data dir, or on a model when named."""
    data_what = "data directory %s" % data_dir
    if model_name:
        return [StageLock(model_lock_file(data_dir, model_name),
                          "model directory %s" % paths.model_dir(data_dir, model_name), False),
                StageLock(data_lock_file(data_dir), data_what + " (its TFRecords and vocab)",
                          True)]
    return [StageLock(data_lock_file(data_dir), data_what + " (its stage outputs)", False)]
