"""Hostile input, round 2: what reaches the stage runner through make. Each case is refused
in one line naming the variable or the stage to run, or handled without hanging:

| case                                                   | test                                   |
|--------------------------------------------------------|----------------------------------------|
| a FIFO, /dev/zero, a broken link in a CORPUS directory | test_corpus_directory_with_special_files_neither_hangs_nor_reads_them |
| a 20-digit NUM_PROCESSES, a 300-character DATA_DIR ... | test_settings_out_of_range_are_refused_before_any_lock |
| a MODEL_NAME too long for its lock file                | test_a_model_name_too_long_for_its_lock_file_is_refused |
| DATA_DIR=-rf, DOCKER_IMAGE=--privileged, IMAGE=ngx     | test_a_value_never_becomes_an_option   |
| SENTENCE=-h                                            | test_a_sentence_starting_with_a_dash_is_a_sentence |
| new HPARAMS_OVERRIDES/PRESET/NUM_GPUS after make all   | test_pretrain_brings_hparams_up_to_date_first, test_a_num_gpus_that_failed_does_not_stay_in_hparams |
| a failed hparams                                       | test_a_failed_hparams_leaves_hparams_json_as_it_was |
| other settings when converting a trained model         | test_convert_keeps_the_hparams_the_model_was_trained_with |
| a truncated or overwritten TFRecord shard              | test_a_truncated_shard_is_seen_and_named, test_an_overwritten_shard_of_the_same_size_is_seen |
| a truncated checkpoint .data file                      | test_a_truncated_checkpoint_is_seen_by_pretrain_and_convert |
| a user's own corpus-stats.json (or a FIFO there)       | test_a_users_corpus_stats_file_is_never_overwritten |
| a disk quota exceeded (EDQUOT)                         | test_disk_quota_is_reported_like_a_full_disk |
| a lock another run holds                               | test_a_held_lock_is_never_waited_for   |

The pipeline is real: fortunes-es text, the 8k vocab, real TFRecords and a two-step training of
a tiny model (made once for the module, copied for each test that damages it).
"""
import errno
import json
import os
import shutil
import subprocess

import pytest

from conftest import FORTUNES_SHARED, MAKE, PY, REPO, VOCAB_8K, assert_one_line_error, run

TINY = json.dumps({"num_train_steps": 2, "save_checkpoints_steps": 2, "iterations_per_loop": 1,
                   "max_seq_length": 32, "train_batch_size": 8,
                   "model_hparam_overrides": {"hidden_size": 32, "num_hidden_layers": 1,
                                              "intermediate_size": 64}})


def settings(data_dir, **more):
    values = {"DATA_DIR": str(data_dir), "CORPUS": FORTUNES_SHARED, "TRAIN_SIZE": "3000",
              "NUM_PROCESSES": "1", "VOCAB": VOCAB_8K, "PRESET": "demo-cpu",
              "HPARAMS_OVERRIDES": TINY, "MODEL_NAME": "m"}
    values.update(more)
    return ["%s=%s" % kv for kv in sorted(values.items())]


