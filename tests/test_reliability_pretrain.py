"""Pretraining under SIGKILL: `make pretrain` killed between steps and while a checkpoint is
being written (seeded points), then run again, resumes from the latest complete checkpoint,
stops exactly at num_train_steps, leaves a checkpoint that restores, and its step record
(progress lines and TensorBoard's view) is one continuous run.
"""
import errno
import glob
import json
import os
import random
import re
import shutil
import signal
import subprocess
import time

import pytest

from conftest import FORTUNES_SHARED, PY, REPO, VOCAB_8K, assert_one_line_error, run
from reliability_support import Running

ELECTRA = os.path.join(REPO, "third_party", "electra")
TOTAL_STEPS = 50
SAVE_EVERY = 10
HPARAMS = {
    "do_train": True, "do_eval": False, "model_size": "small", "do_lower_case": False,
    "vocab_size": 8000, "max_seq_length": 32, "train_batch_size": 8,
    "num_train_steps": TOTAL_STEPS, "num_warmup_steps": 5, "learning_rate": 0.001,
    "save_checkpoints_steps": SAVE_EVERY, "keep_checkpoint_max": 2, "embedding_size": 32,
    "iterations_per_loop": 1,   # a progress line for every step: the kills aim at steps
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
@pytest.mark.slow
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


# ---- the trainer's own lines: devices, progress, Ctrl-C, failed writes, full disk ----------

TRAINER_LINE = re.compile(r"^(\d+)/(\d+) = [\d.]+%, SPS: [\d.]+, ELAP: [\d:]+, ETA: [\d:]+ "
                          r"- loss: [\d.]+$", re.M)
NO_DRIVER = not os.path.exists("/proc/driver/nvidia/version")


def trainer(data_dir, model, **changes):
    """run_pretraining.py's command line on the tiny hparams (with `changes`)."""
    hparams = dict(HPARAMS, **changes)
    return [PY, "run_pretraining.py", "--data-dir", str(data_dir), "--model-name", model,
            "--hparams", json.dumps(hparams)]


def lines_of(text):
    return [l for l in text.splitlines() if l.strip()]


@pytest.mark.skipif(not NO_DRIVER, reason="this machine has an NVIDIA driver")
@pytest.mark.parametrize("visible,cause", [
    (None, "no NVIDIA driver (/proc/driver/nvidia/version does not exist"),
    ("", "CUDA_VISIBLE_DEVICES='' hides every GPU"),
])
def test_require_gpu_without_gpu_is_one_line_before_training(data_dir, visible, cause):
    env = {"REQUIRE_GPU": "1"}
    if visible is not None:
        env["CUDA_VISIBLE_DEVICES"] = visible
    proc = run(trainer(data_dir, "gpu-only"), check=False, cwd=ELECTRA, env=env)
    line = assert_one_line_error(proc, "REQUIRE_GPU=1 but no GPU visible", cause,
                                 "unset REQUIRE_GPU", program="run_pretraining.py", status=2)
    assert "cuInit" not in proc.stderr, line
    assert not os.path.exists(os.path.join(str(data_dir), "models", "gpu-only"))


@pytest.mark.skipif(not NO_DRIVER, reason="this machine has an NVIDIA driver")
@pytest.mark.slow
def test_cpu_run_says_where_it_trains_and_logs_every_iterations_per_loop(data_dir):
    # What TensorFlow itself prints here at the default log level: the line to hide.
    probe = run([PY, "-c", "import tensorflow as tf; "
                 "tf.config.experimental.list_physical_devices('GPU')"],
                env={"TF_CPP_MIN_LOG_LEVEL": "2"})
    assert "failed call to cuInit" in probe.stderr, probe.stderr[-2000:]

    proc = run(trainer(data_dir, "log", num_train_steps=23, iterations_per_loop=10),
               cwd=ELECTRA, env={"TF_CPP_MIN_LOG_LEVEL": "2"})
    assert "cuInit" not in proc.stderr and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert re.search(r"^no GPU visible: training on the CPU: no NVIDIA driver", proc.stdout,
                     re.M), proc.stdout[:2000]
    steps = [int(m.group(1)) for m in TRAINER_LINE.finditer(proc.stdout)]
    # The first step of the run, every 10th, the last; a line per minute more only when
    # steps are slow (a loaded machine).
    assert {1, 10, 20, 23} <= set(steps) and steps == sorted(steps), proc.stdout[-2000:]
    assert len(steps) <= 6, steps
    assert all(int(m.group(2)) == 23 for m in TRAINER_LINE.finditer(proc.stdout))


@pytest.mark.slow
def test_ctrl_c_during_training_is_one_line_saying_where_to_resume(data_dir, tmp_path):
    model_dir = os.path.join(str(data_dir), "models", "ctrl-c")
    running = Running(trainer(data_dir, "ctrl-c", num_train_steps=500), str(tmp_path), "run",
                      cwd=ELECTRA)
    # SIGINT is what the terminal sends on Ctrl-C; after the checkpoint of step 10.
    seen = lambda: any(s >= SAVE_EVERY + 2 for s in progress_steps_any(running.stdout()))
    deadline = time.time() + 600
    while not seen():
        assert running.proc.poll() is None and time.time() < deadline, running.output()
        time.sleep(0.05)
    running.proc.send_signal(signal.SIGINT)
    assert running.proc.wait(120) == 130, running.output()
    err = lines_of(running.stderr())
    assert len(err) == 1 and "Traceback" not in running.stderr(), running.stderr()
    last = progress_steps_any(running.stdout())[-1]
    assert re.match(r"run_pretraining.py: interrupted \(Ctrl-C\) at step %d of 500; the latest "
                    r"checkpoint is %s/model\.ckpt-(\d+) \(step \1\): run the same command again "
                    r"\(make pretrain\) to resume from it$" % (last, re.escape(model_dir)),
                    err[0]), err[0]
    assert int(re.search(r"ckpt-(\d+)", err[0]).group(1)) == checkpoint_step(model_dir) >= 10


def progress_steps_any(text):
    return [int(m.group(1)) for m in PROGRESS.finditer(text)]


def test_failed_write_of_graph_pbtxt_stops_training_at_once(data_dir):
    # A directory where graph.pbtxt goes: its write (rename into place) fails.
    model_dir = os.path.join(str(data_dir), "models", "no-graph")
    os.makedirs(os.path.join(model_dir, "graph.pbtxt"))
    proc = run(trainer(data_dir, "no-graph", num_train_steps=500, save_checkpoints_steps=1000),
               check=False, cwd=ELECTRA)
    line = assert_one_line_error(proc, "cannot write %s/graph.pbtxt: " % model_dir,
                                 "Is a directory", "training stopped at step ",
                                 "model.ckpt-0 (step 0)", program="run_pretraining.py", status=1)
    # graph.pbtxt is written while the first steps run; training stops at the end of the
    # step in which the write failed (before: at the next checkpoint, 1000 steps on).
    stopped = int(re.search(r"stopped at step (\d+) of 500", line).group(1))
    assert stopped < 100 and progress_steps_any(proc.stdout)[-1] == stopped, proc.stdout
    assert checkpoint_step(model_dir) == 0
    assert not glob.glob(os.path.join(model_dir, "graph.pbtxt.tmp*"))


@pytest.fixture
def small_disk(tmp_path):
    """A 48 MB tmpfs (a real file system that fills up); skipped where mounting is refused."""
    mount_point = str(tmp_path / "disk")
    os.makedirs(mount_point)
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", mount_point],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True)
    if proc.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root): %s" % proc.stdout.strip())
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", mount_point])


