"""The PyTorch trainer (third_party/electra_torch, BACKEND=torch) against the TF1 trainer, and
on its own: its fused Adam, its processes, its refusals, its benchmark.

The conformance checks (wrapper/conformance_torch.py) run here on the reference data; torch
runs in .venv-modern's Python (PY_MODERN), TF1 in this one.
"""
import json
import os
import re
import shutil
import signal
import subprocess
import time

import numpy as np
import pytest

from conftest import (ELECTRA_DIR, FORTUNES_SHARED, PY, PY_MODERN, REPO, VOCAB_8K,
                      assert_one_line_error, one_error_line, one_fortunes_file_input, run)
from wrapper import conformance, conformance_torch
from wrapper.electra import tensor_bundle

THIRD_PARTY = os.path.dirname(ELECTRA_DIR)

# A tiny model on seq-64 fortunes: seconds per run on 2 CPU cores.
TINY = {"model_size": "small", "do_lower_case": False, "vocab_size": 8000,
        "max_seq_length": 64, "train_batch_size": 8, "num_train_steps": 10,
        "num_warmup_steps": 2, "learning_rate": 1e-3, "save_checkpoints_steps": 10,
        "iterations_per_loop": 5, "seed": 7,
        "model_hparam_overrides": {"hidden_size": 64, "num_hidden_layers": 2}}
NO_DROPOUT = {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}