def make(targets, data_dir, check=True, timeout=300, **more):
    return run(MAKE + list(targets) + settings(data_dir, **more), check=check, timeout=timeout)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A data directory after corpus, vocab, hparams, pretrain-data and pretrain."""
    data = tmp_path_factory.mktemp("trained") / "data"
    make(["corpus", "vocab", "hparams", "pretrain-data", "pretrain"], data, timeout=600)
    return data


@pytest.fixture
def copy_of(tmp_path):
    """A copy of a data directory (times kept: the records stay valid)."""
    def copy(data):
        target = tmp_path / "data"
        shutil.copytree(str(data), str(target), symlinks=True)
        return target
    return copy


# ---- item 1: what a CORPUS directory may hold ------------------------------------------------

def test_corpus_directory_with_special_files_neither_hangs_nor_reads_them(tmp_path):
    corpus = tmp_path / "c"
    (corpus / "sub").mkdir(parents=True)
    shutil.copy(os.path.join(FORTUNES_SHARED, "arte.fortunes"), str(corpus / "arte.txt"))
    os.mkfifo(str(corpus / "sub" / "x"))                       # never read by the stage
    os.symlink("/dev/zero", str(corpus / "sub" / "zero.txt"))
    os.mkfifo(str(corpus / "pipe.txt"))                        # a name the stage would read
    os.symlink("/dev/zero", str(corpus / "zero.txt"))
    os.symlink(str(tmp_path / "gone.txt"), str(corpus / "dangling.txt"))
    proc = make(["corpus"], tmp_path / "d", CORPUS=str(corpus), timeout=60)
    assert "Traceback" not in proc.stderr
    notes = [l for l in proc.stderr.splitlines() if l.startswith("corpus: note: skipping")]
    assert notes == ["corpus: note: skipping %s: a %s, not a text file" % (corpus / n, kind)
                     for n, kind in (("dangling.txt", "broken symbolic link"),
                                     ("pipe.txt", "FIFO (named pipe)"),
                                     ("zero.txt", "character device"))], proc.stderr
    record = json.load(open(str(tmp_path / "d" / ".stages" / "corpus.done")))
    assert list(record["inputs"]) == [str(corpus / "arte.txt")]
    again = make(["corpus"], tmp_path / "d", CORPUS=str(corpus), timeout=60)
    assert "corpus: up to date" in again.stdout


def test_fingerprint_never_opens_what_is_not_a_regular_file(tmp_path):
    """Given as a stage's input, a directory with a FIFO is fingerprinted
    without blocking: the FIFO is named as what it is."""
    from wrapper import stages
    (tmp_path / "in").mkdir()
    os.mkfifo(str(tmp_path / "in" / "fifo"))
    os.symlink("/nonexistent", str(tmp_path / "in" / "dangling"))
    digests = stages.path_digests(str(tmp_path / "in"))
    assert digests == {"fifo": "not read: FIFO (named pipe)",
                       "dangling": "not read: broken symbolic link"}


# ---- item 2: one validation of every integer and path -------------------------------------

@pytest.mark.parametrize("name,value,words", [
    ("NUM_PROCESSES", "99999999999999999999", ["NUM_PROCESSES=99999999999999999999 is too "
                                               "large: at most 1024"]),
    ("NUM_PROCESSES", "9" * 50, ["NUM_PROCESSES=", "(50 digits) is too large"]),
    ("TRAIN_SIZE", "12abc", ["TRAIN_SIZE must be a positive integer, got '12abc'"]),
    ("VOCAB_SIZE", "0", ["VOCAB_SIZE must be a positive integer"]),
    ("DOWNLOAD_BYTES", "-5", ["DOWNLOAD_BYTES must be a positive integer"]),
    ("SEEDS", "1000", ["SEEDS=1000 is too large: at most 100"]),
    ("NUM_GPUS", "999", ["NUM_GPUS=999 is too large: at most 64"]),
    ("DATA_DIR", "x" * 300, ["DATA_DIR holds a name of 300 bytes", "at most 255 per name"]),
    ("DATA_DIR", "-rf", ["DATA_DIR=-rf starts with '-'", "write ./-rf"]),
    ("CORPUS", "a.txt:--help", ["CORPUS=--help starts with '-'"]),
    ("VOCAB", "-v.txt", ["VOCAB=-v.txt starts with '-'"]),
])
def test_settings_out_of_range_are_refused_before_any_lock(tmp_path, name, value, words):
    (tmp_path / "cwd").mkdir()
    data = tmp_path / "d"
    more = {name: value}
    if name != "DATA_DIR":
        more["DATA_DIR"] = str(data)
    for target in ("corpus", "pretrain"):
        proc = run(MAKE + [target] + settings(data, **more), check=False,
                   cwd=str(tmp_path / "cwd"), timeout=60)
        # NUM_GPUS=N makes pretrain run hparams first (the first to refuse it).
        program = "hparams" if name == "NUM_GPUS" and target == "pretrain" else target
        assert_one_line_error(proc, *words, program=program, status=2)
    assert not data.exists() and os.listdir(str(tmp_path / "cwd")) == []
    assert not os.path.exists(os.path.join(REPO, value))


def test_a_model_name_too_long_for_its_lock_file_is_refused(tmp_path):
    proc = run(MAKE + ["pretrain", "DATA_DIR=%s" % tmp_path, "MODEL_NAME=" + "m" * 250],
               check=False, timeout=60)
    assert_one_line_error(proc, "MODEL_NAME is 250 characters long", "at most 200",
                          program="pretrain", status=2)
    assert os.listdir(str(tmp_path)) == []


def test_the_largest_values_allowed_pass(tmp_path):
    proc = run(MAKE + ["-n", "corpus"] + settings(tmp_path / "d", NUM_PROCESSES="1024",
                                                   SEEDS="100", NUM_GPUS="64"), timeout=60)
    assert "--num-files=1024" in proc.stdout


# ---- item 4: a value never becomes an option ------------------------------------------------

def test_a_value_never_becomes_an_option(tmp_path):
    dry = run(MAKE + ["-n", "corpus", "vocab", "hparams"] + settings(tmp_path / "d"),
              timeout=60).stdout
    assert "--corpus=%s" % FORTUNES_SHARED in dry and "--vocab=%s" % VOCAB_8K in dry
    assert "--overrides=" in dry and "--data-dir=%s" % (tmp_path / "d") in dry
    for more, words in (({"DOCKER_IMAGE": "--privileged"},
                         ["DOCKER_IMAGE=--privileged is not an image reference"]),
                        ({"IMAGE": "ngx"}, ["IMAGE=ngx is unknown", "IMAGE=ngc"])):
        proc = run(MAKE + ["docker-run", "GPU=0", "TARGET=demo",
                           "DATA_DIR=%s" % (tmp_path / "d")] +
                   ["%s=%s" % kv for kv in more.items()], check=False, timeout=60)
        assert_one_line_error(proc, *words, program="docker-run", status=2)
    good = run(MAKE + ["-n", "docker-run", "GPU=0", "TARGET=demo", "DATA_DIR=%s" % tmp_path,
                       "DOCKER_IMAGE=registry.example.com:5000/team/electra:1.0"], timeout=60)
    assert good.stdout.rstrip().endswith("registry.example.com:5000/team/electra:1.0 make demo")


def test_a_sentence_starting_with_a_dash_is_a_sentence(tmp_path):
    proc = run(MAKE + ["predict", "SENTENCE=-h", "DATA_DIR=%s" % tmp_path], check=False,
               timeout=120)
    assert "usage:" not in proc.stdout + proc.stderr and proc.returncode != 0
    assert "discriminator" in assert_one_line_error(proc, program="predict")


# ---- items 3 and 5: earlier stages up to date and whole before a later one runs ------------

@pytest.mark.slow
def test_pretrain_brings_hparams_up_to_date_first(trained, copy_of):
    data = copy_of(trained)
    assert "pretrain-m: up to date" in make(["pretrain"], data).stdout
    more = json.dumps(dict(json.loads(TINY), num_train_steps=3))
    out = make(["pretrain"], data, HPARAMS_OVERRIDES=more).stdout
    assert "pretrain: first hparams (its output was made with other HPARAMS_OVERRIDES)" in out
    assert "hparams: redoing (changed: HPARAMS_OVERRIDES)" in out
    assert json.load(open(str(data / "hparams.json")))["num_train_steps"] == 3
    assert "pretrain-m: redoing" in out and "pretrain-m: done" in out
    # Another PRESET: hparams redone, then the model directory refuses the other shape.
    # Another PRESET: hparams redone, then the TFRecords (sequences of 128 now) are named.
    proc = make(["pretrain"], data, check=False, PRESET="tutorial", HPARAMS_OVERRIDES="")
    redo = [l for l in proc.stdout.splitlines() if l.startswith("hparams: redoing (changed: ")]
    assert len(redo) == 1 and redo[0].endswith("HPARAMS_OVERRIDES, PRESET)"), proc.stdout
    assert_one_line_error(proc, "pretrain-data's output is out of date (made with other "
                          "builder_flags); run make pretrain-data first", program="pretrain")


def test_convert_keeps_the_hparams_the_model_was_trained_with(trained, copy_of):
    """A model's later stages check the training, not hparams: hparams made again with other
    settings would not describe the trained model."""
    from wrapper import pipeline
    data = copy_of(trained)
    before = (data / "hparams.json").read_bytes()
    values = dict(arg.split("=", 1) for arg in settings(data, PRESET="tutorial"))
    v = pipeline.read_settings({})
    v.update(values)
    assert pipeline.bring_upstream_up_to_date("convert", v) == 0
    assert (data / "hparams.json").read_bytes() == before


@pytest.mark.slow
def test_a_num_gpus_that_failed_does_not_stay_in_hparams(trained, copy_of):
    data = copy_of(trained)
    proc = make(["pretrain"], data, check=False, NUM_GPUS="2")
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert json.load(open(str(data / "hparams.json")))["num_gpus"] == 2
    out = make(["pretrain"], data).stdout      # without NUM_GPUS: hparams made again first
    assert "hparams: redoing (changed: NUM_GPUS)" in out
    assert "num_gpus" not in json.load(open(str(data / "hparams.json")))


def test_a_failed_hparams_leaves_hparams_json_as_it_was(trained, copy_of):
    data = copy_of(trained)
    before = (data / "hparams.json").read_bytes()
    proc = make(["pretrain"], data, check=False, HPARAMS_OVERRIDES='{"learning_rate": -1}')
    assert_one_line_error(proc, "learning_rate", program="hparams")
    assert (data / "hparams.json").read_bytes() == before
    # Its record still describes hparams.json: with the settings it was made with, all is
    # up to date; with others, it is made again first.
    assert "pretrain-m: up to date" in make(["pretrain"], data).stdout
    proc = make(["pretrain"], data, check=False, HPARAMS_OVERRIDES='{"learning_rate": -1}')
    assert "hparams: redoing (changed: HPARAMS_OVERRIDES)" in proc.stdout


@pytest.mark.slow
def test_a_truncated_shard_is_seen_and_named(trained, copy_of):
    data = copy_of(trained)
    shards = data / "pretrain_tfrecords"
    shard = shards / sorted(n for n in os.listdir(str(shards)) if os.path.getsize(
        str(shards / n)) > 100)[0]
    size = os.path.getsize(str(shard))
    with open(str(shard), "r+b") as f:
        f.truncate(size - 10)
    proc = make(["pretrain"], data, check=False)
    line = assert_one_line_error(proc, program="pretrain", status=2)
    assert line == ("pretrain: error: pretrain-data's output is out of date (%s is %d bytes, %d "
                    "when written); run make pretrain-data first (make all runs every stage "
                    "in order)" % (shard, size - 10, size)), line
    out = make(["pretrain-data"], data).stdout
    assert "pretrain-data: redoing (damaged output: %s is %d bytes" % (shard, size - 10) in out
    assert os.path.getsize(str(shard)) == size       # the same shard again (--seed 1234)
    assert "pretrain-m: up to date" in make(["pretrain"], data).stdout


def test_an_overwritten_shard_of_the_same_size_is_seen(trained, copy_of):
    """Same size, same time (the file's times put back): its framing CRC tells."""
    from wrapper import stages
    data = copy_of(trained)
    shards = data / "pretrain_tfrecords"
    shard = str(shards / sorted(os.listdir(str(shards)))[0])
    assert stages.tfrecord_damage(shard) is None
    st = os.stat(shard)
    with open(shard, "r+b") as f:
        f.write(b"\x01")      # the low byte of the first record's length
    os.utime(shard, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert stages.tfrecord_damage(shard) == "the length of its record 1 fails its CRC: " \
                                            "overwritten"
    out = make(["pretrain-data"], data).stdout
    assert "pretrain-data: redoing (damaged output: %s: " % shard in out


@pytest.mark.slow
def test_a_truncated_checkpoint_is_seen_by_pretrain_and_convert(trained, copy_of):
    data = copy_of(trained)
    model = data / "models" / "m"
    data_file = model / "model.ckpt-2.data-00000-of-00001"      # the latest checkpoint
    size = os.path.getsize(str(data_file))
    with open(str(data_file), "r+b") as f:
        f.truncate(size // 2)
    proc = make(["convert"], data, check=False)
    assert_one_line_error(proc, "pretrain's output is out of date (%s is %d bytes, %d when "
                          "written)" % (data_file, size // 2, size), "run make pretrain first",
                          program="convert", status=2)
    assert not (model / "hf").exists()
    proc = make(["pretrain"], data, check=False)
    assert "pretrain-m: redoing (damaged output: %s is %d bytes" % (data_file, size // 2) \
        in proc.stdout


# ---- item 6: small ones -----------------------------------------------------------------------

def test_a_users_corpus_stats_file_is_never_overwritten(tmp_path):
    data = tmp_path / "d"
    data.mkdir()
    (data / "corpus-stats.json").write_text('{"mine": true}\n')
    proc = make(["corpus"], data, check=False, timeout=60)
    assert_one_line_error(proc, "corpus-stats.json was not written by this pipeline",
                          "move it away", program="corpus")
    assert (data / "corpus-stats.json").read_text() == '{"mine": true}\n'
    assert not (data / "corpus").exists()
    (data / "corpus-stats.json").unlink()
    os.mkfifo(str(data / "corpus-stats.json"))     # never opened (it would block)
    proc = make(["corpus"], data, check=False, timeout=60)
    assert_one_line_error(proc, "corpus-stats.json is a FIFO (named pipe), not a file this "
                          "pipeline wrote", program="corpus")
    (data / "corpus-stats.json").unlink()
    make(["corpus"], data, timeout=60)
    make(["corpus"], data, timeout=60, TRAIN_SIZE="2000")     # its own file: replaced
    assert json.load(open(str(data / "corpus-stats.json")))["input_lines"] == 2000


def test_disk_quota_is_reported_like_a_full_disk(tmp_path):
    from wrapper import fsutil
    for number, words in ((errno.ENOSPC, "no space left on the device"),
                          (errno.EDQUOT, "disk quota exceeded")):
        error = OSError(number, os.strerror(number))
        text = fsutil.disk_full_reason(error, str(tmp_path))
        assert text.startswith("%s in %s (" % (words, tmp_path)) and " free of " in text
    assert fsutil.disk_full_reason(OSError(errno.EACCES, "denied"), str(tmp_path)) is None
    assert fsutil.disk_full_reason(ValueError("x"), str(tmp_path)) is None


def test_a_held_lock_is_never_waited_for(tmp_path):
    """Item 7: a stage whose lock another run holds is refused at once, naming the holder and
    how to stop it; it never waits."""
    import time
    data = tmp_path / "d"
    holder = subprocess.Popen([PY, os.path.join(REPO, "tests", "lock_holder.py"), "corpus",
                               str(data), "--", "sleep", "60"], cwd=REPO)
    try:
        deadline = time.time() + 30
        while not (data / ".locks" / "data.lock").exists() or \
                "pid=%d" % holder.pid not in (data / ".locks" / "data.lock").read_text():
            assert time.time() < deadline, "the holder did not take the lock"
            time.sleep(0.1)
        started = time.time()
        proc = make(["corpus"], data, check=False, timeout=60)
        assert time.time() - started < 10
        assert_one_line_error(proc, "is in use by PID %d (make corpus)" % holder.pid,
                              "kill %d" % holder.pid, program="corpus", status=2)
    finally:
        holder.kill()
        holder.wait()


def test_wait_group_gone_fails_loudly(tmp_path):
    from reliability_support import wait_group_gone
    proc = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:
        with pytest.raises(AssertionError, match="still running after 0.3 s"):
            wait_group_gone(proc.pid, timeout=0.3)
    finally:
        proc.kill()
        proc.wait()
    wait_group_gone(proc.pid, timeout=5)