def fill_up(mount_point, leave):
    """Writes a file taking all free space of the file system but `leave` bytes (or all of
    it, when the trainer writes meanwhile), as another program filling the disk would."""
    stat = os.statvfs(mount_point)
    size = stat.f_bavail * stat.f_frsize - leave
    chunk = b"\0" * (1 << 20)
    try:
        with open(os.path.join(mount_point, "filler"), "wb") as f:
            while size > 0:
                f.write(chunk[:min(size, len(chunk))])
                size -= len(chunk)
    except OSError as e:
        assert e.errno == errno.ENOSPC, e


@pytest.mark.slow
def test_disk_full_during_training_is_one_line_naming_the_directory(data_dir, small_disk,
                                                                      tmp_path):
    # DATA_DIR on the small disk: the TFRecords and vocab are linked from the module's.
    disk_data = os.path.join(small_disk, "data")
    os.makedirs(disk_data)
    for name in ("vocab.txt", "pretrain_tfrecords"):
        os.symlink(os.path.join(str(data_dir), name), os.path.join(disk_data, name))
    model_dir = os.path.join(disk_data, "models", "full")
    running = Running(trainer(disk_data, "full", num_train_steps=500), str(tmp_path), "run",
                      cwd=ELECTRA, env={"TF_CPP_MIN_LOG_LEVEL": "2"})
    deadline = time.time() + 600
    while not any(s >= 2 for s in progress_steps_any(running.stdout())):
        assert running.proc.poll() is None and time.time() < deadline, running.output()
        time.sleep(0.05)
    fill_up(small_disk, leave=64 * 1024)   # then the checkpoint of step 10 does not fit
    assert running.proc.wait(600) == 1, running.output()
    err = lines_of(running.stderr())
    assert len(err) == 1 and "Traceback" not in running.stderr(), running.stderr()
    assert re.match(r"run_pretraining.py: error: no space left on the device in %s "
                    r"\([\d.]+ MB free of [\d.]+ MB; a checkpoint of this model needs about "
                    r"[\d.]+ MB\); free some space there; training stopped at step \d+ of "
                    r"500; the latest checkpoint is %s/model\.ckpt-0 \(step 0\): run the same "
                    r"command again \(make pretrain\) to resume from it$"
                    % (re.escape(model_dir), re.escape(model_dir)), err[0]), err[0]
    assert "TFRecords" not in err[0] and "vocab" not in err[0]
    left = [n for n in os.listdir(model_dir) if "tmp" in n or "_temp" in n]
    assert not left, "temporary files left behind: %s" % left
    assert checkpoint_step(model_dir) == 0
    assert_checkpoint_readable(model_dir, 0)


