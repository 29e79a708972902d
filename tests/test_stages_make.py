"""The Make targets as a whole: help, stage records (skip, redo, cascade), another
ELECTRA_DIR, the demo's corpus fallback and a killed stage runner."""
import hashlib
import json
import os
import shutil

import pytest

from conftest import MAKE, PY, REPO, VOCAB_8K, assert_one_line_error, module, run
from wrapper import pipeline, text_packages


def test_make_help_documents_the_variables():
    text = run(MAKE + ["help"]).stdout
    for name in ["DATA_DIR", "MODEL_NAME", "PRESET", "HPARAMS_OVERRIDES", "CORPUS", "TRAIN_SIZE",
                 "VOCAB", "VOCAB_SIZE", "NUM_PROCESSES", "ELECTRA_DIR", "SENTENCE"]:
        assert "  %s=" % name in text, name
    for target in ["demo", "corpus", "vocab", "hparams", "pretrain-data", "pretrain", "convert",
                   "verify", "predict", "tensorboard", "all"]:
        assert "  %s " % target in text, target


# ---- stage records --------------------------------------------------------------------------

def test_make_stages_skip_redo_and_cascade(tmp_path, debian_fortunes_dir):
    data = str(tmp_path / "d")
    common = ["DATA_DIR=" + data, "CORPUS=" + debian_fortunes_dir, "VOCAB=train",
              "VOCAB_SIZE=2000", "NUM_PROCESSES=2"]

    def make(*targets_and_vars):
        return run(MAKE + list(targets_and_vars) + common).stdout

    first = make("corpus", "vocab", "hparams", "TRAIN_SIZE=3000")
    assert "up to date" not in first
    again = make("corpus", "vocab", "hparams", "TRAIN_SIZE=3000")
    assert again.count("up to date") == 3
    vocab_before = open(os.path.join(data, "vocab.txt")).read()
    # A different TRAIN_SIZE changes the corpus, hence the vocab, hence vocab_size/hparams.
    changed = make("corpus", "vocab", "hparams", "TRAIN_SIZE=6000")
    assert "corpus: redoing (changed: TRAIN_SIZE)" in changed
    assert "vocab: redoing (changed: corpus)" in changed
    assert open(os.path.join(data, "vocab.txt")).read() != vocab_before
    assert "hparams: up to date" not in changed
    # Overrides redo only hparams.
    only = make("corpus", "vocab", "hparams", "TRAIN_SIZE=6000",
                'HPARAMS_OVERRIDES={"num_train_steps": 3}')
    assert only.count("up to date") == 2 and "hparams: redoing (changed: HPARAMS_OVERRIDES)" in only
    # A removed output is made again even though the record exists.
    shutil.rmtree(os.path.join(data, "corpus"))
    assert "corpus: redoing" in make("corpus", "TRAIN_SIZE=6000")


def test_stage_record_only_after_success_and_model_dir_guard(tmp_path):
    data = str(tmp_path / "d")
    os.makedirs(data)
    hparams = tmp_path / "hparams.json"
    hparams.write_text('{"num_train_steps": 10, "learning_rate": 0.001}')
    model = os.path.join(data, "models", "m")
    stage = [PY, os.path.join(REPO, "tests", "stage_runner.py"), "train", data, "--input",
             str(hparams), "--keeps", model, "--may-change", "num_train_steps", "--output",
             os.path.join(model, "ckpt"), "--"]
    proc = run(stage + ["bash", "-c", "mkdir -p %s && touch %s/half && exit 3"
                        % (model, model)], check=False)
    assert proc.returncode == 3
    assert not os.path.exists(os.path.join(data, ".stages", "train.done"))
    # The rerun continues the same directory (a trainer resumes from its checkpoints).
    run(stage + ["touch", os.path.join(model, "ckpt")])
    assert "up to date" in run(stage + ["false"]).stdout
    # More steps: the model is continued, not refused.
    hparams.write_text('{"num_train_steps": 20, "learning_rate": 0.001}')
    assert "redoing (changed: %s)" % hparams in run(stage + ["true"]).stdout
    # Other inputs for a directory holding a model: refused, nothing deleted.
    hparams.write_text('{"num_train_steps": 20, "learning_rate": 0.002}')
    proc = run(stage + ["true"], check=False)
    assert_one_line_error(proc, "started from other inputs", "MODEL_NAME")
    assert sorted(os.listdir(model)) == ["ckpt", "half"]
    # The record still describes the run that finished (learning_rate 0.001), not this one.
    digest = hashlib.sha256(b'{"num_train_steps": 20, "learning_rate": 0.001}').hexdigest()
    record = json.load(open(os.path.join(data, ".stages", "train.done")))
    assert record["inputs"][str(hparams)] == {"": "sha256=" + digest}


