"""Command-line conventions shared by every wrapper entry point.

Bad input is reported as one line on stderr, `<program>: error: <what and how to fix>`,
with exit status 2 and no traceback (DEVELOPERS.md). <program> is the module's own name
(`corpus` for `python -m wrapper.corpus`), as the Make stage of the same name says it.
"""
import argparse
from typing import Callable, NoReturn, Optional
import os
import sys


class UserError(Exception):
    """A problem with the user's input or environment; the message says how to fix it."""


def main_command():
    """How this process was started: `python -m wrapper.corpus`, or the script's name."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    return "python -m " + spec.name if spec else os.path.basename(sys.argv[0])


def program_name(prog: Optional[str] = None) -> str:
    """The name on an error line: the last part of the module's name in `prog` (default:
    main_command()), `corpus` for `python -m wrapper.corpus`."""
    return (prog or main_command()).split()[-1].rsplit(".", 1)[-1]


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser whose errors are one line (`PROGRAM: error: ... (see --help)`)
    rather than its usage block and the error; PROGRAM is program_name(prog). Without a
    `prog`, it is the `python -m` command that runs the module."""

    def __init__(self, prog=None, **kwargs):
        super().__init__(prog=prog or main_command(), **kwargs)

    def error(self, message):
        fail(program_name(self.prog), "%s (see --help)" % message)


def model_parser(prog: str, description: str) -> ArgumentParser:
    """The command line of a step on one trained model: --data-dir D --model-name N."""
    parser = ArgumentParser(prog=prog, description=description)
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--model-name", required=True)
    return parser


def positive_int(text: str, name: str, most: Optional[int] = None) -> int:
    """A command-line count such as TRAIN_SIZE=1000 (no sign, no fraction), at most `most`
    when given, or UserError."""
    digits = str(text).strip()
    if most is not None and len(digits) > len(str(most)) and digits.isdigit():
        value = most + 1       # too long to be in range: not worth converting
    else:
        try:
            value = int(digits) if len(digits) <= 30 else 0
        except ValueError:
            value = 0
    if value <= 0 or digits.startswith("+"):
        raise UserError("%s must be a positive integer, got %r" % (
            name, text if len(str(text)) <= 40 else str(text)[:40] + "..."))
    if most is not None and value > most:
        raise UserError("%s=%s is too large: at most %d" % (
            name, digits if len(digits) <= 40 else "%s... (%d digits)" % (digits[:20],
                                                                          len(digits)), most))
    return value


def fail(program: str, message: str, status: int = 2) -> NoReturn:
    sys.stderr.write("%s: error: %s\n" % (program, message))
    sys.exit(status)


def run_main(main: Callable[[], Optional[int]], program: Optional[str] = None) -> None:
    """Calls main(); turns UserError (and Ctrl-C) into one line and a non-zero exit, named
    `program` (default: program_name())."""
    program = program or program_name()
    try:
        status = main()
    except UserError as e:
        fail(program, str(e))
    except KeyboardInterrupt:
        fail(program, "interrupted", status=130)
    sys.exit(status or 0)
