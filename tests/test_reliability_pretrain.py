"""Pretraining under SIGKILL: `make pretrain` killed between steps and while a checkpoint is
being written (seeded points), then run again, resumes from the latest complete checkpoint,
stops exactly at num_train_steps, leaves a checkpoint that restores, and its step record
(progress lines and TensorBoard's view) is one continuous run.
"""
import glob
import json
import os
import random
import re
import shutil
import time

import pytest

from conftest import FORTUNES_SHARED, PY, REPO, VOCAB_8K, run
from test_reliability_support import Running

ELECTRA = os.path.join(REPO, "third_party", "electra")
TOTAL_STEPS = 50
SAVE_EVERY = 10
HPARAMS = {
    "do_train": True, "do_eval": False, "model_size": "small", "do_lower_case": False,
    "vocab_size": 8000, "max_seq_length": 32, "train_batch_size": 8,
    "num_train_steps": TOTAL_STEPS, "num_warmup_steps": 5, "learning_rate": 0.001,
    "save_checkpoints_steps": SAVE_EVERY, "keep_checkpoint_max": 2, "embedding_size": 32,
    "model_hparam_overrides": {"hidden_size": 32, "num_hidden_layers": 1},
}
PROGRESS = re.compile(r"^(\d+)/(\d+) = [\d.]+%", re.M)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """Real TFRecords (fortunes-es, 32-token examples), the 8k vocab, tiny hparams."""
    d = tmp_path_factory.mktemp("pretrain-data")
    shutil.copy(VOCAB_8K, str(d / "vocab.txt"))
    (d / "hparams.json").write_text(json.dumps(HPARAMS, indent=2) + "\n")
    run([PY, "-m", "wrapper.corpus", "--data-dir", str(d), "--corpus", FORTUNES_SHARED,
         "--train-size", "1000000", "--num-files", "2"])
    run([PY, os.path.join(ELECTRA, "build_pretraining_dataset.py"), "--corpus-dir",
         str(d / "corpus"), "--vocab-file", str(d / "vocab.txt"), "--output-dir",
         str(d / "pretrain_tfrecords"), "--max-seq-length", "32", "--no-lower-case",
         "--num-processes", "2", "--seed", "7", "--num-out-files", "4"], timeout=300)
    return d


def make_pretrain(data_dir, model):
    return ["make", "--no-print-directory", "-C", REPO, "pretrain", "DATA_DIR=%s" % data_dir,
            "MODEL_NAME=%s" % model]


def progress_steps(text):
    steps = []
    for match in PROGRESS.finditer(text):
        assert int(match.group(2)) == TOTAL_STEPS
        steps.append(int(match.group(1)))
    return steps


def checkpoint_step(model_dir):
    """Step of the checkpoint the `checkpoint` file names (None when there is none)."""
    import tensorflow as tf
    state = tf.train.get_checkpoint_state(model_dir)
    if state is None or not state.model_checkpoint_path:
        return None
    return int(re.search(r"model\.ckpt-(\d+)$", state.model_checkpoint_path).group(1))


def assert_checkpoint_readable(model_dir, step):
    """Every tensor of model.ckpt-STEP reads back; global_step is STEP."""
    import tensorflow as tf
    reader = tf.train.NewCheckpointReader(os.path.join(model_dir, "model.ckpt-%d" % step))
    shapes = reader.get_variable_to_shape_map()
    assert len(shapes) > 20
    for name in shapes:
        reader.get_tensor(name)
    assert int(reader.get_tensor("global_step")) == step


def saving_checkpoint_after(model_dir, start_step):
    """True while a checkpoint past `start_step` is being written.

    TF's Saver writes model.ckpt-N_temp_*/ (sharded) then renames the data and index into
    place, then rewrites the `checkpoint` file, then writes model.ckpt-N.meta: any moment
    before the .meta exists is inside the save.
    """
    def saving():
        names = os.listdir(model_dir)
        for name in names:
            match = re.match(r"model\.ckpt-(\d+)(_temp|\.index$|.*tempstate)", name)
            if not match or int(match.group(1)) <= start_step:
                continue
            if match.group(2) != ".index":
                return True
            if "model.ckpt-%s.meta" % match.group(1) not in names:
                return True
        return False
    return saving


def summary_steps_by_file(model_dir, tag):
    import tensorflow as tf
    files = sorted(glob.glob(os.path.join(model_dir, "events.out.tfevents.*")))
    by_file = []
    for path in files:
        steps = []
        try:
            for event in tf.train.summary_iterator(path):
                for value in event.summary.value:
                    if value.tag == tag:
                        steps.append(event.step)
        except tf.errors.DataLossError:
            pass    # the last record of a killed run's file is cut short
        by_file.append(steps)
    return by_file


