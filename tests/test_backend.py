"""BACKEND=torch: make pretrain with the PyTorch trainer (third_party/electra_torch), its
settings checked, several hosts (NNODES ...) passed on, a model directory continued by either
trainer in turn, docker-run's IMAGE=torch, make conformance and bench-train's torch rows, and
make demo-gpu (refused without a GPU; its CPU smoke path end to end)."""
import json
import os
import re
import shlex
import sys

import pytest

from conftest import (FORTUNES_SHARED, MAKE, PY_MODERN, REPO, VOCAB_8K, assert_one_line_error,
                      run)
from test_evaluate import real_classification_data
from test_foundation import canonical, read_pins
from test_pipeline import fake_docker  # noqa: F401  (a fixture)
from wrapper import paths, pipeline

TINY = {"model_hparam_overrides": {"hidden_size": 32, "num_hidden_layers": 1},
        "embedding_size": 32, "max_seq_length": 32, "train_batch_size": 8,
        "num_warmup_steps": 2, "save_checkpoints_steps": 5, "iterations_per_loop": 1,
        "learning_rate": 0.001}


def make(*args, check=True, **kwargs):
    return run(MAKE + list(args), check=check, **kwargs)


# ---- settings ---------------------------------------------------------------------------------

@pytest.mark.parametrize("settings, words", [
    (["BACKEND=tf2"], ["BACKEND=tf2 is unknown", "BACKEND=torch"]),
    (["BACKEND=torch", "NNODES=0"], ["NNODES must be a positive integer"]),
    (["BACKEND=torch", "NNODES=1025"], ["NNODES=1025 is too large"]),
    (["BACKEND=torch", "NNODES=2"], ["NNODES=2 needs MASTER_ADDR"]),
    (["BACKEND=torch", "NNODES=2", "MASTER_ADDR=h1", "NODE_RANK=2"], ["NODE_RANK=2", "0 to"]),
    (["BACKEND=torch", "NODE_RANK=-1"], ["NODE_RANK=-1"]),
    (["BACKEND=torch", "MASTER_PORT=65536"], ["MASTER_PORT=65536 is too large"]),
    (["BACKEND=torch", "MASTER_ADDR=--help"], ["MASTER_ADDR=--help is not a host name"]),
    (["BACKEND=torch", "MASTER_ADDR=http://h1/"], ["is not a host name"]),
    (["NNODES=2", "MASTER_ADDR=h1", "NODE_RANK=1"], ["add BACKEND=torch", "TF_CONFIG"]),
    (["BACKEND=torch", "ELECTRA_DIR=" + REPO], ["ELECTRA_DIR", "drop one"]),
])
def test_backend_settings_are_refused_in_one_line(tmp_path, settings, words):
    proc = make("pretrain", "DATA_DIR=%s" % tmp_path, *settings, check=False)
    assert_one_line_error(proc, *words, program="pretrain", status=2)
    assert os.listdir(str(tmp_path)) == []


