"""Debian's Spanish text for `make demo`: present, installed now, or one line saying how.

    python -m wrapper.text_packages [--corpus CORPUS]

make demo reads Debian's fortunes-es and debian-reference-es when no CORPUS= is given. On a
fresh Debian or Ubuntu machine they are missing: as root with apt-get this installs them
(saying what it installs); otherwise it stops at once with the exact command to run, or the
CORPUS= way out, instead of letting the demo go on to a download that fails offline.
When one of the two is present the demo can run on it alone, and this only says so.
"""
import argparse
import os
import shutil
import subprocess

from wrapper.cli import UserError, run_main

# package: the file or directory of it that make demo reads (the Makefile's DEBIAN_* paths)
PACKAGE_PATHS = (
    ("fortunes-es", "/usr/share/games/fortunes/es"),
    ("debian-reference-es", "/usr/share/debian-reference/debian-reference.es.txt.gz"),
)
CORPUS_WAY_OUT = "or give your own text: make demo CORPUS=path/to/text.txt (a .gz or a directory works too)"


def install_command(packages, as_root):
    return "%sapt-get install %s" % ("" if as_root else "sudo ", " ".join(packages))


def decide(missing, present, is_root, has_apt):
    """What to do about the text packages: (action, packages, message).

    missing, present: package names; action is "nothing", "note" (go on with the present
    ones, saying what is missing), "install" (as root with apt-get) or "stop" (message is
    the one-line error)."""
    if not missing:
        return "nothing", [], ""
    if is_root and has_apt:
        return "install", list(missing), (
            "installing Debian's %s (Spanish text for make demo) with apt-get"
            % " and ".join(missing))
    command = install_command(missing, is_root)
    if present:
        return "note", [], (
            "%s is not installed; the demo uses %s only (for more text: %s)"
            % (" and ".join(missing), " and ".join(present), command))
    if not has_apt:
        return "stop", [], (
            "make demo needs Debian's Spanish text (%s) and this machine has no apt-get; "
            "on Debian or Ubuntu run '%s', %s" % (", ".join(missing), install_command(missing, False),
                                                  CORPUS_WAY_OUT))
    return "stop", [], (
        "make demo needs Debian's Spanish text (%s), which is not installed; run '%s' and "
        "make demo again, %s" % (", ".join(missing), command, CORPUS_WAY_OUT))


def package_state():
    """(missing, present) package names, by the files make demo reads."""
    missing, present = [], []
    for package, path in PACKAGE_PATHS:
        (present if os.path.exists(path) else missing).append(package)
    return missing, present


def debian_text_paths():
    """The text files/directories of the two packages that exist now: make demo's corpus
    when no CORPUS= is given (look after main() ran: it may have installed them)."""
    return [path for _, path in PACKAGE_PATHS if os.path.exists(path)]


def install(packages):
    """apt-get update (a fresh machine's package lists may be empty), then install."""
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for command in (["apt-get", "update", "-qq"],
                    ["apt-get", "install", "-y", "-qq", "--no-install-recommends"] + packages):
        if subprocess.call(command, env=env) != 0:
            raise UserError("'%s' failed; install them by hand (%s), %s" % (
                " ".join(command), install_command(packages, True), CORPUS_WAY_OUT))


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m wrapper.text_packages",
        description="Make sure make demo has Debian's Spanish text (fortunes-es, "
                    "debian-reference-es): install it as root with apt-get, else say how.")
    # make exports CORPUS: whoever calls this under make need not pass it.
    parser.add_argument("--corpus", default=os.environ.get("CORPUS", ""),
                        help="the demo's CORPUS= when given: then no package is needed "
                             "(default: $CORPUS)")
    args = parser.parse_args(argv)
    if args.corpus:
        return 0
    missing, present = package_state()
    action, packages, message = decide(missing, present, is_root=os.geteuid() == 0,
                                       has_apt=shutil.which("apt-get") is not None)
    if action == "stop":
        raise UserError(message)
    if action == "note":
        print("text_packages: note: " + message, flush=True)
    if action == "install":
        print("text_packages: " + message, flush=True)
        install(packages)
        still_missing, _ = package_state()
        if still_missing:
            raise UserError("apt-get installed %s but %s is still missing; %s" % (
                " ".join(packages), " ".join(still_missing), CORPUS_WAY_OUT))
        print("text_packages: installed %s" % " ".join(packages), flush=True)
    return 0


if __name__ == "__main__":
    run_main(main, program="text_packages")