@pytest.mark.parametrize("seed", [1, 2])
def test_pretrain_killed_between_steps_and_while_saving_resumes_as_one_run(data_dir, tmp_path,
                                                                            seed):
    rng = random.Random(seed)
    model = "m%d" % seed
    model_dir = os.path.join(str(data_dir), "models", model)
    record = os.path.join(str(data_dir), ".stages", "pretrain-%s.done" % model)
    logs = str(tmp_path / "logs")
    runs = []        # (first step printed, last step printed, checkpoint step after the run)

    # Run 1: killed between steps, at a seeded step (seed 1 before the first periodic
    # checkpoint, seed 2 after it) plus a seeded fraction of a step.
    kill_step = rng.randint(3, SAVE_EVERY - 1) if seed % 2 else rng.randint(SAVE_EVERY + 1,
                                                                             3 * SAVE_EVERY - 1)
    first = Running(make_pretrain(data_dir, model), logs, "run1")
    seen = lambda: kill_step in progress_steps(first.stdout())

    def refused_while_running():
        # A second `make pretrain` on the same model while the first one trains.
        while not progress_steps(first.stdout()):
            assert first.proc.poll() is None, first.output()
            time.sleep(0.05)
        second = run(make_pretrain(data_dir, model), check=False, timeout=120)
        assert second.returncode != 0
        ours = [l for l in second.stderr.splitlines() if not l.startswith("make")]
        assert len(ours) == 1, second.stderr
        assert re.match(r"pretrain: error: model directory .*/models/%s is in use by PID \d+ "
                        r"\(make pretrain\), running since " % model, ours[0]), ours[0]
    refused_while_running()
    delay = rng.uniform(0, 0.05)
    assert first.kill_when(lambda: seen() and time.sleep(delay) is None, timeout=300), \
        first.output()
    assert not os.path.exists(record), "a killed run must not be recorded as done"
    ckpt = checkpoint_step(model_dir)
    steps = progress_steps(first.stdout())
    assert steps[0] == 1 and steps[-1] >= kill_step
    if ckpt is not None:
        assert_checkpoint_readable(model_dir, ckpt)
    runs.append((steps[0], steps[-1], ckpt or 0))

    # Run 2: killed while a periodic checkpoint is being written; seed 2 kills only the
    # trainer's process (as the OOM killer would), seed 1 the whole `make pretrain`.
    second = Running(make_pretrain(data_dir, model), logs, "run2")
    start = runs[-1][2]
    in_save = saving_checkpoint_after(model_dir, start + rng.choice([0, SAVE_EVERY]))
    assert second.kill_when(in_save, timeout=300,
                            only="run_pretraining.py" if seed == 2 else None), second.output()
    assert second.proc.returncode != 0
    assert not os.path.exists(record)
    ckpt = checkpoint_step(model_dir)
    steps = progress_steps(second.stdout())
    assert steps and steps[0] == start + 1, "resumes from the latest complete checkpoint"
    assert ckpt is not None and ckpt >= start
    assert_checkpoint_readable(model_dir, ckpt)
    runs.append((steps[0], steps[-1], ckpt))

    # Run 3: to the end.
    last = Running(make_pretrain(data_dir, model), logs, "run3")
    assert last.wait(600) == 0, last.output()
    steps = progress_steps(last.stdout())
    assert steps[0] == runs[-1][2] + 1
    assert steps[-1] == TOTAL_STEPS, "stops exactly at num_train_steps"
    runs.append((steps[0], steps[-1], TOTAL_STEPS))
    assert os.path.exists(record)

    # Each run's printed steps are consecutive; the kept parts partition 1..TOTAL_STEPS.
    kept = []
    for (first_step, last_step, ckpt), log_name in zip(runs, ("run1", "run2", "run3")):
        with open(os.path.join(logs, log_name + ".out")) as f:
            printed = progress_steps(f.read())
        assert printed == list(range(first_step, last_step + 1)), log_name
        kept.extend(range(first_step, ckpt + 1))
    assert kept == list(range(1, TOTAL_STEPS + 1))

    # The final checkpoint is complete and restores into its own graph.
    assert checkpoint_step(model_dir) == TOTAL_STEPS
    assert_checkpoint_readable(model_dir, TOTAL_STEPS)
    import tensorflow as tf
    prefix = os.path.join(model_dir, "model.ckpt-%d" % TOTAL_STEPS)
    with tf.Graph().as_default(), tf.Session() as session:
        saver = tf.train.import_meta_graph(prefix + ".meta", clear_devices=True)
        saver.restore(session, prefix)
        assert session.run(tf.train.get_global_step()) == TOTAL_STEPS
    assert not glob.glob(os.path.join(model_dir, "*_temp*")), "no temporary checkpoint left"

    # TensorBoard's view: what each run logged up to the checkpoint the next run resumed
    # from, then the last run; no step twice.
    from tensorboard.backend.event_processing import event_accumulator
    accumulator = event_accumulator.EventAccumulator(model_dir, size_guidance={"scalars": 0})
    accumulator.Reload()
    tags = accumulator.Tags()["scalars"]
    assert "total_loss" in tags, tags
    by_file = summary_steps_by_file(model_dir, "total_loss")
    assert len(by_file) == 3, "one events file per run"
    expected = []
    for (first_step, _, ckpt), steps in zip(runs, by_file):
        expected.extend(s for s in steps if s <= ckpt)
    for tag in ("total_loss", "learning_rate"):
        shown = [event.step for event in accumulator.Scalars(tag)]
        assert len(shown) == len(set(shown)), "%s: a step shown twice: %s" % (tag, shown)
        assert shown == sorted(shown)
    assert [event.step for event in accumulator.Scalars("total_loss")] == expected
