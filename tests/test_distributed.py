"""Training on several replicas (tf.distribute): the same math, the same checkpoints.

- One step on 2 CPU replicas (MirroredStrategy), and one step of 2 worker processes on the
  loopback address (MultiWorkerMirroredStrategy from TF_CONFIG, through the Estimator as
  the trainer runs it), give the weights of one single-device step on the same global
  batch, the random parts given (tests/distributed_step.py).
- run_pretraining.py with num_cpu_replicas 2 trains the tiny model to its last step,
  writes the single-device variables, and resumes on one device; two trainer processes
  killed mid-run resume from the last checkpoint.
- Bad settings are one line; use_amp / use_xla build what they say.
"""
import json
import os
import re
import shutil
import socket
import subprocess
import sys

import numpy as np
import pytest

import conftest
from conftest import CONFORMANCE, ELECTRA_DIR, PY, VOCAB_8K, pretrain, run, tf1

HERE = os.path.dirname(os.path.abspath(__file__))
CONFORMANCE_TINY = os.path.join(CONFORMANCE, "converter")
TINY_CKPT = os.path.join(CONFORMANCE_TINY, "tiny-ckpt", "model.ckpt-40")
with open(os.path.join(CONFORMANCE_TINY, "tiny-hparams.json")) as _f:
    TINY_HPARAMS = json.load(_f)
STEP_LINE = re.compile(r"^(\d+)/(\d+) = [\d.]+%", re.M)


def import_electra(name):
    if ELECTRA_DIR not in sys.path:
        sys.path.insert(0, ELECTRA_DIR)
    import importlib
    return importlib.import_module(name)


def import_step():
    if HERE not in sys.path:
        sys.path.insert(0, HERE)
    import distributed_step
    return distributed_step


def relative_difference(got, want, floor=1e-5):
    """max |got - want| over max |want|; values below floor compare as absolute: the
    attention key biases get an analytically zero gradient (the softmax ignores them),
    so theirs is float noise, moving them by ~1e-11 either way (adam_v: ~g^2/1000)."""
    return float(np.abs(got - want).max() / max(float(np.abs(want).max()), floor))


def assert_same_step(got, want, name):
    assert got.shape == want.shape, name
    assert relative_difference(got, want) < 1e-5, (name, relative_difference(got, want))
    if name.endswith("/adam_m") and "/attention/self/key/bias" not in name:
        # adam_m is 0.1 x the clipped gradient: this compares the gradients themselves
        # (the first step moves a weight by about lr x sign(gradient) whatever its size).
        assert relative_difference(got, want, floor=1e-9) < 1e-5, name


@pytest.fixture(scope="module")
def initial_checkpoint(tmp_path_factory):
    return import_step().write_initial_checkpoint(str(tmp_path_factory.mktemp("init")))


@pytest.fixture(scope="module")
def single_device_step(initial_checkpoint):
    return import_step().variables_after_one_step(initial_checkpoint)


# ---- the same math -------------------------------------------------------------------------

@pytest.mark.slow
def test_two_cpu_replicas_step_equals_one_device_step(initial_checkpoint, single_device_step):
    two = import_step().variables_after_one_step(initial_checkpoint, cpu_replicas=2)
    assert sorted(two) == sorted(single_device_step)
    assert any(n.endswith("/adam_m") for n in two) and "global_step" in two
    moved = 0
    for name, want in single_device_step.items():
        copies = two[name]
        assert len(copies) == 2, name
        for copy in copies:
            assert_same_step(np.asarray(copy), np.asarray(want), name)
    start = tf_reader(initial_checkpoint)
    for name, want in single_device_step.items():
        moved += name != "global_step" and not np.array_equal(start.get_tensor(name), want)
    assert moved > 100   # the step changed the weights (and both slots) of the network
    assert two["global_step"] == [1, 1] and single_device_step["global_step"] == 1


def tf_reader(checkpoint):
    tf = tf1()
    return tf.train.NewCheckpointReader(checkpoint)


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def start_workers(script_args, cluster, env_extra=None, **popen):
    procs = []
    for index in range(len(cluster)):
        tf_config = {"cluster": {"worker": cluster}, "task": {"type": "worker", "index": index}}
        env = dict(os.environ, TF_CONFIG=json.dumps(tf_config), TF_CPP_MIN_LOG_LEVEL="3",
                   CUDA_VISIBLE_DEVICES="", **(env_extra or {}))
        procs.append(subprocess.Popen(script_args, env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, universal_newlines=True,
                                      **popen))
    return procs


def finish(procs, timeout):
    outputs = []
    for proc in procs:
        try:
            outputs.append(proc.communicate(timeout=timeout)[0])
        except subprocess.TimeoutExpired:
            for p in procs:
                p.kill()
            raise
    return outputs


