"""The stage table and its runner (wrapper/pipeline.py) seen from Make: every setting reaches
the stages through the environment, so no text a user gives is ever run as a command;
MODEL_NAME is one plain directory name; a FIFO or a file where a directory belongs, and a
read-only DATA_DIR, are named for what they are, in one line. (Paths with spaces, quotes and
non-ASCII end to end, and a read-only DATA_DIR that is up to date: test_demo.py.)
"""
import os
import re
import shlex
import subprocess

import pytest

from conftest import REPO, one_error_line, run
from wrapper import pipeline, settings

MAKE = ["make", "--no-print-directory", "-C", REPO]
# Every target that reads a pipeline variable, and those whose real run would start a
# long-lived or expensive job (they are checked under `make -n` only).
TARGETS = ["corpus", "vocab", "hparams", "pretrain-data", "pretrain", "convert", "verify",
           "predict", "evaluate", "conformance", "tensorboard", "all", "demo", "demo-gpu", "help"]
DRY_ONLY = {"conformance", "tensorboard"}


def our_lines(stderr):
    return [l for l in stderr.splitlines() if l.strip() and not l.startswith("make")]


def hostile(name, sentinels):
    """Text that runs `touch SENTINELS/NAME-*` if any shell or Make ever evaluates it."""
    s = sentinels
    return ("it's \"q\" ; touch {s}/{n}-semi ; $(touch {s}/{n}-dollar) `touch {s}/{n}-tick` "
            "$(shell touch {s}/{n}-make) ${{HOME}} 'x' \\ y"
            ).format(s=s, n=name)


def hostile_settings(tmp_path, sentinels, model_name="m"):
    values = {name: hostile(name, sentinels) for name in pipeline.PIPELINE_VARS}
    # The integer settings are refused as such before anything runs (test_hostile_input_2);
    # here they are plain numbers, so that the free text reaches the commands.
    values.update({name: "1" for name in settings.INTEGER_SETTINGS})
    # So are the choices and the hosts of a training (test_backend.py).
    values.update(BACKEND="tf1", NODE_RANK="0", MASTER_ADDR="127.0.0.1")
    # Paths start in tmp_path (a relative one would land in the repository).
    for name in ("DATA_DIR", "CORPUS", "ELECTRA_DIR", "TASK_DATA"):
        values[name] = str(tmp_path / "paths") + "/" + values[name]
    values["MODEL_NAME"] = model_name if model_name is not None else values["MODEL_NAME"]
    return values


def test_make_exports_exactly_the_pipeline_variables():
    """The Makefile takes its variables from settings.mk (test_settings.py keeps it equal to
    wrapper/settings.py's table) and exports every one."""
    with open(os.path.join(REPO, "Makefile"), encoding="utf-8") as f:
        text = f.read()
    assert re.search(r"^include settings\.mk$", text, re.M)
    assert not re.search(r"^[A-Z_0-9]+ +\?=", text, re.M), "a default outside settings.mk"
    assert re.search(r"^export \$\(USER_VARS\)$", text, re.M)
    # One recipe line per stage target, calling the runner.
    for target in list(pipeline.STAGES) + ["all", "demo"]:
        recipe = re.search(r"^%s:.*\n((?:\t.*\n)*)" % re.escape(target), text, re.M).group(1)
        assert recipe == "\t$(RUN) %s\n" % target, (target, recipe)


def test_make_help_keeps_the_vocab_line_in_its_columns():
    lines = run(MAKE + ["help"]).stdout.splitlines()
    vocab = [l for l in lines if l.startswith("  vocab ")]
    assert vocab == ["  vocab          DATA_DIR/vocab.txt (VOCAB=mbert|train|path)"], vocab
    demo = [l for l in lines if l.startswith("  demo ")][0]
    assert demo.index("whole pipeline") == vocab[0].index("DATA_DIR/")