def test_dry_run_shows_the_torch_trainer_and_its_hosts(tmp_path):
    data = str(tmp_path)
    hparams = "--hparams=" + os.path.join(data, "hparams.json")
    tf1 = make("-n", "pretrain", "DATA_DIR=" + data, "MODEL_NAME=m").stdout
    assert "cd %s && %s run_pretraining.py --data-dir=%s --model-name=m %s" % (
        paths.ELECTRA_DIR, paths.VENV_PYTHON, data, hparams) in tf1, tf1
    torch = make("-n", "pretrain", "DATA_DIR=" + data, "MODEL_NAME=m", "BACKEND=torch").stdout
    assert "cd %s && %s -m electra_torch.run_pretraining --data-dir=%s --model-name=m %s" % (
        paths.TORCH_TRAINER_DIR, paths.MODERN_PYTHON, data, hparams) in torch, torch
    hosts = make("-n", "pretrain", "DATA_DIR=" + data, "MODEL_NAME=m", "BACKEND=torch",
                 "NUM_GPUS=8", "NNODES=2", "NODE_RANK=1", "MASTER_ADDR=10.0.0.1",
                 "MASTER_PORT=29501").stdout
    assert "--num-gpus=8" in hosts     # into hparams.json (num_gpus), as for TF1
    assert ("cd %s && MASTER_ADDR=10.0.0.1 MASTER_PORT=29501 NNODES=2 NODE_RANK=1 %s -m "
            "electra_torch.run_pretraining" % (paths.TORCH_TRAINER_DIR, paths.MODERN_PYTHON)
            ) in hosts, hosts
    conformance = make("-n", "conformance", "BACKEND=torch").stdout
    assert "%s -m wrapper.conformance --backend=torch" % paths.VENV_PYTHON in conformance
    assert "--backend" not in make("-n", "conformance").stdout
    assert "scripts/bench_train.py --backend=both" in make("-n", "bench-train",
                                                           "BACKEND=torch").stdout
    assert "scripts/bench_train.py --backend=tf1" in make("-n", "bench-train").stdout


def test_empty_host_settings_are_unset_for_the_trainer():
    """Make exports NNODES= when nobody gave it; the trainer must see no NNODES at all."""
    from wrapper import supervise
    command = pipeline.pretrain_command(dict(pipeline.read_settings({}), DATA_DIR="d",
                                             MODEL_NAME="m", BACKEND="torch", NNODES="2"))
    os.environ["NODE_RANK"] = ""
    try:
        environ = supervise.command_environment(command)
    finally:
        del os.environ["NODE_RANK"]
    assert environ["NNODES"] == "2" and "NODE_RANK" not in environ and "MASTER_ADDR" not in environ


# ---- one model directory, either trainer in turn --------------------------------------------

@pytest.mark.slow
def test_tf1_then_torch_then_tf1_continue_one_model(tmp_path):
    data = str(tmp_path / "d")
    common = ["DATA_DIR=" + data, "MODEL_NAME=m", "CORPUS=" + FORTUNES_SHARED,
              "VOCAB=" + VOCAB_8K, "TRAIN_SIZE=2000", "NUM_PROCESSES=1"]

    def pretrain(steps, *more):
        overrides = json.dumps(dict(TINY, num_train_steps=steps))
        return make("pretrain", "HPARAMS_OVERRIDES=" + overrides, *(common + list(more)),
                    timeout=600).stdout

    make("corpus", "vocab", "hparams", "HPARAMS_OVERRIDES=" + json.dumps(TINY), *common)
    make("pretrain-data", "HPARAMS_OVERRIDES=" + json.dumps(TINY), *common, timeout=300)
    first = pretrain(5)
    assert re.search(r"^5/5 = 100\.0%", first, re.M), first[-2000:]
    model = os.path.join(data, "models", "m")
    # The PyTorch trainer continues the TF1 checkpoint.
    torch = pretrain(10, "BACKEND=torch")
    assert re.search(r"^Resuming from \S*/models/m/model\.ckpt-5 \(step 5\)$", torch, re.M), \
        torch[-3000:]
    assert re.search(r"^10/10 = 100\.0%", torch, re.M), torch[-2000:]
    # Back to TF1: it continues the PyTorch trainer's checkpoint.
    back = pretrain(15, "BACKEND=tf1")
    assert re.search(r"^15/15 = 100\.0%", back, re.M), back[-2000:]
    assert not re.search(r"^([1-9]|10)/15 = ", back, re.M), back[-2000:]   # from step 10
    with open(os.path.join(model, "checkpoint")) as f:
        assert 'model_checkpoint_path: "model.ckpt-15"' in f.read()
    # Finished is finished, whichever trainer asks.
    assert "pretrain-m: up to date" in pretrain(15, "BACKEND=torch")
    # precision and seed are among what may change; the learning rate is not.
    stage = pipeline.pretrain_plan(dict(pipeline.read_settings({}), DATA_DIR=data, MODEL_NAME="m"))
    assert {"precision", "seed"} <= set(stage.may_change)
    refused = make("pretrain", *common, check=False, timeout=300,
                   env={"HPARAMS_OVERRIDES": json.dumps(dict(TINY, num_train_steps=20,
                                                             learning_rate=0.002))})
    assert_one_line_error(refused, "started from other inputs")