def context(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    return conformance.Context(conformance.REFERENCE_DIR, ELECTRA_DIR, str(work))


def torch_trainer(data_dir, hparams, model_name="torch", timeout=600, **env):
    env = dict(conformance_torch.TORCH_ENV, **env)
    return run([PY_MODERN, "-m", "electra_torch.run_pretraining", "--data-dir", data_dir,
                "--model-name", model_name, "--hparams", json.dumps(hparams)],
               check=False, cwd=THIRD_PARTY, timeout=timeout, env=env)


def with_overrides(hparams, **changes):
    overrides = dict(hparams["model_hparam_overrides"], **changes.pop("overrides", {}))
    return dict(hparams, model_hparam_overrides=overrides, **changes)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """vocab.txt and seq-64 TFRecords of one fortunes file."""
    return one_fortunes_file_input(str(tmp_path_factory.mktemp("torch-data")), 64)


def worst_difference(want, got):
    """Largest relative difference of two checkpoints' tensors, the attention key biases and
    their slots aside (zero gradient: both hold rounding noise there, see conformance_torch)."""
    assert sorted(want) == sorted(got)
    return max(conformance_torch.relative_difference(want[n], got[n]) for n in want
               if conformance_torch.ZERO_GRADIENT not in n)


def latest_tensors(data_dir, model_name):
    prefix = tensor_bundle.latest_checkpoint(os.path.join(data_dir, "models", model_name))
    assert prefix is not None
    return prefix, tensor_bundle.read_checkpoint(prefix)


# ---- conformance with the TF1 trainer (wrapper.conformance --backend torch) -----------------

@pytest.mark.slow
def test_conformance_cli_forward_step_optimizer_variables():
    proc = run([PY, "-m", "wrapper.conformance", "--backend", "torch", "torch-forward",
                "torch-step", "torch-optimizer", "torch-variables"], check=False, cwd=REPO)
    lines = {}
    for line in proc.stdout.splitlines():
        if line.startswith(("PASS ", "FAIL ")):
            verdict, name, detail = line.split(None, 2)
            lines[name] = (verdict, detail)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert sorted(lines) == ["corpus", "torch-forward", "torch-optimizer", "torch-step",
                             "torch-variables"], proc.stdout
    assert all(verdict == "PASS" for verdict, _ in lines.values()), proc.stdout
    assert "global_step 41 (TF1 41)" in lines["torch-step"][1]
    assert "12 excluded (attention/self/key/bias*" in lines["torch-step"][1]
    assert "1207 reference, 1207 written, 0 missing, 0 extra, 0 differ" in \
        lines["torch-variables"][1]
    assert lines["torch-optimizer"][1].count("246 tensors") == 2


def test_the_tensor_comparison_fails_on_one_altered_slot():
    want = {"a/kernel": np.ones((3, 4), np.float32), "a/kernel/adam_m": np.ones(4, np.float32),
            "layer/attention/self/key/bias": np.zeros(2, np.float32),
            "global_step": np.array(5)}
    bound = conformance_torch.STEP_TOLERANCE
    got = {k: v.copy() for k, v in want.items()}
    got["layer/attention/self/key/bias"] += 1.0   # excluded: rounding noise there
    assert conformance_torch.compare_tensors(want, got, bound, conformance_torch.ZERO_GRADIENT).ok
    got["a/kernel/adam_m"][2] *= 1 + 2 * bound
    result = conformance_torch.compare_tensors(want, got, bound, conformance_torch.ZERO_GRADIENT)
    assert not result.ok and "a/kernel/adam_m" in result.detail, result.detail
    got["a/kernel/adam_m"][2] = 1.0
    got["global_step"] = np.array(6)
    assert not conformance_torch.compare_tensors(want, got, bound).ok


def test_help_names_every_torch_check():
    assert tuple(conformance_torch.CHECKS)[1:] == conformance.TORCH_CHECK_NAMES


def test_conformance_torch_refuses_electra_dir():
    proc = run([PY, "-m", "wrapper.conformance", "--backend", "torch", "--electra-dir",
                ELECTRA_DIR], check=False, cwd=REPO)
    assert_one_line_error(proc, "--backend torch", program="conformance")


@pytest.mark.slow
def test_interchange_tf1_torch_tf1(tmp_path):
    result = conformance_torch.check_torch_interchange(context(tmp_path))
    assert result.ok, result.detail
    assert "torch at step 21" in result.detail and "tf1 at step 41" in result.detail


@pytest.mark.slow
def test_input_torch_shows_a_run_the_data_tf1_shows(tmp_path):
    result = conformance_torch.check_torch_input(context(tmp_path))
    print(result.detail)
    assert result.ok, result.detail
    assert "seeds 1-10: tf1 " in result.detail


@pytest.mark.slow
def test_dynamics_torch_final_loss_near_tf1(tmp_path):
    result = conformance_torch.check_torch_dynamics(context(tmp_path))
    print(result.detail)
    assert result.ok, result.detail


def test_dynamics_verdict_fails_a_shifted_mean_not_seed_noise():
    tf1 = [24.83, 24.68, 24.73]
    ok, detail = conformance_torch.dynamics_verdict({"tf1": tf1, "torch": [24.90, 24.79, 24.93]})
    assert ok, detail
    ok, detail = conformance_torch.dynamics_verdict(
        {"tf1": tf1, "torch": [x + 0.3 for x in tf1]})
    assert not ok and "difference +0.300" in detail, detail
    ok, detail = conformance_torch.dynamics_verdict(
        {"tf1": tf1, "torch": [x - 0.3 for x in tf1]})
    assert not ok and "difference -0.300" in detail, detail


# ---- the counter-based draws -------------------------------------------------------------------

# Pairs of draws k apart in one row (k = 1..4: masking uses a row's first 9-20 elements),
# binned 16 x 16: a chi-square z-score per stream and lag. Draws from one finalizer round of
# the row's counter fail this at lags 2 and 3 with z 15-22.
DRAW_PAIRS_SCRIPT = r"""
import json, sys
import numpy as np
import torch
sys.path.insert(0, sys.argv[1])
from electra_torch import draws

BINS, ROWS, LENGTH = 16, 1 << 15, 64
report = {}
for stream in (draws.MASK_POSITIONS, draws.MASK_KEEP, draws.GUMBEL):
    bins = [np.floor(draws.uniform(draws.step_key(5, torch.tensor(step)), stream,
                                   torch.arange(ROWS), (LENGTH,)).double().numpy()
                     * BINS).astype(np.int64) for step in range(4)]          # 4 x [ROWS, LENGTH]
    for lag in (1, 2, 3, 4):
        counts = sum(np.bincount((k[:, :-lag] * BINS + k[:, lag:]).ravel(), minlength=BINS * BINS)
                     for k in bins)
        expected = counts.sum() / counts.size
        chi2 = ((counts - expected) ** 2 / expected).sum()
        dof = counts.size - 1
        report["stream %d lag %d" % (stream, lag)] = (chi2 - dof) / np.sqrt(2 * dof)
print(json.dumps(report))
"""


def test_draws_k_apart_in_a_row_are_independent():
    proc = run([PY_MODERN, "-c", DRAW_PAIRS_SCRIPT, THIRD_PARTY])
    z_scores = json.loads(proc.stdout)
    assert len(z_scores) == 12
    worst = max(z_scores, key=lambda name: abs(z_scores[name]))
    assert abs(z_scores[worst]) < 5, (worst, z_scores)


# ---- the fused Adam against a plain loop -----------------------------------------------------

ADAM_SCRIPT = r"""
import json, sys
import numpy as np
import torch
sys.path.insert(0, sys.argv[1])
from electra_torch import optimizer

# Our own statement of the update, one tensor at a time (float32 like TF's kernel).
B1, B2, EPS = np.float32(0.9), np.float32(0.999), 1e-6
ONE_B1, ONE_B2 = float(np.float32(1) - B1), float(np.float32(1) - B2)
def decays(name):
    return "LayerNorm" not in name and "layer_norm" not in name and "bias" not in name
def plain(names, params, m, v, grads, rate, wd, scale):
    out = []
    for name, p, mm, vv, g in zip(names, params, m, v, grads):
        g = g * scale
        mm = mm + (g - mm) * ONE_B1
        vv = vv + (g * g - vv) * ONE_B2
        new = p - rate * mm / (torch.sqrt(vv) + EPS)
        if decays(name):
            new = new - rate * wd * p
        out.append((new, mm, vv))
    return out

names = ["layer_0/dense/kernel", "layer_0/dense/bias", "layer_0/LayerNorm/gamma",
         "generator_predictions/layer_norm/beta", "embeddings/word_embeddings",
         "output/bias"]
shapes = [(64, 32), (32,), (32,), (16,), (100, 16), (7,)]
gen = torch.Generator().manual_seed(0)
new = lambda: [torch.randn(s, generator=gen) for s in shapes]
params, grads = new(), new()
m0 = [0.1 * t for t in new()]
v0 = [t.abs() * 0.01 for t in new()]
rate, wd = torch.tensor(3e-4), 0.01
norm = torch.sqrt(optimizer.squared_norm(grads))
scale = optimizer.clip_scale(norm)
report = {"scale": float(scale)}

state = optimizer.new_adam_state([p.clone() for p in params], names)
state.m, state.v = [t.clone() for t in m0], [t.clone() for t in v0]
optimizer.adam_update(state, [g.clone() for g in grads], rate, wd, scale)
want = plain(names, params, m0, v0, grads, float(rate), wd, float(scale))
rel = lambda a, b: float((a - b).abs().max() / b.abs().max())
report["fused_vs_plain"] = max(max(rel(x, w) for x, w in zip((p, mm, vv), ws))
                               for p, mm, vv, ws in zip(state.params, state.m, state.v, want))
report["decayed"] = {n: bool((s - w[0]).abs().max() < 1e-9) for n, s, w in zip(
    names, state.params, plain(names, params, m0, v0, grads, float(rate), 0.0, float(scale)))}

state = optimizer.new_adam_state([p.clone() for p in params], names)
state.m, state.v = [t.clone() for t in m0], [t.clone() for t in v0]
bad = [g.clone() for g in grads]
bad[0][0, 0] = float("nan")
bad[4][1, 1] = float("inf")
bad_scale = optimizer.clip_scale(torch.sqrt(optimizer.squared_norm(bad)))
optimizer.adam_update(state, bad, rate, wd, bad_scale, applied=torch.tensor(0.0))
report["skipped_unchanged"] = all(torch.equal(a, b) for a, b in zip(
    state.params + state.m + state.v, params + m0 + v0))

state = optimizer.new_adam_state([p.clone() for p in params], names)
state.m, state.v = [t.clone() for t in m0], [t.clone() for t in v0]
optimizer.adam_update(state, [g.clone() for g in grads], rate, wd, scale,
                      applied=torch.tensor(1.0))
report["applied_vs_plain"] = max(max(rel(x, w) for x, w in zip((p, mm, vv), ws))
                                 for p, mm, vv, ws in zip(state.params, state.m, state.v, want))
print(json.dumps(report))
"""


def test_fused_adam_equals_a_plain_loop_skip_and_decay_exclusion():
    proc = run([PY_MODERN, "-c", ADAM_SCRIPT, THIRD_PARTY])
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["scale"] < 1.0                       # the clip is active
    assert report["fused_vs_plain"] <= 1e-7, report
    assert report["applied_vs_plain"] <= 1e-7, report
    assert report["skipped_unchanged"], report
    # Equal to the plain update without decay exactly where the name excludes decay.
    assert report["decayed"] == {"layer_0/dense/kernel": False, "layer_0/dense/bias": True,
                                 "layer_0/LayerNorm/gamma": True,
                                 "generator_predictions/layer_norm/beta": True,
                                 "embeddings/word_embeddings": False, "output/bias": True}


# ---- processes --------------------------------------------------------------------------------

@pytest.mark.slow
def test_two_gloo_processes_equal_one(data_dir):
    hparams = with_overrides(TINY, overrides=NO_DROPOUT)
    one = torch_trainer(data_dir, hparams, "one-process")
    assert one.returncode == 0, one.stderr[-3000:]
    two = torch_trainer(data_dir, dict(hparams, num_cpu_replicas=2), "two-processes")
    assert two.returncode == 0, two.stderr[-3000:]
    assert "Processes: 2 (gloo), 4 examples each per step" in two.stdout
    prefix_one, want = latest_tensors(data_dir, "one-process")
    prefix_two, got = latest_tensors(data_dir, "two-processes")
    assert prefix_one.endswith("model.ckpt-10") and prefix_two.endswith("model.ckpt-10")
    worst = worst_difference(want, got)
    assert worst <= 1e-5, worst


@pytest.mark.slow
def test_two_gloo_processes_equal_one_with_hidden_dropout(data_dir):
    """Hidden dropout draws by global row: the same masks however the batch is split."""
    hparams = with_overrides(TINY, overrides={"attention_probs_dropout_prob": 0.0})
    one = torch_trainer(data_dir, hparams, "one-process-dropout")
    two = torch_trainer(data_dir, dict(hparams, num_cpu_replicas=2), "two-processes-dropout")
    assert one.returncode == 0 and two.returncode == 0, one.stderr[-2000:] + two.stderr[-2000:]
    _, want = latest_tensors(data_dir, "one-process-dropout")
    _, got = latest_tensors(data_dir, "two-processes-dropout")
    worst = worst_difference(want, got)
    assert worst <= 1e-5, worst


def worker_pids(data_dir, rank):
    """Pids of electra_torch processes started by torchrun with RANK=rank on data_dir (this
    test's own temporary folder)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open("/proc/%s/environ" % pid, "rb") as f:
                env = dict(e.split(b"=", 1) for e in f.read().split(b"\0") if b"=" in e)
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                cmdline = f.read()
        except OSError:
            continue
        if (env.get(b"RANK") == str(rank).encode() and b"electra_torch.run_pretraining" in cmdline
                and b"\0" + data_dir.encode() + b"\0" in cmdline):
            found.append(int(pid))
    return found


@pytest.mark.slow
def test_a_killed_process_stops_the_others_with_one_line_then_resume(data_dir):
    model_dir = os.path.join(data_dir, "models", "killed")
    hparams = dict(TINY, num_cpu_replicas=2, num_train_steps=100000, save_checkpoints_steps=3)
    command = [PY_MODERN, "-m", "electra_torch.run_pretraining", "--data-dir", data_dir,
               "--model-name", "killed", "--hparams", json.dumps(hparams)]
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    proc = subprocess.Popen(command, cwd=THIRD_PARTY, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, universal_newlines=True, env=env)
    try:
        deadline = time.time() + 300
        while not os.path.exists(os.path.join(model_dir, "model.ckpt-3.index")):
            assert proc.poll() is None and time.time() < deadline, proc.communicate()
            time.sleep(0.5)
        pids = worker_pids(data_dir, 1)
        assert len(pids) == 1, pids
        os.kill(pids[0], signal.SIGKILL)
        killed_at = time.time()
        out, err = proc.communicate(timeout=60)
        stopped_in = time.time() - killed_at
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode != 0
    assert stopped_in < 60, stopped_in
    line = one_error_line(err)
    print("stopped %.1f s after the kill: %s" % (stopped_in, line))
    assert line.startswith("run_pretraining.py: error: process 1 of 2 stopped"), line
    assert not worker_pids(data_dir, 0), "rank 0 still running"
    latest = tensor_bundle.latest_checkpoint(model_dir)
    step = int(re.search(r"-(\d+)$", latest).group(1))
    assert step >= 3
    again = torch_trainer(data_dir, dict(hparams, num_train_steps=step + 2), "killed")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "Resuming from %s (step %d)" % (latest, step) in again.stdout, again.stdout[-2000:]


# ---- bad input: one line each -----------------------------------------------------------------

def test_bad_hparams_one_line_each(data_dir):
    cases = [
        ({"no_such_hparam": 1}, ["no_such_hparam"]),
        ({"precision": "fp8"}, ["precision", "fp8"]),
        ({"use_amp": True}, ["use_amp", "precision"]),
        ({"train_batch_size": 9, "num_cpu_replicas": 2}, ["train_batch_size 9", "2 processes"]),
        ({"vocab_size": 9000}, ["vocab_size = 9000", "8000"]),
    ]
    for changes, words in cases:
        proc = torch_trainer(data_dir, dict(TINY, **changes), "bad")
        assert_one_line_error(proc, *words, program="run_pretraining.py")
    assert not os.path.exists(os.path.join(data_dir, "models", "bad", "checkpoint"))


def test_no_tfrecords_one_line(tmp_path):
    data_dir = str(tmp_path)
    shutil.copy(VOCAB_8K, os.path.join(data_dir, "vocab.txt"))
    proc = torch_trainer(data_dir, TINY)
    assert_one_line_error(proc, "pretrain_tfrecords", "build_pretraining_dataset.py",
                          program="run_pretraining.py")


def test_a_checkpoint_of_another_shape_one_line(data_dir):
    model_dir = os.path.join(data_dir, "models", "other-shape")
    os.makedirs(model_dir)
    for name in os.listdir(os.path.join(REPO, "tests", "conformance", "converter", "tiny-ckpt")):
        shutil.copy(os.path.join(REPO, "tests", "conformance", "converter", "tiny-ckpt", name),
                    model_dir)
    before = sorted(os.listdir(model_dir))
    proc = torch_trainer(data_dir, with_overrides(TINY, overrides={"hidden_size": 128}),
                         "other-shape")
    assert_one_line_error(proc, "checkpoint of another model", "shape", "--model-name",
                          program="run_pretraining.py")
    assert sorted(os.listdir(model_dir)) == before


def test_require_gpu_without_a_gpu_one_line(data_dir):
    proc = torch_trainer(data_dir, TINY, "gpu", REQUIRE_GPU="1")
    assert_one_line_error(proc, "REQUIRE_GPU=1", "no GPU", program="run_pretraining.py")


# ---- the GPU benchmark's smoke run --------------------------------------------------------------

@pytest.mark.slow
def test_bench_gpu_smoke_prints_its_table():
    proc = run(["bash", os.path.join(REPO, "scripts", "bench_gpu.sh"), "--smoke"], cwd=REPO,
               env={"PYTHON": PY_MODERN}, timeout=600)
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("bench_gpu: CPU"), proc.stdout
    assert lines[1].split()[:4] == ["precision", "graphs", "batch", "steps/s"], proc.stdout
    rows = [l.split() for l in lines[2:] if l.startswith(("fp32", "bf16"))]
    assert [r[0] for r in rows] == ["fp32", "bf16"], proc.stdout
    assert all(float(r[3]) > 0 and np.isfinite(float(r[7])) for r in rows), proc.stdout
    assert any(l.startswith("ceiling: batch 64") for l in lines), proc.stdout


@pytest.mark.slow
def test_do_eval_writes_the_tf1_metrics_for_either_trainers_checkpoint(data_dir):
    """do_eval on a checkpoint: the metrics the TF1 trainer reports, the same names, written to
    results/unsup_results.txt and .pkl; the values are the model's, near TF1's own evaluation
    of the same checkpoint (other random masks: not equal)."""
    assert torch_trainer(data_dir, TINY, model_name="evaluated").returncode == 0
    hparams = dict(TINY, do_train=False, do_eval=True, eval_batch_size=16, num_eval_steps=4)
    proc = torch_trainer(data_dir, hparams, model_name="evaluated")
    assert proc.returncode == 0, proc.stderr
    results = os.path.join(data_dir, "models", "evaluated", "results", "unsup_results.txt")
    with open(results) as f:
        torch_values = dict(line.strip().split(" = ") for line in f)
    names = {"disc_accuracy", "disc_auc", "disc_loss", "disc_precision", "disc_recall",
             "global_step", "loss", "masked_lm_accuracy", "masked_lm_loss",
             "sampled_masked_lm_accuracy"}
    assert set(torch_values) == names
    assert torch_values["global_step"] == "10"
    tf1 = run([PY, "run_pretraining.py", "--data-dir", data_dir, "--model-name", "evaluated",
               "--hparams", json.dumps(hparams)], check=False, cwd=ELECTRA_DIR)
    assert tf1.returncode == 0, tf1.stderr
    with open(results) as f:
        tf1_values = dict(line.strip().split(" = ") for line in f)
    assert set(tf1_values) == names
    for name in ("disc_loss", "masked_lm_loss", "loss", "disc_auc"):
        assert abs(float(tf1_values[name]) - float(torch_values[name])) < \
            0.1 * abs(float(tf1_values[name])), (name, tf1_values[name], torch_values[name])
