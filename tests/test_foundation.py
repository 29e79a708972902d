"""The ground the pipeline stands on: pins, environments, Docker image, make help."""
import os
import re
import sys

import pytest

from conftest import REPO, run

LOCK = os.path.join(REPO, "requirements.lock")
DOCKERFILE = os.path.join(REPO, "docker", "Dockerfile")
PIN = re.compile(r"^([A-Za-z0-9_.\-]+)==([A-Za-z0-9_.+\-]+)$")


def read_pins(path):
    pins = {}
    for line in open(path):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = PIN.match(line)
        assert m, "%s: not an exact pin: %r" % (os.path.basename(path), line)
        pins[canonical(m.group(1))] = m.group(2)
    return pins


def canonical(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def test_lock_pins_the_stack():
    pins = read_pins(LOCK)
    for name, version in [("tensorflow-gpu", "1.15.5"), ("protobuf", "3.20.3"),
                          ("transformers", "2.8.0"), ("tokenizers", "0.5.2"),
                          ("torch", "1.4.0"), ("numpy", "1.18.5"), ("pytest", "7.4.4")]:
        assert pins.get(name) == version, (name, pins.get(name))


def test_venv_holds_exactly_the_lock():
    """make setup installed every pin, at its version, and nothing else."""
    import importlib_metadata as metadata  # Python 3.7: the backport (in the lock)
    installed = {canonical(d.metadata["Name"]): d.version for d in metadata.distributions()}
    installed.pop("setuptools", None)  # part of every venv, not a dependency of ours
    assert installed == read_pins(LOCK)


@pytest.mark.network(host="pypi.org")   # pip resolves the lock against the package index
@pytest.mark.slow
def test_lock_is_closed_under_dependencies():
    """Resolving the lock WITH dependencies adds nothing: --no-deps installs lose nothing."""
    proc = run([sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed",
                "--disable-pip-version-check", "-q", "--report", "-", "-r", LOCK], check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    import json
    report = json.loads(proc.stdout)
    resolved = {canonical(item["metadata"]["name"]): item["metadata"]["version"]
                for item in report["install"]}
    resolved.pop("setuptools", None)  # pulled in by tensorboard/markdown; part of every venv
    assert resolved == read_pins(LOCK)


def test_dockerfile_installs_the_lock_and_only_the_lock():
    text = open(DOCKERFILE).read()
    # A base image that still exists (nvidia/cuda:10.x tags were deleted in 2023).
    assert re.search(r"^FROM tensorflow/tensorflow:1\.15\.5-gpu-py3$", text, re.M)
    assert "nvidia/cuda" not in re.findall(r"^FROM .*", text, re.M)[0]
    assert re.search(r"python3\.7 -m venv", text), "the lock is for Python 3.7"
    installs = re.findall(r"pip install ([^&\\\n]*)", text)
    # pip itself first, at the lock's version (the one pin read from the lock by grep) ...
    assert installs[0].strip() == '--no-cache-dir "$(grep -E \'^pip==\' requirements.lock)"', installs
    # ... then the lock, without dependencies, and nothing else.
    assert installs[1:] == ["--no-cache-dir --no-deps -r requirements.lock "], installs
    assert "COPY requirements.lock" in text


def test_hadolint_clean():
    hadolint = os.path.join(os.path.dirname(sys.executable), "hadolint")
    proc = run([hadolint, DOCKERFILE], check=False)
    assert proc.returncode == 0 and proc.stdout.strip() == "", proc.stdout + proc.stderr


def test_make_help_lists_every_stage():
    out = run(["make", "-s", "help"], cwd=REPO).stdout
    listed = set(re.findall(r"^  ([a-z0-9-]+) ", out, re.M))
    for target in ["setup", "setup-modern", "test", "test-all", "demo", "corpus", "vocab",
                   "hparams", "pretrain-data", "pretrain", "convert", "verify", "predict", "tensorboard",
                   "docker-build", "docker-run", "all", "bench-data", "bench-train",
                   "bench-formats"]:
        assert target in listed, target
    for variable in ["DATA_DIR", "MODEL_NAME", "PRESET", "HPARAMS_OVERRIDES", "CORPUS",
                     "TRAIN_SIZE", "VOCAB", "VOCAB_SIZE", "NUM_PROCESSES", "ELECTRA_DIR",
                     "SENTENCE"]:
        assert re.search(r"^  %s=" % variable, out, re.M), variable


def test_make_test_leaves_out_the_slow_tests_and_ci_runs_them_all():
    def pytest_line(target):
        out = run(["make", "-n", target], cwd=REPO).stdout
        return [l for l in out.splitlines() if " -m pytest " in l][0]
    fast, every = pytest_line("test"), pytest_line("test-all")
    assert '-m "not slow"' in fast and " -m " not in every.split(" -m pytest ", 1)[1]
    for line in (fast, every):
        assert "--durations=15" in line and " -u DATA_DIR " in line, line
    with open(os.path.join(REPO, ".ci", "run"), encoding="utf-8") as f:
        commands = [l for l in f.read().splitlines() if l.startswith("make ")]
    assert commands == ["make test-all", "make conformance", "make conformance BACKEND=torch"]


def test_setup_is_idempotent_and_fast():
    proc = run([os.path.join(REPO, "scripts", "setup_venv.sh"), ".venv", "requirements.lock"],
               cwd=REPO)
    assert "up to date" in proc.stdout


@pytest.mark.parametrize("case", ["not-3.7", "none-found"])
def test_setup_without_python37_says_how_out(tmp_path, case):
    env = {"HOME": str(tmp_path)}
    if case == "not-3.7":
        env["PYTHON37"] = "/bin/sh"
    else:
        # Only the basic tools on PATH: no python3.7 there, and no ~/.pyenv under this HOME.
        env["PATH"] = "/usr/bin:/bin"
        if os.path.exists("/usr/bin/python3.7"):
            pytest.fail("this machine has /usr/bin/python3.7; the test needs a PATH without one")
    proc = run([os.path.join(REPO, "scripts", "setup_venv.sh"), str(tmp_path / "venv"), LOCK],
               check=False, env=env)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    if case == "not-3.7":
        assert "is not a Python 3.7 interpreter" in lines[0]
    else:
        assert "pyenv" in lines[0] and "PYTHON37=" in lines[0]
        assert "make docker-run TARGET=demo GPU=0" in lines[0]   # the container, CPU-only host
    assert not (tmp_path / "venv").exists()


# ---- docker/Dockerfile.ngc: NVIDIA's TF1 image for Ampere hosts (issue 10) -------------------

NGC_DOCKERFILE = os.path.join(REPO, "docker", "Dockerfile.ngc")
NGC_LOCK = os.path.join(REPO, "requirements-ngc.lock")
# What nvcr.io/nvidia/tensorflow:23.03-tf1-py3 brings itself (NVIDIA's TF 1.15.5 build).
NGC_IMAGE_STACK = {"absl-py", "astor", "gast", "google-pasta", "grpcio", "h5py",
                   "keras-applications", "keras-preprocessing", "markdown", "markupsafe",
                   "numpy", "opt-einsum", "protobuf", "six", "tensorboard",
                   "tensorflow-estimator", "tensorflow-gpu", "termcolor", "werkzeug", "wrapt",
                   "wheel"}


def test_ngc_lock_is_the_lock_less_the_image_stack():
    """Same pins as requirements.lock wherever the image does not bring its own."""
    main = read_pins(LOCK)
    assert read_pins(NGC_LOCK) == {k: v for k, v in main.items() if k not in NGC_IMAGE_STACK}


def test_ngc_dockerfile_installs_its_lock_on_the_last_tf1_image():
    text = open(NGC_DOCKERFILE).read()
    assert re.findall(r"^FROM .*", text, re.M) == ["FROM nvcr.io/nvidia/tensorflow:23.03-tf1-py3"]
    assert "python3 -m venv --system-site-packages .venv" in text   # sees NVIDIA's TF
    installs = re.findall(r"pip install ([^&\\\n]*)", text)
    assert installs[0].strip() == '--no-cache-dir "$(grep -E \'^pip==\' requirements-ngc.lock)"'
    assert installs[1:] == ["--no-cache-dir --no-deps -r requirements-ngc.lock "], installs
    assert "Hopper" in text and "not" in text   # says plainly: no TF1 on H100


def test_ngc_dockerfile_hadolint_clean():
    hadolint = os.path.join(os.path.dirname(sys.executable), "hadolint")
    proc = run([hadolint, NGC_DOCKERFILE], check=False)
    assert proc.returncode == 0 and proc.stdout.strip() == "", proc.stdout + proc.stderr
