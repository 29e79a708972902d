"""Supervising a stage's commands: run each in turn, stop them with the runner, let Ctrl-C
reach them, and say in one line which command a signal ended."""
import os
import subprocess
from typing import Any, Dict, Iterable, Optional, Sequence

from wrapper.cli import UserError


def _die_with_parent():
    """In the child: SIGTERM when the runner dies, SIGKILL included (Linux prctl).

    Otherwise a killed runner would leave its stage (a training run) going on unseen, racing
    with the rerun for the same outputs.
    """
    try:
        import ctypes
        import signal
        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, int(signal.SIGTERM), 0, 0, 0)
        if os.getppid() == 1:          # the runner died before prctl took effect
            os.kill(os.getpid(), signal.SIGTERM)
    except (OSError, AttributeError):
        pass


def run_commands(commands: Iterable[Any]) -> int:
    """Runs each command (an argument list, or one with .argv and .cwd) in turn; returns the
    first non-zero exit status, or 0."""
    for command in commands:
        argv, cwd = (command.argv, command.cwd) if hasattr(command, "argv") else (command, None)
        try:
            # close_fds=False: the command inherits the locks the runner holds (the only
            # descriptors marked inheritable), so a lock lasts as long as the command itself,
            # even if this process is killed first.
            proc = subprocess.Popen(argv, cwd=cwd, env=command_environment(command),
                                    close_fds=False, preexec_fn=_die_with_parent)
        except OSError as e:
            raise UserError("cannot run %s: %s" % (argv[0], e.strerror or e))
        status = wait_through_ctrl_c(proc)
        if status < 0:      # killed by a signal: make alone would show "Error 247"
            raise UserError(killed_by_signal(argv, -status))
        if status != 0:
            return status
    return 0


def command_environment(command: Any) -> Optional[Dict[str, str]]:
    """The environment of `command`: this one, with the command's own `env` ({name: value})
    over it, where an empty value unsets the name (Make exports a variable nobody gave as
    empty, and NNODES= would read as a value); None when it has none."""
    extra = getattr(command, "env", None)
    if not extra:
        return None
    environ = dict(os.environ)
    for name, value in extra.items():
        if value:
            environ[name] = value
        else:
            environ.pop(name, None)
    return environ


def wait_through_ctrl_c(proc: subprocess.Popen) -> int:
    """The command's exit status. Ctrl-C reaches the whole process group: the command stops
    on its own terms (the trainer says where it stopped and how to resume) instead of being
    killed by this runner; a second Ctrl-C stops it at once."""
    interrupted = False
    while True:
        try:
            status = proc.wait()
            break
        except KeyboardInterrupt:
            if interrupted:
                proc.terminate()
            interrupted = True
    return (status if status > 0 else 130) if interrupted else status


def killed_by_signal(argv: Sequence[str], number: int) -> str:
    """One line for a command that a signal ended: which command, which signal, what now."""
    import signal
    try:
        name = signal.Signals(number).name
    except ValueError:
        name = "signal %d" % number
    scripts = [a for a in argv[1:] if a.endswith(".py")]
    what = os.path.basename(scripts[0]) if scripts else \
        argv[argv.index("-m") + 1] if "-m" in argv[:-1] else os.path.basename(argv[0])
    hint = ""
    if number == signal.SIGKILL:
        hint = " (out of memory? the kernel's OOM killer sends SIGKILL: see `dmesg`)"
    return ("%s was killed by %s (signal %d)%s; its output was left as it was before; run the "
            "same make command again to redo the stage" % (what, name, number, hint))