@pytest.mark.slow
def test_two_worker_processes_step_equals_one_device_step(tmp_path, initial_checkpoint,
                                                          single_device_step):
    out_dir = str(tmp_path / "model")
    os.makedirs(out_dir)
    init_dir = os.path.dirname(initial_checkpoint)
    for name in os.listdir(init_dir):
        shutil.copy(os.path.join(init_dir, name), out_dir)
    cluster = ["127.0.0.1:%d" % port for port in free_ports(2)]
    procs = start_workers([PY, os.path.join(HERE, "distributed_step.py"), out_dir], cluster)
    outputs = finish(procs, timeout=900)
    for proc, output in zip(procs, outputs):
        assert proc.returncode == 0, output[-3000:]
        assert "2 hosts x 1 replica(s) (MultiWorkerMirroredStrategy" in output, output[-2000:]
    # Only the chief (worker 0) wrote: one events file, no other worker's folder.
    written = sorted(os.listdir(out_dir))
    assert len([n for n in written if n.startswith("events.out.tfevents.")]) == 1, written
    assert not [n for n in written if n.startswith("tmp_")], written
    reader = tf_reader(os.path.join(out_dir, "model.ckpt-1"))
    assert reader.get_tensor("global_step") == 1
    assert sorted(reader.get_variable_to_shape_map()) == sorted(single_device_step)
    for name, want in single_device_step.items():
        assert_same_step(np.asarray(reader.get_tensor(name)), np.asarray(want), name)


# ---- the trainer on 2 CPU replicas -----------------------------------------------------------

def tiny(**changes):
    return dict(TINY_HPARAMS, iterations_per_loop=1, **changes)   # a progress line per step


@pytest.fixture(scope="module")
def fortunes_data(tmp_path_factory, fortunes_dir):
    data_dir = str(tmp_path_factory.mktemp("dist-data"))
    shutil.copy(VOCAB_8K, os.path.join(data_dir, "vocab.txt"))
    run([PY, os.path.join(ELECTRA_DIR, "build_pretraining_dataset.py"),
         "--corpus-dir", fortunes_dir, "--vocab-file", VOCAB_8K,
         "--output-dir", os.path.join(data_dir, "pretrain_tfrecords"),
         "--max-seq-length", "128", "--no-lower-case", "--num-processes", "1",
         "--seed", "1234"])
    return data_dir


@pytest.mark.slow
def test_two_cpu_replicas_train_then_resume_on_one_device(fortunes_data):
    tf = tf1()
    model_dir = os.path.join(fortunes_data, "models", "cpu2")
    proc = pretrain(fortunes_data, "cpu2", tiny(num_train_steps=4, save_checkpoints_steps=4,
                                                num_cpu_replicas=2))
    assert "Replicas: 2 replicas on /cpu:0, /cpu:1 (MirroredStrategy); global batch 16 = 8 " \
           "per replica" in proc.stdout, proc.stdout[-2000:]
    assert [int(m.group(1)) for m in STEP_LINE.finditer(proc.stdout)] == [1, 2, 3, 4]
    # The checkpoint holds exactly the single-device variables (names, shapes, dtypes),
    # those of the reference's own tiny checkpoint.
    ours = tf.train.NewCheckpointReader(os.path.join(model_dir, "model.ckpt-4"))
    reference = tf.train.NewCheckpointReader(TINY_CKPT)
    assert ours.get_variable_to_shape_map() == reference.get_variable_to_shape_map()
    assert ours.get_variable_to_dtype_map() == reference.get_variable_to_dtype_map()
    assert ours.get_tensor("global_step") == 4
    tags = set()
    for path in os.listdir(model_dir):
        if path.startswith("events.out.tfevents."):
            for event in tf.train.summary_iterator(os.path.join(model_dir, path)):
                tags.update(v.tag for v in event.summary.value)
    assert {"total_loss", "generator_loss", "discriminator_loss", "learning_rate"} <= tags
    # ... and resumes on one device, the step count going on.
    proc = pretrain(fortunes_data, "cpu2", tiny(num_train_steps=6, save_checkpoints_steps=6))
    assert "Resuming from" in proc.stdout and "Replicas:" not in proc.stdout
    assert [int(m.group(1)) for m in STEP_LINE.finditer(proc.stdout)] == [5, 6]
    assert tf.train.NewCheckpointReader(
        os.path.join(model_dir, "model.ckpt-6")).get_tensor("global_step") == 6


