"""Debian's Spanish text: which packages, where their text is, and installing them.

    python -m wrapper.text_packages [--corpus CORPUS]

The one home of the Debian text paths: make demo's text (PACKAGE_PATHS: fortunes-es and
debian-reference-es) and CORPUS=debian-es's (DEBIAN_ES: those two and Spanish manuals and
man pages, read by wrapper/debian_corpus.py).

make demo reads fortunes-es and debian-reference-es when no CORPUS= is given. On a fresh
Debian or Ubuntu machine they are missing: as root with apt-get this installs them (saying
what it installs); otherwise it stops at once with the exact command to run, or the CORPUS=
way out, instead of letting the demo go on to a download that fails offline. When one of the
two is present the demo can run on it alone, and this only says so. CORPUS=debian-es needs
all of its packages: ensure_installed() installs them or stops the same way.
"""
import collections
import os
import shutil
import subprocess
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from wrapper.cli import ArgumentParser, UserError, run_main

FORTUNES_DIR = "/usr/share/games/fortunes/es"
DEBIAN_REFERENCE_DIR = "/usr/share/debian-reference"
DEBIAN_REFERENCE_TXT = os.path.join(DEBIAN_REFERENCE_DIR, "debian-reference.es.txt.gz")

# package: the file or directory of it that make demo reads
PACKAGE_PATHS = (
    ("fortunes-es", FORTUNES_DIR),
    ("debian-reference-es", DEBIAN_REFERENCE_TXT),
)

# CORPUS=debian-es: each package's text is the files under `root` whose path relative to it
# matches `pattern` (fnmatch: '*' crosses '/'), read as `kind`: fortunes (lines as they are,
# '%' between fortunes), html or man (roff). Chosen for Spanish text per byte downloaded
# (README, "CORPUS=debian-es"); the order is the corpus's.
DebianText = collections.namedtuple("DebianText", "package kind root pattern")
DEBIAN_ES = (
    DebianText("fortunes-es", "fortunes", FORTUNES_DIR, "*.fortunes"),
    DebianText("debian-reference-es", "html", DEBIAN_REFERENCE_DIR, "*.es.html"),
    DebianText("manpages-es", "man", "/usr/share/man/es", "man*/*.gz"),
    DebianText("maint-guide-es", "html", "/usr/share/doc/maint-guide-es/html", "*.html"),
    DebianText("aptitude-doc-es", "html", "/usr/share/doc/aptitude/html/es", "*.html"),
    DebianText("harden-doc", "html", "/usr/share/doc/harden-doc/html/es-ES", "*.html"),
    DebianText("ubuntu-packaging-guide-html-es", "html",
               "/usr/share/doc/ubuntu-packaging-guide-html-es", "*.html"),
    DebianText("gimp-help-es", "html", "/usr/share/gimp/2.0/help/es", "*.html"),
    DebianText("libreoffice-help-es", "html", "/usr/share/libreoffice/help/es", "*.html"),
    # Each manual's pages, not the same text again as one "-big-page" per manual.
    DebianText("lilypond-doc-html-es", "html", "/usr/share/doc/lilypond/html/Documentation",
               "*/*.es.html"),
)
# What the test suite reads: make demo's two and a quick CORPUS=debian-es=... build's (.ci/run
# installs them; a test keeps its list equal to this one).
TEST_PACKAGES = ("fortunes-es", "debian-reference-es", "manpages-es", "maint-guide-es",
                 "aptitude-doc-es")
CORPUS_WAY_OUT = "or give your own text: make demo CORPUS=path/to/text.txt (a .gz or a directory works too)"


def installed_versions(packages: Iterable[str]) -> Dict[str, str]:
    """{package: version} of those of `packages` dpkg has installed ({} without dpkg)."""
    try:
        out = subprocess.run(["dpkg-query", "-W", "-f", "${Package}\t${Status}\t${Version}\n"]
                             + list(packages), stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, universal_newlines=True).stdout
    except OSError:
        return {}
    versions = {}
    for line in out.splitlines():
        fields = line.split("\t")
        if len(fields) == 3 and fields[1].endswith(" installed"):
            versions[fields[0]] = fields[2]
    return versions