# ---- a damaged checkpoint on resume ----------------------------------------------------------

@pytest.mark.slow
def test_resume_past_a_damaged_checkpoint_falls_back_to_the_newest_intact_one(data_dir):
    """Truncated latest .data: one warning line, training resumes from the checkpoint
    before it, the damaged files stay; every checkpoint damaged: one error line."""
    model_dir = os.path.join(str(data_dir), "models", "damaged")
    run(trainer(data_dir, "damaged", num_train_steps=20, iterations_per_loop=10), cwd=ELECTRA)
    damaged = os.path.join(model_dir, "model.ckpt-20.data-00000-of-00001")
    with open(damaged, "r+b") as f:
        f.truncate(5000)
    proc = run(trainer(data_dir, "damaged", num_train_steps=15, iterations_per_loop=5),
               cwd=ELECTRA)
    warnings = lines_of(proc.stderr)
    assert warnings == [
        "run_pretraining.py: warning: %s is truncated: 5000 of %d bytes; resuming from the "
        "intact checkpoint %s (step 10) instead" % (
            damaged, os.path.getsize(os.path.join(model_dir, "model.ckpt-15.data-00000-of-00001")),
            os.path.join(model_dir, "model.ckpt-10"))], proc.stderr
    assert "Resuming from %s (step 10)" % os.path.join(model_dir, "model.ckpt-10") in proc.stdout
    assert progress_steps_any(proc.stdout)[-1] == 15
    assert checkpoint_step(model_dir) == 15
    assert_checkpoint_readable(model_dir, 15)
    assert os.path.getsize(damaged) == 5000                    # the evidence, untouched
    assert os.path.exists(os.path.join(model_dir, "model.ckpt-20.index"))
    # Every checkpoint damaged: the latest's file is named, nothing is trained or removed.
    for step in (10, 15):
        with open(os.path.join(model_dir, "model.ckpt-%d.data-00000-of-00001" % step),
                  "r+b") as f:
            f.seek(1000)
            f.write(b"\xff\xff\xff\xff")
    before = sorted(os.listdir(model_dir))
    proc = run(trainer(data_dir, "damaged", num_train_steps=30), cwd=ELECTRA, check=False)
    assert_one_line_error(proc, "model.ckpt-15.data-00000-of-00001 is corrupt: checksum "
                          "mismatch in tensor", "no earlier intact checkpoint",
                          program="run_pretraining.py", status=2)
    assert sorted(os.listdir(model_dir)) == before
