"""Shared test fixtures: where the real Spanish text and the reference data live.

Real text comes from Debian's fortunes-es and debian-reference-es (installed by .ci/run)
and from the conformance folder's byte-exact copy of fortunes-es 1.36.
"""
import gzip
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(os.path.dirname(REPO), "shared")
CONFORMANCE = os.path.join(SHARED, "conformance")
ELECTRA_DIR = os.path.join(REPO, "third_party", "electra")
PY = sys.executable                                   # .venv's Python 3.7 under make test
PY_MODERN = os.path.join(REPO, ".venv-modern", "bin", "python")
VOCAB_8K = os.path.join(CONFORMANCE, "vocab-es-8k.txt")
FORTUNES_SHARED = os.path.join(CONFORMANCE, "corpus", "fortunes")
FORTUNES_DEBIAN = "/usr/share/games/fortunes/es"
DEBIAN_REFERENCE_TXT = "/usr/share/debian-reference/debian-reference.es.txt.gz"

sys.path.insert(0, REPO)


def run(args, check=True, **kwargs):
    """Runs a command, capturing text output; on an unexpected status shows its output."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONWARNINGS="ignore")
    env.update(kwargs.pop("env", {}))
    proc = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, env=env, **kwargs)
    if check and proc.returncode != 0:
        raise AssertionError("command failed (%d): %s\nstdout:\n%s\nstderr:\n%s" % (
            proc.returncode, " ".join(args), proc.stdout[-3000:], proc.stderr[-3000:]))
    return proc


def need(path, how):
    if not os.path.exists(path):
        pytest.fail("missing %s: %s" % (path, how))
    return path


@pytest.fixture(scope="session")
def fortunes_dir():
    """The 24 fortunes-es 1.36 files of the reference data (byte for byte)."""
    return need(FORTUNES_SHARED, "../shared/conformance is needed beside the project")


@pytest.fixture(scope="session")
def debian_fortunes_dir():
    return need(FORTUNES_DEBIAN, "apt-get install fortunes-es (.ci/run does)")


@pytest.fixture(scope="session")
def debian_reference_lines():
    """Lines of the Spanish Debian Reference (plain text), a second real corpus."""
    need(DEBIAN_REFERENCE_TXT, "apt-get install debian-reference-es (.ci/run does)")
    with gzip.open(DEBIAN_REFERENCE_TXT, "rt", encoding="utf-8") as f:
        return f.read().splitlines()