def install_command(packages: Iterable[str], as_root: bool) -> str:
    return "%sapt-get install %s" % ("" if as_root else "sudo ", " ".join(packages))


def decide(missing: Sequence[str], present: Sequence[str], is_root: bool, has_apt: bool,
           user: str = "make demo", partial_ok: bool = True,
           way_out: str = CORPUS_WAY_OUT) -> Tuple[str, List[str], str]:
    """What to do about the text packages `user` reads: (action, packages, message).

    missing, present: package names; action is "nothing", "note" (go on with the present
    ones, saying what is missing: only when partial_ok), "install" (as root with apt-get) or
    "stop" (message is the one-line error, ending with `way_out`)."""
    if not missing:
        return "nothing", [], ""
    if is_root and has_apt:
        return "install", list(missing), (
            "installing Debian's %s (Spanish text for %s) with apt-get"
            % (" and ".join(missing), user))
    command = install_command(missing, is_root)
    if present and partial_ok:
        return "note", [], (
            "%s is not installed; the demo uses %s only (for more text: %s)"
            % (" and ".join(missing), " and ".join(present), command))
    if not has_apt:
        return "stop", [], (
            "%s needs Debian's Spanish text (%s) and this machine has no apt-get; "
            "on Debian or Ubuntu run '%s', %s" % (user, ", ".join(missing),
                                                  install_command(missing, False), way_out))
    return "stop", [], (
        "%s needs Debian's Spanish text (%s), which is not installed; run '%s' and "
        "%s again, %s" % (user, ", ".join(missing), command,
                          user if user.startswith("make ") else "make", way_out))


def package_state(package_paths: Optional[Iterable[Tuple[str, str]]] = None
                  ) -> Tuple[List[str], List[str]]:
    """(missing, present) package names, by the file or directory of each that is read."""
    missing, present = [], []
    for package, path in PACKAGE_PATHS if package_paths is None else package_paths:
        (present if os.path.exists(path) else missing).append(package)
    return missing, present


def debian_text_paths() -> List[str]:
    """The text files/directories of make demo's two packages that exist now: its corpus
    when no CORPUS= is given (look after main() ran: it may have installed them)."""
    return [path for _, path in PACKAGE_PATHS if os.path.exists(path)]


def ensure_installed(package_paths: Optional[Iterable[Tuple[str, str]]],
                     user: str = "make demo", partial_ok: bool = True,
                     way_out: str = CORPUS_WAY_OUT) -> None:
    """Installs the missing ones of `package_paths` ((package, path) pairs) as root with
    apt-get, saying so; otherwise stops with the command (or notes what is missing)."""
    missing, present = package_state(package_paths)
    action, packages, message = decide(missing, present, is_root=os.geteuid() == 0,
                                       has_apt=shutil.which("apt-get") is not None,
                                       user=user, partial_ok=partial_ok, way_out=way_out)
    if action == "stop":
        raise UserError(message)
    if action == "note":
        print("text_packages: note: " + message, flush=True)
    if action == "install":
        print("text_packages: " + message, flush=True)
        install(packages, way_out)
        still_missing, _ = package_state(package_paths)
        if still_missing:
            raise UserError("apt-get installed %s but %s is still missing; %s" % (
                " ".join(packages), " ".join(still_missing), way_out))
        print("text_packages: installed %s" % " ".join(packages), flush=True)


def install(packages: List[str], way_out: str = CORPUS_WAY_OUT) -> None:
    """apt-get update (a fresh machine's package lists may be empty), then install."""
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for command in (["apt-get", "update", "-qq"],
                    ["apt-get", "install", "-y", "-qq", "--no-install-recommends"] + packages):
        if subprocess.call(command, env=env) != 0:
            raise UserError("'%s' failed; install them by hand (%s), %s" % (
                " ".join(command), install_command(packages, True), way_out))


def main(argv: Optional[List[str]] = None) -> int:
    parser = ArgumentParser(
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
    ensure_installed(PACKAGE_PATHS)
    return 0


if __name__ == "__main__":
    run_main(main)