@pytest.mark.parametrize("target", TARGETS)
def test_free_text_in_every_variable_runs_nothing(tmp_path, target):
    """Quotes, `$(...)`, backticks, `;` and Make's own `$(shell ...)` in every variable at
    once: under `make -n`, in a real run and with a hostile MODEL_NAME, no sentinel file
    appears, no traceback, and the text reaches the commands as one unchanged argument."""
    sentinels = tmp_path / "sentinels"
    sentinels.mkdir()
    values = hostile_settings(tmp_path, sentinels)
    args = ["%s=%s" % kv for kv in sorted(values.items())]
    dry = run(MAKE + ["-n", target] + args, check=False, timeout=120)
    assert "Traceback" not in dry.stderr, dry.stderr
    if target == "predict":
        assert shlex.quote(values["SENTENCE"]) in dry.stdout, dry.stdout
    if target == "hparams":
        assert shlex.quote("--overrides=" + values["HPARAMS_OVERRIDES"]) in dry.stdout
    if target == "evaluate":
        for name, flag in (("TASK", "--task"), ("MODEL", "--model"), ("BASELINE", "--baseline"),
                           ("SEEDS", "--seeds"), ("TASK_DATA", "--task-data")):
            assert shlex.quote("%s=%s" % (flag, values[name])) in dry.stdout, name
    if target in ("corpus", "all", "demo"):
        assert " ".join(shlex.quote("%s=%s" % (flag, values[name])) for flag, name in (
            ("--corpus", "CORPUS"), ("--corpus-encoding", "CORPUS_ENCODING"),
            ("--train-size", "TRAIN_SIZE"))) in dry.stdout, dry.stdout
    if target in ("hparams", "all", "demo"):
        assert "--num-gpus=%s" % values["NUM_GPUS"] in dry.stdout, dry.stdout
    if target not in DRY_ONLY:
        real = run(MAKE + [target] + args, check=False, timeout=300)
        assert "Traceback" not in real.stderr, real.stderr[-3000:]
        if target != "help":
            assert real.returncode != 0
            assert len(our_lines(real.stderr)) >= 1
    named = run(MAKE + [target] + args + ["MODEL_NAME=" + values["DATA_DIR"]], check=False,
                timeout=120)
    assert "Traceback" not in named.stderr, named.stderr
    assert os.listdir(str(sentinels)) == []