# ---- docker-run IMAGE=torch -------------------------------------------------------------------

def test_docker_run_forwards_backend_and_hosts(tmp_path, fake_docker):  # noqa: F811
    env, recorded = fake_docker
    data = str(tmp_path / "data")
    proc = make("docker-run", "IMAGE=torch", "TARGET=pretrain", "DATA_DIR=" + data,
                "BACKEND=torch", "NUM_GPUS=8", "NNODES=2", "NODE_RANK=1",
                "MASTER_ADDR=10.0.0.1", "MASTER_PORT=29501", check=False, env=env)
    assert proc.returncode != 0
    argv = recorded()
    image = argv.index("make") - 1
    assert argv[image:] == ["electra-spanish:torch2.13.0-cuda12.8", "make", "pretrain"], argv
    assert argv[argv.index("--network") + 1] == "host"
    forwarded = [argv[i + 1] for i, a in enumerate(argv) if a == "-e"]
    for setting in ("BACKEND=torch", "NUM_GPUS=8", "NNODES=2", "NODE_RANK=1",
                    "MASTER_ADDR=10.0.0.1", "MASTER_PORT=29501", "REQUIRE_GPU=1"):
        assert setting in forwarded, (setting, argv)
    # One host: the container's own network.
    make("docker-run", "IMAGE=torch", "TARGET=pretrain", "DATA_DIR=" + data, "BACKEND=torch",
         check=False, env=env)
    assert "--network" not in recorded()


@pytest.mark.parametrize("target, settings, words", [
    ("convert", [], ["TARGET=convert needs TensorFlow 1.15", "IMAGE=torch"]),
    ("verify", [], ["TARGET=verify needs TensorFlow 1.15"]),
    ("pretrain", [], ["add BACKEND=torch"]),
    ("vocab", ["VOCAB=train"], ["VOCAB=train trains with .venv's tokenizers"]),
])
def test_docker_run_torch_image_refuses_what_needs_tf1(tmp_path, fake_docker, target,  # noqa: F811
                                                       settings, words):
    env, recorded = fake_docker
    proc = make("docker-run", "IMAGE=torch", "TARGET=" + target, "DATA_DIR=%s" % tmp_path,
                *settings, check=False, env=env)
    assert_one_line_error(proc, *words, program="docker-run", status=2)
    assert not os.path.exists(str(tmp_path / "argv"))   # docker never ran


# ---- docker/Dockerfile.torch ------------------------------------------------------------------

TORCH_DOCKERFILE = os.path.join(REPO, "docker", "Dockerfile.torch")


def test_torch_lock_is_the_modern_lock_less_torch():
    modern = read_pins(os.path.join(REPO, "requirements-modern.lock"))
    assert read_pins(os.path.join(REPO, "requirements-torch.lock")) == {
        k: v for k, v in modern.items() if k != "torch"}


def test_torch_dockerfile_pins_its_base_at_the_lock_torch_and_installs_its_lock():
    text = open(TORCH_DOCKERFILE).read()
    torch = read_pins(os.path.join(REPO, "requirements-modern.lock"))[canonical("torch")]
    bases = re.findall(r"^FROM (\S+)", text, re.M)
    assert bases == ["pytorch/pytorch:%s-cuda12.8-cudnn9-runtime" % torch], bases
    assert "python3 -m venv --system-site-packages .venv-modern" in text   # sees the base's torch
    installs = re.findall(r"pip install ([^&\\\n]*)", text)
    assert installs == ["--no-cache-dir --no-deps -r requirements-torch.lock "], installs
    assert "torch.__version__.startswith('%s')" % torch in text
    # docker-build IMAGE=torch builds this file under the tag docker-run IMAGE=torch runs.
    build = make("-n", "docker-build", "IMAGE=torch").stdout
    assert "docker build -f docker/Dockerfile.torch" in build, build
    from wrapper import settings   # DOCKER_IMAGE's default (settings.mk is made from it)
    assert settings.default("DOCKER_IMAGE", {"IMAGE": "torch"}) == \
        "electra-spanish:torch%s-cuda12.8" % torch


