"""Helpers of the reliability tests: start a real process, SIGKILL it at a chosen moment.

(No tests here, so the name does not start with test_: pytest collects nothing from it.)

A process is started in its own session, so that a kill reaches it and every child it
started (make, a shell, the builder's worker processes), as a preemption or Ctrl-C would.
Its stdout and stderr go to files that the trigger functions read while it runs.
"""
import glob
import gzip
import hashlib
import os
import random
import signal
import subprocess
import time

from conftest import DEBIAN_REFERENCE_TXT, FORTUNES_SHARED, REPO

DEFAULT_ENV = {"TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONWARNINGS": "ignore", "PYTHONUNBUFFERED": "1",
               "PYTHONDONTWRITEBYTECODE": "1"}


def spanish_parts():
    """Real Spanish text as bytes: each fortunes-es file, then the Debian Reference."""
    parts = []
    for name in sorted(os.listdir(FORTUNES_SHARED)):
        with open(os.path.join(FORTUNES_SHARED, name), "rb") as f:
            parts.append(f.read())
    with gzip.open(DEBIAN_REFERENCE_TXT, "rb") as f:
        parts.append(f.read())
    return parts


class Running(object):
    """A started command whose output is collected in `log_dir`/NAME.out and .err."""

    def __init__(self, args, log_dir, name, cwd=REPO, env=None):
        os.makedirs(log_dir, exist_ok=True)
        self.args = args
        self.out_path = os.path.join(log_dir, name + ".out")
        self.err_path = os.path.join(log_dir, name + ".err")
        full_env = dict(os.environ, **DEFAULT_ENV)
        full_env.update(env or {})
        with open(self.out_path, "w") as out, open(self.err_path, "w") as err:
            self.proc = subprocess.Popen(args, cwd=cwd, env=full_env, stdout=out, stderr=err,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        self.killed = False
        self.started = time.time()

    def output(self):
        text = ""
        for path in (self.out_path, self.err_path):
            with open(path, errors="replace") as f:
                text += f.read()
        return text

    def stdout(self):
        with open(self.out_path, errors="replace") as f:
            return f.read()

    def stderr(self):
        with open(self.err_path, errors="replace") as f:
            return f.read()

    def kill_when(self, condition, timeout, poll=0.003, only=None):
        """SIGKILLs the whole process group as soon as condition() holds.

        With `only` (a piece of a command line), SIGKILLs just the processes of the group
        whose command line holds it, as the kernel's OOM killer picks the biggest process,
        and waits for the rest to end by themselves.
        Returns True when it killed; False when the process ended first (the caller decides
        whether that is a failure). Raises on timeout.
        """
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                hit = condition()
            except OSError:
                hit = False     # a file vanished between listing and reading it
            if hit:
                if only:
                    self.kill_only(only)
                else:
                    self.kill()
                return True
            time.sleep(poll)
        self.kill()
        raise AssertionError("no trigger within %ds for %s; output:\n%s"
                             % (timeout, " ".join(self.args), self.output()[-3000:]))

    def kill(self):
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()
        self.killed = True
        wait_group_gone(self.proc.pid)

    def kill_only(self, fragment, timeout=120):
        victims = [pid for pid in group_members(self.proc.pid)
                   if fragment in command_line(pid)]
        assert victims, "no process of the group runs %s" % fragment
        for pid in victims:
            os.kill(pid, signal.SIGKILL)
        self.wait(timeout)          # the others notice and end on their own
        self.killed = True
        wait_group_gone(self.proc.pid)

    def wait(self, timeout):
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError("%s did not finish within %ds; output:\n%s"
                                 % (" ".join(self.args), timeout, self.output()[-3000:]))


def group_members(pgid):
    """PIDs of the live processes in process group `pgid` (Linux /proc)."""
    members = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name) as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(name))
    return members


def command_line(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read().replace(b"\0", b" ").decode("utf-8", "replace")
    except OSError:
        return ""


def wait_group_gone(pgid, timeout=10):
    """Waits until no process of the group is left (zombies of killed children included);
    fails, naming what is left, when some still run after `timeout` seconds."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        except PermissionError:
            return
        time.sleep(0.01)
    left = group_members(pgid)
    raise AssertionError("process group %d still running after %s s: %s" % (
        pgid, timeout, "; ".join("%d %s" % (pid, command_line(pid)) for pid in left) or
        "zombies only"))


def after_delay(seconds):
    deadline = time.time() + seconds
    return lambda: time.time() >= deadline


def seeded_delay(seed, low, high):
    return random.Random(seed).uniform(low, high)


def file_matching(pattern):
    return lambda: bool(glob.glob(pattern))


def tree_digest(directory):
    """{relative path: sha256} of every file under `directory` ({} when absent)."""
    digest = {}
    if not os.path.isdir(directory):
        return digest
    for root, _, files in os.walk(directory):
        for name in files:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                digest[os.path.relpath(path, directory)] = hashlib.sha256(f.read()).hexdigest()
    return digest


def file_digest(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()
