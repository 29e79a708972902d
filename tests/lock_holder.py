"""A process holding locks as the stage runner does, then becoming COMMAND (tests only):

    python tests/lock_holder.py STAGE DATA_DIR [MODEL_NAME] -- COMMAND...
    python tests/lock_holder.py --lock PATH [--shared] [--what TEXT] [--label TEXT] -- COMMAND...

The first takes the Make stage's locks with wrapper/pipeline.py's own take_locks; the second
one lock file, as `make evaluate` takes its directory's. The locks are inherited by COMMAND,
which replaces this process, so that the holder's PID is the command's.

(No tests here: pytest collects nothing from it.)
"""
import contextlib
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from wrapper import locking, pipeline  # noqa: E402
from wrapper.cli import run_main  # noqa: E402


def main():
    cut = sys.argv.index("--")
    own, command = sys.argv[1:cut], sys.argv[cut + 1:]
    stack = contextlib.ExitStack()
    if own[0] == "--lock":
        given = dict(zip(own, own[1:]))
        lock = stack.enter_context(locking.held(
            own[1], given.get("--what", "lock %s" % own[1]), shared="--shared" in own,
            command=" ".join(command), label=given.get("--label")))
        if lock.fd is not None:
            os.set_inheritable(lock.fd, True)
    else:
        stage, data_dir = own[0], own[1]
        pipeline.take_locks(stage, {"DATA_DIR": data_dir,
                                    "MODEL_NAME": own[2] if len(own) > 2 else None}, stack)
    sys.stdout.flush()
    os.execvp(command[0], command)


if __name__ == "__main__":
    # The error line names the stage, as the stage runner's does.
    run_main(main, "lock_holder" if sys.argv[1:2] == ["--lock"] else sys.argv[1])