@pytest.fixture
def fake_docker(tmp_path):
    """A `docker` first on PATH that records its arguments and fails, as a broken one would."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "docker"
    script.write_text('#!/bin/sh\nprintf "%s\\0" "$@" > "$DOCKER_ARGV_FILE"\nexit 3\n')
    script.chmod(0o755)
    argv_file = tmp_path / "argv"
    env = {"PATH": "%s:%s" % (bin_dir, os.environ["PATH"]), "DOCKER_ARGV_FILE": str(argv_file)}
    return env, lambda: argv_file.read_bytes().decode("utf-8").split("\0")[:-1]


@pytest.mark.parametrize("gpu", ["1", "0"])
def test_docker_run_forwards_every_variable_as_one_argument(tmp_path, fake_docker, gpu):
    env, recorded = fake_docker
    sentinels = tmp_path / "sentinels"
    sentinels.mkdir()
    values = hostile_settings(tmp_path, sentinels)
    for name in ("CORPUS", "ELECTRA_DIR"):
        os.makedirs(values[name])
    proc = run(MAKE + ["docker-run", "TARGET=predict", "GPU=" + gpu] +
               ["%s=%s" % kv for kv in sorted(values.items())], check=False, env=env)
    assert proc.returncode != 0, "docker failed: make must fail"
    assert our_lines(proc.stderr) == ["docker-run: error: docker exited with status 3"], \
        proc.stderr
    argv = recorded()
    assert argv[:2] == ["run", "--rm"] and argv[-2:] == ["make", "predict"]
    assert ("--gpus" in argv) == (gpu == "1")
    forwarded = dict(argv[i + 1].split("=", 1) for i, a in enumerate(argv) if a == "-e")
    inside = dict(values, DATA_DIR="/workspace/data", ELECTRA_DIR="/workspace/electra",
                  CORPUS="/workspace/corpus/0/" + os.path.basename(values["CORPUS"]))
    if gpu == "1":   # a GPU host that would train on the CPU stops at once
        inside["REQUIRE_GPU"] = "1"
    assert forwarded == inside
    mounts = [argv[i + 1] for i, a in enumerate(argv) if a == "-v"]
    assert mounts == [values["DATA_DIR"] + ":/workspace/data",
                      values["ELECTRA_DIR"] + ":/workspace/electra:ro",
                      values["CORPUS"] + ":" + inside["CORPUS"] + ":ro"]
    assert os.listdir(str(sentinels)) == []


def test_docker_run_forwards_tf_config_on_the_host_network(tmp_path, fake_docker):
    env, recorded = fake_docker
    tf_config = '{"cluster": {"worker": ["h1:2222", "h2:2222"]}, "task": {"type": "worker", "index": 1}}'
    proc = run(MAKE + ["docker-run", "TARGET=pretrain", "DATA_DIR=%s" % tmp_path],
               check=False, env=dict(env, TF_CONFIG=tf_config))
    assert proc.returncode != 0
    argv = recorded()
    assert "--network" in argv and argv[argv.index("--network") + 1] == "host"
    assert "TF_CONFIG=" + tf_config in argv and "REQUIRE_GPU=1" in argv


def test_docker_run_forwards_only_what_was_given(tmp_path, fake_docker):
    """The image's make has the same defaults; a default forwarded would count as given
    there (make demo keeps TRAIN_SIZE=100000 only when none is given)."""
    env, recorded = fake_docker
    proc = run(MAKE + ["docker-run", "TARGET=demo", "GPU=0", "DATA_DIR=%s" % tmp_path,
                       "SENTENCE=hola"], check=False, env=env)
    assert proc.returncode != 0
    argv = recorded()
    assert [argv[i + 1] for i, a in enumerate(argv) if a == "-e"] == [
        "DATA_DIR=/workspace/data", "SENTENCE=hola"]
    assert "--gpus" not in argv and argv[-2:] == ["make", "demo"]


def test_docker_run_without_docker_is_one_line(tmp_path):
    path = "/usr/bin:/bin"
    if subprocess.run(["sh", "-c", "command -v docker"], env={"PATH": path},
                      stdout=subprocess.DEVNULL).returncode == 0:
        pytest.skip("a real docker is installed here")
    proc = run(MAKE + ["docker-run", "DATA_DIR=%s" % tmp_path], check=False,
               env={"PATH": path})
    assert proc.returncode != 0
    assert one_error_line(proc.stderr).startswith("docker-run: error: cannot run docker")


@pytest.mark.parametrize("name", ["../../x", "a b", ".hidden", "-x", "x/y", ""])
def test_model_name_must_be_one_plain_directory_name(tmp_path, name):
    for target in ("pretrain", "hparams", "predict"):
        proc = run(MAKE + [target, "DATA_DIR=%s" % tmp_path, "MODEL_NAME=" + name],
                   check=False)
        assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr
        assert one_error_line(proc.stderr) == (
            "%s: error: MODEL_NAME=%r is not a plain directory name; use letters, digits, "
            "'-', '_' and '.' (not first), e.g. MODEL_NAME=electra-spanish" % (target, name))
    assert os.listdir(str(tmp_path)) == []
    assert not os.path.exists(os.path.join(str(tmp_path), "..", "x"))


def test_plain_model_names_are_accepted():
    from wrapper import paths
    for name in ("electra-spanish", "m", "v1.2_final", "7"):
        assert paths.model_dir("d", name) == os.path.join("d", "models", name)


@pytest.mark.parametrize("kind", ["fifo", "file"])
def test_a_fifo_or_file_where_a_directory_belongs_says_what_it_is(tmp_path, kind):
    path = tmp_path / "data"
    if kind == "fifo":
        os.mkfifo(str(path))
    else:
        path.write_text("not a directory\n")
    said = "FIFO (named pipe)" if kind == "fifo" else "regular file"
    for target in ("corpus", "pretrain", "predict", "all"):
        proc = run(MAKE + [target, "DATA_DIR=%s" % path], check=False, timeout=60)
        assert one_error_line(proc.stderr) == (
            "%s: error: DATA_DIR=%s is a %s, not a directory; give a directory"
            % ("corpus" if target == "all" else target, path, said)), proc.stderr
    proc = run(MAKE + ["pretrain-data", "DATA_DIR=%s" % tmp_path, "ELECTRA_DIR=%s" % path],
               check=False, timeout=60)
    assert "ELECTRA_DIR=%s is a %s, not a directory" % (path, said) in one_error_line(
        proc.stderr)
    if kind == "fifo":   # where a file belongs: said too (reading it would block)
        data = str(tmp_path / "d")
        proc = run(MAKE + ["corpus", "DATA_DIR=" + data, "CORPUS=%s" % path], check=False,
                   timeout=60)
        assert one_error_line(proc.stderr) == ("corpus: error: CORPUS=%s is a FIFO (named "
                                               "pipe); give a text file (.txt, .gz) or a "
                                               "directory" % path)
        proc = run(MAKE + ["vocab", "DATA_DIR=" + data, "VOCAB=%s" % path], check=False,
                   timeout=60)
        assert one_error_line(proc.stderr).startswith(
            "vocab: error: VOCAB=%s is a FIFO (named pipe), not a file; give mbert" % path)


def test_vocab_typo_is_named_as_neither_choice(tmp_path):
    proc = run(MAKE + ["vocab", "DATA_DIR=%s" % tmp_path, "VOCAB=Train"], check=False)
    assert one_error_line(proc.stderr) == (
        "vocab: error: VOCAB=Train is neither mbert, train nor an existing file; give mbert, "
        "train or a path to a WordPiece vocab (one token per line)")


def read_only_mount_works():
    import tempfile
    if not os.path.exists("/usr/bin/unshare"):
        return False
    with tempfile.TemporaryDirectory() as d:
        probe = subprocess.run(["unshare", "-rm", "sh", "-c", 'mount --bind -o ro "$1" "$1" '
                                '&& ! touch "$1/x" 2>/dev/null', "sh", d],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return probe.returncode == 0


def read_only(directory, args):
    """`args` run with `directory` mounted read-only (a private mount namespace: no root and
    no change outside the command)."""
    if not read_only_mount_works():
        pytest.skip("unshare -rm (user and mount namespaces) is not available here")
    return ["unshare", "-rm", "sh", "-c", 'mount --bind -o ro "$1" "$1" && shift && exec "$@"',
            "sh", str(directory)] + list(args)


def test_read_only_data_dir_is_said_in_one_line(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for target in ("corpus", "pretrain"):
        proc = run(read_only(data, MAKE + [target, "DATA_DIR=%s" % data, "CORPUS=/x"]),
                   check=False, timeout=60)
        line = one_error_line(proc.stderr)
        assert "Traceback" not in proc.stderr
        if target == "corpus":
            assert line.startswith("corpus: error: DATA_DIR %s is read-only, and corpus must "
                                   "write into it" % data), line
        else:    # its inputs are missing: that comes first
            assert "pretrain_tfrecords, which is missing" in line, line
    assert os.listdir(str(data)) == []


CHILD_STOPPING_ON_ITS_OWN_TERMS = """
import sys, time
print("started", flush=True)
try:
    time.sleep(60)
except KeyboardInterrupt:
    time.sleep(1)    # as a trainer writing its checkpoint
    sys.stderr.write("child: interrupted at step 3; run the same command again to resume\\n")
    sys.exit(130)
"""


@pytest.mark.slow
def test_ctrl_c_lets_the_stage_command_stop_on_its_own_terms(tmp_path):
    """Ctrl-C reaches the whole process group; the runner waits for its command (which says
    where it stopped) instead of killing it, adds no line of its own and records nothing."""
    import signal
    import sys
    import time
    child = tmp_path / "child.py"
    child.write_text(CHILD_STOPPING_ON_ITS_OWN_TERMS)
    proc = subprocess.Popen([sys.executable, os.path.join(REPO, "tests", "stage_runner.py"), "t",
                             str(tmp_path), "--", sys.executable, str(child)], cwd=REPO,
                            start_new_session=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, universal_newlines=True)
    assert proc.stdout.readline() == "started\n"
    time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert err == "child: interrupted at step 3; run the same command again to resume\n"
    assert not (tmp_path / ".stages" / "t.done").exists()
