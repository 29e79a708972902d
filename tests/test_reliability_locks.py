"""Locks: a second run on the same model or data directory is refused with one line naming
the holder; a lock left by a SIGKILLed holder never blocks the next run."""
import os
import re
import signal
import time

import pytest

from conftest import one_error_line, PY, REPO, run
from reliability_support import Running

# Holds a stage's locks as the stage runner does, then becomes the command.
HOLDER = [PY, os.path.join(REPO, "tests", "lock_holder.py")]


def wait_for_holder(lock_file, timeout=30):
    """The PID the holder wrote into the lock file (it writes before running its command)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if os.path.exists(lock_file):
            with open(lock_file) as f:
                match = re.search(r"^pid=(\d+)$", f.read(), re.M)
            if match:
                return int(match.group(1))
        time.sleep(0.05)
    raise AssertionError("no holder recorded in %s" % lock_file)


def hold(data_dir, tmp_path, name, model=None, seconds=60):
    """A process holding the model (make pretrain's) or data (make corpus's) lock while it
    sleeps."""
    args = HOLDER + (["pretrain", str(data_dir), model] if model else ["corpus", str(data_dir)])
    holder = Running(args + ["--", "sleep", str(seconds)], str(tmp_path / "logs"), name)
    lock = os.path.join(str(data_dir), ".locks",
                        "model-%s.lock" % model if model else "data.lock")
    return holder, wait_for_holder(lock)


@pytest.mark.slow
def test_second_run_on_same_model_is_refused_and_a_killed_holder_does_not_block(tmp_path):
    data_dir = tmp_path / "data"
    holder, pid = hold(data_dir, tmp_path, "holder", model="m")
    assert pid == holder.proc.pid     # exec'd: the command itself holds the lock
    try:
        second = run(HOLDER + ["pretrain", str(data_dir), "m", "--", "true"], check=False)
        assert second.returncode == 2
        line = one_error_line(second.stderr)
        assert line.startswith("pretrain: error: model directory %s is in use by PID %d (make pretrain)"
                               % (os.path.join(str(data_dir), "models", "m"), pid)), line
        assert "kill %d" % pid in line
        # Another model trains beside it; the data directory's outputs are only read by both.
        other = run(HOLDER + ["pretrain", str(data_dir), "other", "--",
                              "echo", "other model runs"])
        assert other.stdout.strip() == "other model runs"
        # Rebuilding the data under a running training is refused, naming the training.
        rebuild = run(HOLDER + ["pretrain-data", str(data_dir), "--", "true"], check=False)
        assert rebuild.returncode == 2
        assert re.match(r"pretrain-data: error: data directory .* is in use by PID %d \(make pretrain\)"
                        % pid, one_error_line(rebuild.stderr)), rebuild.stderr
    finally:
        holder.kill()                 # SIGKILL: no chance to clean anything up
    assert holder.proc.returncode == -signal.SIGKILL
    lock_file = data_dir / ".locks" / "model-m.lock"
    assert "pid=%d" % pid in lock_file.read_text()   # the stale record is still there
    third = run(HOLDER + ["pretrain", str(data_dir), "m", "--", "echo", "after the kill"])
    assert third.stdout.strip() == "after the kill"
    assert "pid=%d" % pid not in lock_file.read_text()


def test_data_stage_lock_refuses_second_stage_and_allows_nested_stage(tmp_path):
    data_dir = tmp_path / "data"
    holder, pid = hold(data_dir, tmp_path, "corpus-holder")
    try:
        second = run(HOLDER + ["vocab", str(data_dir), "--", "true"], check=False)
        assert second.returncode == 2
        assert "vocab: error: data directory %s (its stage outputs) is in use by PID %d" % (
            data_dir, pid) in one_error_line(second.stderr)
        training = run(HOLDER + ["pretrain", str(data_dir), "m", "--", "true"], check=False)
        assert training.returncode == 2, "a training must not read data being rebuilt"
    finally:
        holder.kill()
    # A stage run by a command that already holds the lock (make all around make corpus).
    nested = run(HOLDER + ["corpus", str(data_dir), "--", "bash", "-c",
                           " ".join(HOLDER) + " corpus %s -- echo nested ok" % data_dir])
    assert nested.stdout.strip() == "nested ok"


@pytest.mark.parametrize("target,model", [("pretrain", "m"), ("pretrain-data", None),
                                          ("corpus", None), ("convert", "m")])
def test_make_target_refuses_while_another_run_holds_the_lock(tmp_path, target, model):
    """`make TARGET` is wrapped in the lock: refused at once, before touching anything."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "hparams.json").write_text('{"max_seq_length": 128, "vocab_size": 8000}\n')
    holder, pid = hold(data_dir, tmp_path, "holder", model=model)
    try:
        started = time.time()
        proc = run(["make", "--no-print-directory", "-C", REPO, target,
                    "DATA_DIR=%s" % data_dir, "MODEL_NAME=m", "CORPUS=/nonexistent"],
                   check=False, timeout=120)
        assert proc.returncode != 0
        ours = [line for line in proc.stderr.splitlines() if not line.startswith("make")]
        assert len(ours) == 1 and "Traceback" not in proc.stderr, proc.stderr
        assert ours[0].startswith("%s: error: " % target), ours[0]
        assert "is in use by PID %d (make %s)" % (pid, "pretrain" if model else "corpus") \
            in ours[0]
        assert time.time() - started < 60
        assert sorted(os.listdir(str(data_dir))) == [".locks", "hparams.json"], \
            "nothing written"
    finally:
        holder.kill()


def test_generic_lock_file_shared_holders_coexist_and_exclusive_waits_for_them(tmp_path):
    lock = str(tmp_path / "some.lock")
    readers = [Running(HOLDER + ["--lock", lock, "--shared", "--", "sleep", "60"],
                       str(tmp_path / "logs"), "reader%d" % i) for i in range(2)]
    try:
        deadline = time.time() + 30
        while time.time() < deadline:
            writer = run(HOLDER + ["--lock", lock, "--what", "the thing", "--", "true"],
                         check=False)
            if writer.returncode != 0 and all(r.proc.poll() is None for r in readers):
                break
            time.sleep(0.05)
        assert writer.returncode == 2
        assert one_error_line(writer.stderr).startswith("lock_holder: error: the thing is in use by")
        third = run(HOLDER + ["--lock", lock, "--shared", "--", "echo", "shared ok"])
        assert third.stdout.strip() == "shared ok"
    finally:
        for reader in readers:
            reader.kill()
    assert run(HOLDER + ["--lock", lock, "--", "echo", "free"]).stdout.strip() == "free"
