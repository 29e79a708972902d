"""Shared test fixtures: where the real Spanish text and the reference data live.

Real text comes from Debian's fortunes-es and debian-reference-es (installed by .ci/run)
and from the reference data's byte-exact copy of fortunes-es 1.36 (tests/conformance/).
"""
import gzip
import json
import os
import shutil
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
from wrapper import text_packages  # noqa: E402  (the Debian text paths' home)

CONFORMANCE = os.path.join(REPO, "tests", "conformance")   # google-research/electra's data
ELECTRA_DIR = os.path.join(REPO, "third_party", "electra")
PY = sys.executable                                   # .venv's Python 3.7 under make test
PY_MODERN = os.path.join(REPO, ".venv-modern", "bin", "python")
VOCAB_8K = os.path.join(CONFORMANCE, "vocab-es-8k.txt")
FORTUNES_SHARED = os.path.join(CONFORMANCE, "corpus", "fortunes")
FORTUNES_DEBIAN = text_packages.FORTUNES_DIR
DEBIAN_REFERENCE_TXT = text_packages.DEBIAN_REFERENCE_TXT


def tf1():
    """tensorflow.compat.v1, imported here (the TF suite's tests fail, not skip, without it)."""
    import tensorflow.compat.v1 as tf  # pylint: disable=import-outside-toplevel
    return tf


def pretrain(data_dir, model_name, hparams, check=True):
    """run_pretraining.py --data-dir D --model-name N --hparams JSON, from its folder."""
    return run([PY, "run_pretraining.py", "--data-dir", data_dir, "--model-name", model_name,
                "--hparams", json.dumps(hparams)], check=check, cwd=ELECTRA_DIR)


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


MAKE = ["make", "--no-print-directory", "-C", REPO]


def module(name, *args, **kw):
    """Runs `python -m wrapper.NAME ARGS` with .venv's Python from the repository root."""
    return run([PY, "-m", "wrapper." + name] + list(args), cwd=REPO, **kw)


def read_parts(corpus_dir):
    """(file names, texts) of a corpus directory, in name order."""
    names = sorted(os.listdir(corpus_dir))
    return names, [open(os.path.join(corpus_dir, n), encoding="utf-8").read() for n in names]


def one_error_line(stderr, also_ignore=()):
    """The one line a refused run writes to stderr besides make's own (`make: *** ...`) and
    any line starting with one of `also_ignore` (e.g. "warning"); no traceback."""
    assert "Traceback" not in stderr, stderr[-3000:]
    lines = [l for l in stderr.splitlines() if l.strip() and not l.startswith("make")
             and not l.startswith(tuple(also_ignore))]
    assert len(lines) == 1, stderr[-3000:]
    return lines[0]


def assert_one_line_error(proc, *words, program=None, status=None, also_ignore=()):
    """A refused run: non-zero exit (`status` when given), no traceback, and exactly one
    stderr line besides make's own, `PROGRAM: error: ...`, holding every one of `words`."""
    assert proc.returncode != 0, proc.stdout[-2000:]
    if status is not None:
        assert proc.returncode == status, (proc.returncode, proc.stderr[-2000:])
    line = one_error_line(proc.stderr, also_ignore)
    assert ": error: " in line, line
    if program:
        assert line.startswith(program + ": error: "), line
    for word in words:
        assert word in line, (word, line)
    return line


# Tests that need the internet beyond the package registries are marked
# @pytest.mark.network(host=...) and skipped, saying so, when that host cannot be reached.
# Tests that take more than a few seconds (training beyond a few steps, killed processes, full
# disks, the demo, conformance runs, several processes) are marked slow: `make test` leaves
# them out, `make test-all` (.ci/run) runs them.
def pytest_configure(config):
    config.addinivalue_line("markers", "network(host): needs the internet (HOST:443); "
                                       "skipped when it cannot be reached")
    config.addinivalue_line("markers", "slow: takes more than a few seconds; make test-all "
                                       "runs it, make test does not")


def reachable(host, port=443, timeout=5):
    import socket
    try:
        socket.create_connection((host, port), timeout=timeout).close()
        return True
    except OSError:
        return False


def pytest_runtest_setup(item):
    marker = item.get_closest_marker("network")
    if marker is not None:
        host = marker.kwargs.get("host", "huggingface.co")
        if not reachable(host):
            pytest.skip("offline: %s:443 cannot be reached" % host)


def need(path, how):
    if not os.path.exists(path):
        pytest.fail("missing %s: %s" % (path, how))
    return path


@pytest.fixture(scope="session")
def fortunes_dir():
    """The 24 fortunes-es 1.36 files of the reference data (byte for byte)."""
    return need(FORTUNES_SHARED, "tests/conformance/corpus/fortunes is part of the repository")


@pytest.fixture(scope="session")
def debian_fortunes_dir():
    return need(FORTUNES_DEBIAN, "apt-get install fortunes-es (.ci/run does)")


@pytest.fixture(scope="session")
def debian_reference_lines():
    """Lines of the Spanish Debian Reference (plain text), a second real corpus."""
    need(DEBIAN_REFERENCE_TXT, "apt-get install debian-reference-es (.ci/run does)")
    with gzip.open(DEBIAN_REFERENCE_TXT, "rt", encoding="utf-8") as f:
        return f.read().splitlines()


@pytest.fixture(scope="session")
def spanish_corpus(tmp_path_factory, debian_fortunes_dir, debian_reference_lines):
    """(DATA_DIR, the corpus run) with the normalized Debian text (fortunes + Debian
    Reference) in 2 files, made once."""
    data = str(tmp_path_factory.mktemp("spanish") / "data")
    proc = module("corpus", "--data-dir", data, "--corpus",
                  debian_fortunes_dir + ":" + DEBIAN_REFERENCE_TXT, "--num-files", "2")
    return data, proc


def one_fortunes_file_input(root, seq_length):
    """root/vocab.txt (the 8k vocab) and root/pretrain_tfrecords of one fortunes file at
    seq_length: the smallest real input a trainer accepts. Returns root."""
    shutil.copy(VOCAB_8K, os.path.join(root, "vocab.txt"))
    corpus = os.path.join(root, "corpus")
    os.makedirs(corpus)
    shutil.copy(os.path.join(FORTUNES_SHARED, "refranes.fortunes"), corpus)
    run([PY, os.path.join(ELECTRA_DIR, "build_pretraining_dataset.py"), "--corpus-dir", corpus,
         "--vocab-file", VOCAB_8K, "--output-dir", os.path.join(root, "pretrain_tfrecords"),
         "--max-seq-length", str(seq_length), "--no-lower-case", "--num-processes", "1",
         "--seed", "1"])
    return root