@pytest.mark.slow
def test_killed_worker_then_both_restarted_resume_from_the_last_checkpoint(fortunes_data):
    """Two trainer processes on loopback (TF_CONFIG); one is killed mid-run. TF 1.15's
    all-reduce has no timeout, so the other would wait without end: it stops itself after
    PEER_TIMEOUT_S seconds without a step, in one line; both are started again, and they go
    on from the last checkpoint to the last step."""
    model_dir = os.path.join(fortunes_data, "models", "workers")
    hparams = tiny(num_train_steps=12, save_checkpoints_steps=4)
    args = [PY, "run_pretraining.py", "--data-dir", fortunes_data, "--model-name", "workers",
            "--hparams", json.dumps(hparams)]
    cluster = ["127.0.0.1:%d" % port for port in free_ports(2)]
    procs = start_workers(args, cluster, {"PEER_TIMEOUT_S": "30"}, cwd=ELECTRA_DIR, bufsize=1)
    try:
        seen = []
        for line in procs[0].stdout:            # the chief's progress lines
            seen.append(line)
            step = STEP_LINE.match(line)
            if step and int(step.group(1)) >= 6:   # past the checkpoint of step 4
                break
        assert seen and STEP_LINE.match(seen[-1]), "".join(seen)[-3000:]
        procs[1].kill()
        procs[1].wait(timeout=60)
        rest = procs[0].communicate(timeout=120)[0]   # before: no end
        assert procs[0].returncode == 1, rest[-3000:]
        errors = [l for l in rest.splitlines() if ": error: " in l]
        assert len(errors) == 1 and "Traceback" not in rest, rest[-3000:]
        assert errors[0].startswith("run_pretraining.py: error: no training step for 30 s "
                                    "(PEER_TIMEOUT_S): a host of the cluster stopped or hangs")
        assert "training stopped at step " in errors[0], errors[0]
    finally:
        for proc in procs:
            proc.kill()
            proc.wait(timeout=60)
    state = open(os.path.join(model_dir, "checkpoint")).read()
    last = int(re.search(r'^model_checkpoint_path: ".*-(\d+)"', state, re.M).group(1))
    assert 4 <= last < 12, state
    cluster = ["127.0.0.1:%d" % port for port in free_ports(2)]
    procs = start_workers(args, cluster, cwd=ELECTRA_DIR)
    outputs = finish(procs, timeout=600)
    for proc, output in zip(procs, outputs):
        assert proc.returncode == 0, output[-3000:]
        assert "(step %d)" % last in output and "Resuming from" in output, output[-3000:]
        # The wait for the other host is said, and ends; TF's server goes without a
        # traceback at exit ("Exception ignored in Server.__del__").
        assert "Waiting for the other host(s) of the cluster" in output, output[-3000:]
        assert "All 2 hosts are up" in output and "Traceback" not in output, output[-3000:]
    steps = [int(m.group(1)) for m in STEP_LINE.finditer(outputs[0])]
    assert steps[0] == last + 1 and steps[-1] == 12, outputs[0][-3000:]
    tf = tf1()
    assert tf.train.NewCheckpointReader(
        os.path.join(model_dir, "model.ckpt-12")).get_tensor("global_step") == 12


# ---- bad settings: one line, nothing built ---------------------------------------------------

def assert_one_line_error(proc, *parts):
    return conftest.assert_one_line_error(proc, *parts, program="run_pretraining.py", status=2)


@pytest.mark.parametrize("changes,parts", [
    ({"num_cpu_replicas": 3}, ["train_batch_size 16 (the global batch) does not split evenly "
                               "over 3 replicas"]),
    ({"num_gpus": 2}, ["num_gpus = 2 but 0 GPU(s) are visible"]),
    ({"num_gpus": 0}, ["hparam num_gpus = 0; it must be at least 1"]),
    ({"num_cpu_replicas": -1}, ["num_cpu_replicas = -1"]),
    ({"use_amp": "true"}, ['use_amp = "true"', "expected a boolean"]),
])
def test_bad_replica_settings(fortunes_data, changes, parts):
    proc = pretrain(fortunes_data, "bad", tiny(**changes), check=False)
    assert_one_line_error(proc, *parts)
    assert not os.path.exists(os.path.join(fortunes_data, "models", "bad"))


def test_bad_tf_config_is_one_line(fortunes_data):
    env = dict(os.environ, TF_CONFIG='{"cluster": {"ps": ["127.0.0.1:1"]}, '
                                     '"task": {"type": "ps", "index": 0}}')
    proc = subprocess.run([PY, "run_pretraining.py", "--data-dir", fortunes_data,
                           "--model-name", "bad", "--hparams", json.dumps(tiny())],
                          cwd=ELECTRA_DIR, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True)
    assert_one_line_error(proc, "TF_CONFIG cluster has ps job(s)")


# ---- the plan: no strategy by default --------------------------------------------------------