def test_pretrain_data_runs_another_electra_dir_with_reference_flags(tmp_path, debian_fortunes_dir):
    # Another checkout with the same command line (here a copy of ours at another path): it
    # gets only the reference's flags, so an upstream checkout works unchanged.
    other = str(tmp_path / "electra-checkout")
    shutil.copytree(os.path.join(REPO, "third_party", "electra"), other,
                    ignore=shutil.ignore_patterns("__pycache__"))
    data = str(tmp_path / "d")
    common = ["DATA_DIR=" + data, "CORPUS=" + debian_fortunes_dir, "TRAIN_SIZE=2000",
              "VOCAB=" + VOCAB_8K]
    run(MAKE + ["corpus", "vocab", "hparams"] + common)
    dry = run(MAKE + ["-n", "pretrain-data", "ELECTRA_DIR=" + other] + common).stdout
    assert "%s/build_pretraining_dataset.py --corpus-dir=" % other in dry and "--seed" not in dry
    assert "--seed=1234" in run(MAKE + ["-n", "pretrain-data"] + common).stdout
    out = run(MAKE + ["pretrain-data", "ELECTRA_DIR=" + other] + common).stdout
    shards = os.listdir(os.path.join(data, "pretrain_tfrecords"))
    assert len(shards) == 1000 and "pretrain-data: done" in out
    record = json.load(open(os.path.join(data, ".stages", "pretrain-data.done")))
    assert record["vars"]["ELECTRA_DIR"] == other
    assert record["vars"]["builder_flags"] == "--max-seq-length 128 --no-lower-case"
    again = run(MAKE + ["pretrain-data"] + common).stdout
    assert "pretrain-data: redoing (changed: ELECTRA_DIR)" in again


def test_demo_without_debian_text_falls_back_to_an_opensubtitles_slice(tmp_path, monkeypatch):
    # No fortunes-es, no CORPUS=: the demo downloads a slice, which offline fails in one line.
    monkeypatch.setattr(text_packages, "PACKAGE_PATHS", (
        ("fortunes-es", str(tmp_path / "absent")), ("debian-reference-es", str(tmp_path / "r.gz"))))
    demo = pipeline.demo_settings(pipeline.read_settings({"DATA_DIR": str(tmp_path)}), {})
    assert (demo["CORPUS"], demo["DOWNLOAD_BYTES"], demo["VOCAB"]) == ("", "4000000", "train")
    # The demo's first stage with those settings (the rest is test_demo's).
    proc = run(MAKE + ["corpus", "DATA_DIR=%s/demo" % tmp_path, "CORPUS=",
                       "DOWNLOAD_BYTES=4000000", "TRAIN_SIZE=100000"], check=False)
    if proc.returncode != 0:          # offline, as on CI
        assert_one_line_error(proc, "cannot download", "es.txt.gz", "CORPUS=")
    else:
        stats = json.load(open(str(tmp_path / "demo" / "corpus-stats.json")))
        assert stats["sources"][0].endswith("es.txt.first-4000000.gz")


def test_a_stage_without_its_inputs_says_which_stage_comes_first(tmp_path):
    proc = run(MAKE + ["pretrain", "DATA_DIR=%s" % tmp_path], check=False)
    assert_one_line_error(proc, "pretrain_tfrecords, which is missing", "make all")
    assert not os.path.exists(str(tmp_path / "models"))


@pytest.mark.slow
def test_a_killed_stage_runner_takes_its_stage_with_it(tmp_path):
    import signal
    import subprocess
    import time
    runner = subprocess.Popen([PY, os.path.join(REPO, "tests", "stage_runner.py"), "train",
                               str(tmp_path), "--", "sleep", "120"], cwd=REPO)
    deadline = time.time() + 30
    children = []
    while not children and time.time() < deadline:
        time.sleep(0.2)
        children = run(["pgrep", "-P", str(runner.pid)], check=False).stdout.split()
    assert children, "the stage command did not start"
    os.kill(runner.pid, signal.SIGKILL)
    runner.wait()
    while os.path.exists("/proc/%s" % children[0]) and time.time() < deadline:
        time.sleep(0.2)
    assert not os.path.exists("/proc/%s" % children[0])
    assert not os.path.exists(str(tmp_path / ".stages" / "train.done"))