def test_torch_dockerfile_hadolint_clean():
    hadolint = os.path.join(os.path.dirname(sys.executable), "hadolint")
    proc = run([hadolint, TORCH_DOCKERFILE], check=False)
    assert proc.returncode == 0 and proc.stdout.strip() == "", proc.stdout + proc.stderr


# ---- make demo-gpu ----------------------------------------------------------------------------

def cuda_visible():
    probe = run([PY_MODERN, "-c", "import torch; print(torch.cuda.is_available())"])
    return probe.stdout.strip() == "True"


@pytest.mark.skipif(cuda_visible(), reason="a CUDA GPU is visible: make demo-gpu would run")
def test_demo_gpu_without_a_gpu_stops_before_any_stage(tmp_path):
    proc = make("demo-gpu", "DATA_DIR=%s" % tmp_path, check=False, timeout=120)
    assert_one_line_error(proc, "needs a CUDA GPU", "DEMO_GPU_SMOKE=1", program="demo-gpu")
    assert "== make corpus" not in proc.stdout
    assert os.listdir(str(tmp_path)) == []


def test_demo_gpu_dry_run_shows_its_settings_and_steps(tmp_path):
    out = make("-n", "demo-gpu", "DATA_DIR=%s" % tmp_path).stdout
    data = os.path.join(str(tmp_path), "demo-gpu")
    assert "demo-gpu: DATA_DIR=%s CORPUS=debian-es VOCAB=train VOCAB_SIZE=32000 " \
           "PRESET=demo-gpu BACKEND=torch" % shlex.quote(data) in out, out
    for line in ("-m electra_torch.run_pretraining --data-dir=" + data,
                 "-m wrapper.replaced_word --model-dir=%s --sentences=%s --count=20 --seed=1234"
                 % (paths.hf_dir(data, "electra-spanish", "discriminator"),
                    paths.corpus_heldout_file(data)),
                 "-m wrapper.evaluate --data-dir=%s --model-name=electra-spanish "
                 "--task=fortunes-es --baseline=random --seeds=5" % data):
        assert line in out, (line, out)
    assert "VOCAB_SIZE=1000 " in make("-n", "demo-gpu", "DATA_DIR=%s" % tmp_path,
                                      "DEMO_GPU_VOCAB_SIZE=1000").stdout


@pytest.mark.slow
def test_demo_gpu_smoke_runs_its_whole_path_on_the_cpu(tmp_path):
    task_data = real_classification_data(str(tmp_path / "task"))
    proc = make("demo-gpu", "DEMO_GPU_SMOKE=1", "DATA_DIR=%s" % tmp_path,
                "TASK=two-categories", "TASK_DATA=" + task_data, "SEEDS=1", timeout=900)
    out = proc.stdout
    for header in ("== make corpus", "== make pretrain", "== make verify",
                   "== the discriminator on 20 held-out sentences"):
        assert header in out, header
    assert "-m electra_torch" not in out    # the trainer ran, it was not just shown
    assert re.search(r"^20/20 = 100\.0%", out, re.M), out[-3000:]
    assert re.search(r"^replaced word is the discriminator's top token in \d+ of 20 sentences",
                     out, re.M), out[-3000:]
    assert re.search(r"^make demo-gpu: done in \d+ s$", out, re.M), out[-3000:]
    hf = paths.hf_dir(os.path.join(str(tmp_path), "demo-gpu"), "electra-spanish",
                      "discriminator")
    assert os.path.isfile(os.path.join(hf, "config.json"))