def test_default_hparams_build_no_strategy(tmp_path):
    configure = import_electra("configure_pretraining")
    distribute = import_electra("distribute")
    config = configure.PretrainingConfig("m", str(tmp_path))
    assert (config.num_gpus, config.num_cpu_replicas, config.use_amp, config.use_xla) == \
        (1, 0, False, False)
    plan = distribute.build_plan(config, gpus=[])
    assert plan.strategy is None and plan.per_replica_batch == 128
    # Four (pretended) visible GPUs: a MirroredStrategy on them, the global batch split.
    config = configure.PretrainingConfig("m", str(tmp_path), num_gpus=4)
    plan = distribute.build_plan(config, gpus=["g0", "g1", "g2", "g3"])
    assert plan.replicas == 4 and plan.per_replica_batch == 32
    assert type(plan.strategy).__name__.startswith("MirroredStrategy")
    with pytest.raises(distribute.DistributeError, match="num_gpus = 4 but 3 GPU"):
        distribute.build_plan(config, gpus=["g0", "g1", "g2"])


# ---- use_amp / use_xla: what the trainer builds ------------------------------------------

AMP_SCRIPT = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
import numpy as np
import tensorflow.compat.v1 as tf
import optimization
x = tf.get_variable("layer/kernel", initializer=np.ones([3], np.float32))
factor = tf.placeholder(tf.float32, [])
loss = tf.reduce_sum(x * x) * factor
train_op, _ = optimization.create_train_op(loss, 0.1, 10, 0, use_amp=True)
step = tf.train.get_global_step()
scale = [v for v in tf.global_variables() if "loss_scale" in v.name]
with tf.Session() as session:
    session.run(tf.global_variables_initializer())
    out = {"scale_variables": [optimization.variable_name(v) for v in scale]}
    start_scale = session.run(scale[0])
    session.run(train_op, {factor: 1.0})
    out["finite"] = [int(session.run(step)), session.run(x).tolist()]
    session.run(train_op, {factor: float("inf")})
    out["inf"] = [int(session.run(step)), session.run(x).tolist()]
    out["scales"] = [float(start_scale), float(session.run(scale[0]))]
    out["slots"] = sorted(optimization.variable_name(v) for v in tf.global_variables()
                          if "adam" in v.name)
print(json.dumps(out))
"""


def test_use_amp_wraps_the_optimizer_and_skips_non_finite_steps():
    """TF 1.15's mixed-precision wrapper with dynamic loss scaling around our Adam: a step
    whose gradients are not finite changes no weight and not global_step, and halves the
    loss scale (run in a process of its own: the rewrite is a process-wide switch)."""
    proc = run([PY, "-c", AMP_SCRIPT, ELECTRA_DIR])
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["scale_variables"], out     # the dynamic loss scale's variables were built
    step, weights = out["finite"]
    assert step == 1 and all(w < 1.0 for w in weights), out
    assert out["inf"] == [1, weights], out  # skipped: same step, same weights
    assert out["scales"][1] == out["scales"][0] / 2, out
    assert out["slots"] == ["layer/kernel/adam_m", "layer/kernel/adam_v"]


def test_use_amp_and_use_xla_set_the_session_rewrites():
    trainer = import_electra("run_pretraining")
    from tensorflow.core.protobuf import rewriter_config_pb2
    import tensorflow.compat.v1 as tf
    plain = trainer.session_config()
    assert plain.graph_options.rewrite_options.auto_mixed_precision == \
        rewriter_config_pb2.RewriterConfig.DEFAULT
    assert plain.graph_options.optimizer_options.global_jit_level == \
        tf.OptimizerOptions.DEFAULT
    assert not plain.device_count
    both = trainer.session_config(cpu_devices=2, use_amp=True, use_xla=True)
    assert both.graph_options.rewrite_options.auto_mixed_precision == \
        rewriter_config_pb2.RewriterConfig.ON
    assert both.graph_options.optimizer_options.global_jit_level == tf.OptimizerOptions.ON_1
    assert dict(both.device_count) == {"CPU": 2}


def test_single_device_graph_is_the_reference_shape():
    """Without a strategy and AMP: tf.gradients, clip_by_global_norm, ref-variable ApplyAdam
    per variable (the reference's graph), none of the distributed path's ops."""
    tf = tf1()
    optimization = import_electra("optimization")
    with tf.Graph().as_default() as graph:
        x = tf.get_variable("layer/kernel", initializer=np.ones([3], np.float32))
        optimization.create_train_op(tf.reduce_sum(x * x), 0.1, 10, 0)
        types = [op.type for op in graph.get_operations()]
        names = [op.name for op in graph.get_operations()]
    assert types.count("ApplyAdam") == 1 and "ResourceApplyAdam" not in types
    assert any(n.startswith("clip_by_global_norm/") for n in names)
    assert not any("loss_scale" in n or "AdamWeightDecay" in n for n in names)
