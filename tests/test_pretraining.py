"""run_pretraining.py: the reference's checkpoint resumes, training learns, eval, bad input.

TFRecords come from the real builder on the fortunes-es corpus (built once per session).
Models are tiny (hidden 64, 2 layers) except where the variable list needs the real size
(`make conformance`'s variables check, run by .ci/run).
"""
import glob
import json
import os
import pickle
import re
import shutil

import numpy as np
import pytest

import conftest
from conftest import CONFORMANCE, ELECTRA_DIR, PY, VOCAB_8K, pretrain, run, tf1

CONVERTER = os.path.join(CONFORMANCE, "converter")
TINY_CKPT = os.path.join(CONVERTER, "tiny-ckpt")
with open(os.path.join(CONVERTER, "tiny-hparams.json")) as _f:
    TINY_HPARAMS = json.load(_f)
PROGRESS = re.compile(
    r"^(\d+)/(\d+) = ([\d.]+)%, SPS: ([\d.]+), ELAP: ([\d:]+), ETA: ([\d:]+)"
    r" - loss: ([\d.]+)$", re.M)
METRICS = ["masked_lm_accuracy", "masked_lm_loss", "sampled_masked_lm_accuracy", "disc_loss",
           "disc_auc", "disc_accuracy", "disc_precision", "disc_recall"]
RATES = ["masked_lm_accuracy", "sampled_masked_lm_accuracy", "disc_auc", "disc_accuracy",
         "disc_precision", "disc_recall"]


@pytest.fixture(scope="session")
def fortunes_tfrecords(tmp_path_factory, fortunes_dir):
    """The builder's shards for fortunes-es, as the reference's resume run used them."""
    out = str(tmp_path_factory.mktemp("fortunes-seq128") / "pretrain_tfrecords")
    run([PY, os.path.join(ELECTRA_DIR, "build_pretraining_dataset.py"),
         "--corpus-dir", fortunes_dir, "--vocab-file", VOCAB_8K, "--output-dir", out,
         "--max-seq-length", "128", "--no-lower-case", "--num-processes", "1",
         "--seed", "1234"])
    return out


def make_data_dir(root, tfrecords=None):
    """DIR with vocab.txt and (a link to) the shared pretrain_tfrecords."""
    os.makedirs(str(root), exist_ok=True)
    shutil.copy(VOCAB_8K, os.path.join(str(root), "vocab.txt"))
    if tfrecords:
        os.symlink(tfrecords, os.path.join(str(root), "pretrain_tfrecords"))
    return str(root)


def progress(stdout):
    """(step, total, loss) of every progress line."""
    return [(int(m.group(1)), int(m.group(2)), float(m.group(7)))
            for m in PROGRESS.finditer(stdout)]


def tiny(**changes):
    hparams = dict(TINY_HPARAMS)
    hparams.update(changes)
    return hparams


# ---- the graph equals the reference's ------------------------------------------------------

def import_electra(name):
    from wrapper import electra
    return electra.load(name)


def test_inference_logits_equal_reference_on_its_checkpoint(tmp_path):
    tf = tf1()
    configure = import_electra("configure_pretraining")
    model = import_electra("pretraining_model")
    with open(os.path.join(CONVERTER, "expected-tiny.json")) as f:
        expected = json.load(f)
    config = configure.PretrainingConfig("tiny", str(tmp_path), **TINY_HPARAMS)
    with tf.Graph().as_default():
        inputs = [tf.constant(expected[k], tf.int32)
                  for k in ("input_ids", "input_mask", "segment_ids")]
        logits = model.build_inference_logits(config, *inputs)
        saver = tf.train.Saver()  # every variable of the graph must be in the checkpoint
        with tf.Session() as session:
            saver.restore(session, os.path.join(TINY_CKPT, "model.ckpt-40"))
            out = session.run(logits)
    disc = out["discriminator_logits"]
    gen = out["generator_logits"]
    assert disc.shape == (3, 24) and gen.shape == (3, 24, 8000)
    assert np.abs(disc - np.array(expected["discriminator_logits"])).max() < 1e-4
    assert np.abs(gen[:, :, :5] - np.array(expected["generator_logits_first5"])).max() < 1e-4
    assert (gen.argmax(-1) == np.array(expected["generator_logits_argmax"])).all()
    assert abs(gen.sum() - expected["generator_logits_sum"]) < 1.0


SWITCHES = [
    ({}, {"generator/embeddings_project/kernel": [128, 16],
          "discriminator_predictions/dense_1/kernel": [64, 1]}, []),
    ({"electra_objective": False}, {"generator_predictions/dense/kernel": [64, 128]},
     ["generator/", "discriminator_predictions/"]),
    ({"uniform_generator": True}, {"discriminator_predictions/dense/kernel": [64, 64]},
     ["generator/", "generator_predictions/"]),
    ({"untied_generator": False}, {"generator_predictions/dense/kernel": [64, 128]},
     ["generator/"]),
    ({"untied_generator_embeddings": True},
     {"generator/embeddings/word_embeddings": [8000, 16],
      "generator_predictions/output_bias": [8000]}, ["generator/embeddings_project/"]),
    ({"generator_layers": 0.5, "generator_hidden_size": 0.5},
     {"generator/encoder/layer_0/intermediate/dense/kernel": [32, 128]},
     ["generator/encoder/layer_1/"]),
    ({"disallow_correct": True, "temperature": 0.5}, {}, []),
    ({"debug": True, "model_hparam_overrides": {}},
     {"electra/encoder/layer_2/output/dense/kernel": [576, 144],
      "generator/embeddings_project/kernel": [128, 36]}, ["electra/encoder/layer_3/"]),
]


def tiny_config_and_batch(data_dir, **switches):
    """The tiny model's config (vocab 8k) and the reference's tiny batch (its features)."""
    configure = import_electra("configure_pretraining")
    with open(os.path.join(CONVERTER, "expected-tiny.json")) as f:
        batch = json.load(f)
    config = configure.PretrainingConfig("x", data_dir, **tiny(**switches))
    config.vocab_file = VOCAB_8K
    return config, {k: batch[k] for k in ("input_ids", "input_mask", "segment_ids")}


@pytest.mark.parametrize("switches,shapes,absent", SWITCHES,
                         ids=[json.dumps(s[0]) for s in SWITCHES])
@pytest.mark.slow
def test_reference_switches_build_and_train(tmp_path, switches, shapes, absent):
    """Each switch of the reference builds its graph, with its variables, and trains."""
    tf = tf1()
    model = import_electra("pretraining_model")
    optimization = import_electra("optimization")
    config, batch = tiny_config_and_batch(str(tmp_path), **switches)
    with tf.Graph().as_default():
        tf.set_random_seed(1)
        features = {k: tf.constant(v, tf.int32) for k, v in batch.items()}
        outputs = model.build_pretraining_model(config, features, True)
        train_op, _ = optimization.create_train_op(outputs.total_loss, 1e-3, 10, 2)
        names = {optimization.variable_name(v): v.shape.as_list()
                 for v in tf.global_variables()}
        with tf.Session() as session:
            session.run(tf.global_variables_initializer())
            for _ in range(2):
                loss, _, tensors = session.run(
                    [outputs.total_loss, train_op, outputs.metric_tensors])
            step = session.run(tf.train.get_global_step())
    assert np.isfinite(loss) and loss > 0
    assert step == 2
    for name, shape in shapes.items():
        assert names.get(name) == shape, name
        assert names.get(name + "/adam_m") == shape, name
    for prefix in absent:
        assert not [n for n in names if n.startswith(prefix)], prefix
    if switches.get("disallow_correct"):
        by_name = dict(zip(["masked_lm_ids", "masked_lm_preds", "masked_lm_weights",
                            "mlm_loss", "input_mask", "sampled_tokids"], tensors))
        kept = by_name["masked_lm_weights"] > 0
        assert kept.sum() > 0
        assert (by_name["sampled_tokids"][kept] != by_name["masked_lm_ids"][kept]).all()


def test_adam_update_equals_the_reference_formula():
    """Adam without bias correction, decoupled weight decay, no decay on LayerNorm/bias."""
    tf = tf1()
    optimization = import_electra("optimization")
    rng = np.random.RandomState(0)
    start = {"a/kernel": rng.randn(5, 3).astype("f"), "a/bias": rng.randn(3).astype("f"),
             "a/LayerNorm/gamma": rng.randn(3).astype("f")}
    grads = [{k: rng.randn(*v.shape).astype("f") for k, v in start.items()}
             for _ in range(3)]
    rate, decay = 0.01, 0.1
    with tf.Graph().as_default():
        variables = {k: tf.get_variable(k, initializer=v) for k, v in start.items()}
        fed = {k: tf.placeholder(tf.float32, v.shape) for k, v in start.items()}
        update = optimization.adam_weight_decay_update(
            [(fed[k], variables[k]) for k in start], rate, decay)
        names = {optimization.variable_name(v) for v in tf.global_variables()}
        with tf.Session() as session:
            session.run(tf.global_variables_initializer())
            for grad in grads:
                session.run(update, {fed[k]: grad[k] for k in start})
            got = session.run(variables)
    assert names == set(start) | {k + s for k in start for s in ("/adam_m", "/adam_v")}
    for k, value in start.items():
        p, m, v = value.astype("f8"), 0.0, 0.0
        for grad in grads:
            m = 0.9 * m + 0.1 * grad[k]
            v = 0.999 * v + 0.001 * grad[k] ** 2
            step = m / (np.sqrt(v) + 1e-6)
            if k == "a/kernel":
                step += decay * p
            p = p - rate * step
        assert np.abs(got[k] - p).max() < 1e-5, k


@pytest.mark.parametrize("size", [0.01, 10.0, float("nan")])
def test_clip_by_global_norm_equals_tensorflows(size):
    """optimization.clip_by_global_norm (no Identity per gradient) gives TF's bits."""
    tf = tf1()
    optimization = import_electra("optimization")
    rng = np.random.RandomState(0)
    with tf.Graph().as_default():
        grads = [tf.constant(size * rng.randn(5, 3).astype("f")), None,
                 tf.IndexedSlices(tf.constant(size * rng.randn(4, 3).astype("f")),
                                  tf.constant([0, 2, 2, 7]), tf.constant([9, 3])),
                 tf.constant(size * rng.randn(3).astype("f"))]
        ours = optimization.clip_by_global_norm(grads, 1.0)
        theirs, _ = tf.clip_by_global_norm(grads, 1.0)
        assert ours[1] is None and isinstance(ours[2], tf.IndexedSlices)
        with tf.Session() as session:
            ours, theirs = session.run([[tf.convert_to_tensor(g) for g in ours if g is not None],
                                        [tf.convert_to_tensor(g) for g in theirs
                                         if g is not None]])
    for a, b in zip(ours, theirs):
        np.testing.assert_array_equal(a, b)   # NaN where TF gives NaN


@pytest.mark.slow
def test_gradients_skipping_inputs_without_gradient_are_the_same_with_fewer_ops():
    """skip_inputs_without_gradient: bit-equal gradients from fewer ops (the first step's time)."""
    tf = tf1()
    model = import_electra("pretraining_model")
    optimization = import_electra("optimization")
    config, batch = tiny_config_and_batch("/nonexistent")

    def gradients(skip):
        # A graph of its own each time, seeded: the same initial values and dropout masks.
        with tf.Graph().as_default() as graph:
            tf.set_random_seed(1)
            features = {k: tf.constant(v, tf.int32) for k, v in batch.items()}
            loss = model.build_pretraining_model(config, features, True).total_loss
            tvars = tf.trainable_variables()
            if skip:
                optimization.skip_inputs_without_gradient(tvars)
            before = len(graph.get_operations())
            grads = [tf.convert_to_tensor(g) for g in tf.gradients(loss, tvars)]
            built = len(graph.get_operations()) - before
            # One thread: sums are added in one order, so equal gradients are equal bits.
            single = tf.ConfigProto(intra_op_parallelism_threads=1,
                                    inter_op_parallelism_threads=1)
            with tf.Session(config=single) as session:
                session.run(tf.global_variables_initializer())
                return [v.name for v in tvars], session.run(grads), built

    names, full, full_ops = gradients(skip=False)
    _, skipped, skipped_ops = gradients(skip=True)
    for name, a, b in zip(names, full, skipped):
        assert np.array_equal(a, b), name
    assert all(np.abs(a).max() > 0 for a in full)
    assert skipped_ops < 0.85 * full_ops, (full_ops, skipped_ops)


# ---- training --------------------------------------------------------------------------------

@pytest.mark.slow
def test_resumes_reference_checkpoint(tmp_path, fortunes_tfrecords):
    data_dir = make_data_dir(tmp_path / "data", fortunes_tfrecords)
    model_dir = os.path.join(data_dir, "models", "tiny")
    shutil.copytree(TINY_CKPT, model_dir)
    # iterations_per_loop 1: a progress line for every step (default: every 10th here).
    proc = pretrain(data_dir, "tiny", tiny(num_train_steps=45, iterations_per_loop=1))
    lines = progress(proc.stdout)
    assert [s for s, _, _ in lines] == [41, 42, 43, 44, 45], proc.stdout[-2000:]
    assert all(total == 45 for _, total, _ in lines)
    # The reference, resumed the same way, logs 26.2-26.6 for steps 41-45.
    assert all(23.0 < loss < 30.0 for _, _, loss in lines), lines
    assert os.path.basename(_latest(model_dir)) == "model.ckpt-45"


def _latest(model_dir):
    with open(os.path.join(model_dir, "checkpoint")) as f:
        return re.search(r'^model_checkpoint_path: "(.*)"', f.read(), re.M).group(1)


@pytest.fixture(scope="module")
def trained_tiny(tmp_path_factory, fortunes_tfrecords):
    """A tiny model trained 60 steps from scratch on fortunes-es."""
    data_dir = make_data_dir(tmp_path_factory.mktemp("trained") / "data", fortunes_tfrecords)
    hparams = tiny(num_train_steps=60, save_checkpoints_steps=20, keep_checkpoint_max=2,
                   iterations_per_loop=1)   # a progress line for every step
    proc = pretrain(data_dir, "tiny", hparams)
    return data_dir, os.path.join(data_dir, "models", "tiny"), proc


@pytest.mark.slow
def test_training_lowers_the_loss(trained_tiny):
    _, _, proc = trained_tiny
    lines = progress(proc.stdout)
    assert [s for s, _, _ in lines] == list(range(1, 61)), proc.stdout[-2000:]
    losses = [loss for _, _, loss in lines]
    first, last = np.mean(losses[:10]), np.mean(losses[-10:])
    assert last < first, (first, last)


def test_checkpoints_kept_and_summaries_written(trained_tiny):
    tf = tf1()
    _, model_dir, _ = trained_tiny
    kept = sorted(int(re.search(r"-(\d+)\.index$", p).group(1))
                  for p in glob.glob(os.path.join(model_dir, "model.ckpt-*.index")))
    assert kept == [40, 60]  # keep_checkpoint_max 2 of 0, 20, 40, 60
    # Each kept checkpoint has its .meta, and none is left of a deleted one (model.ckpt-0's
    # .meta is written after the first step, before any later checkpoint).
    metas = sorted(int(re.search(r"-(\d+)\.meta$", p).group(1))
                   for p in glob.glob(os.path.join(model_dir, "model.ckpt-*.meta")))
    assert metas == kept
    with open(os.path.join(model_dir, "graph.pbtxt")) as f:
        assert 'name: "generator_predictions/output_bias"' in f.read()
    reader = tf.train.NewCheckpointReader(os.path.join(model_dir, "model.ckpt-60"))
    assert reader.get_tensor("global_step") == 60
    assert reader.get_variable_to_dtype_map()["global_step"] == tf.int64
    tags = set()
    for path in glob.glob(os.path.join(model_dir, "events.out.tfevents.*")):
        for event in tf.train.summary_iterator(path):
            tags.update(v.tag for v in event.summary.value)
    assert {"total_loss", "generator_loss", "discriminator_loss", "learning_rate"} <= tags


@pytest.mark.slow
def test_eval_writes_the_metrics(trained_tiny):
    data_dir, model_dir, _ = trained_tiny
    hparams = tiny(do_train=False, do_eval=True, num_eval_steps=3, eval_batch_size=8,
                   iterations_per_loop=1)
    proc = pretrain(data_dir, "tiny", hparams)
    with open(os.path.join(model_dir, "results", "unsup_results.pkl"), "rb") as f:
        results = pickle.load(f)
    with open(os.path.join(model_dir, "results", "unsup_results.txt")) as f:
        text = f.read()
    for name in METRICS:
        assert isinstance(results[name], float), name
        assert re.search(r"^%s = [-\d.e]+$" % name, text, re.M), name
        assert re.search(r"^  %s = [-\d.e]+$" % name, proc.stdout, re.M), name
    for name in RATES:
        assert 0.0 <= results[name] <= 1.0, (name, results[name])
    assert results["masked_lm_loss"] > 0 and results["disc_loss"] > 0
    assert results["global_step"] == 60
    assert [s for s, _, _ in progress(proc.stdout)] == [1, 2, 3]


# ---- bad input: one line, exit status 2, nothing built ---------------------------------------

def assert_one_line_error(proc, *parts):
    return conftest.assert_one_line_error(proc, *parts, program="run_pretraining.py", status=2)


def test_no_tfrecords(tmp_path):
    data_dir = make_data_dir(tmp_path / "data")
    proc = pretrain(data_dir, "m", tiny(), check=False)
    assert_one_line_error(proc, "no file matches pretrain_tfrecords",
                          "pretrain_tfrecords/pretrain_data.tfrecord*")
    assert not os.path.exists(os.path.join(data_dir, "models"))


@pytest.mark.slow
def test_shards_of_another_length(tmp_path, fortunes_tfrecords):
    data_dir = make_data_dir(tmp_path / "data", fortunes_tfrecords)
    proc = pretrain(data_dir, "m", tiny(max_seq_length=64), check=False)
    assert_one_line_error(proc, "examples of 128 tokens but max_seq_length = 64")


@pytest.mark.slow
def test_vocab_size_differs_from_vocab_txt(tmp_path, fortunes_tfrecords):
    data_dir = make_data_dir(tmp_path / "data", fortunes_tfrecords)
    proc = pretrain(data_dir, "m", tiny(vocab_size=32000), check=False)
    assert_one_line_error(proc, "vocab_size = 32000", "has 8000 lines")
    assert not os.path.exists(os.path.join(data_dir, "models"))


@pytest.mark.parametrize("do_train", [True, False])
@pytest.mark.slow
def test_do_train_equal_to_do_eval(tmp_path, do_train):
    data_dir = make_data_dir(tmp_path / "data")
    proc = pretrain(data_dir, "m", tiny(do_train=do_train, do_eval=do_train), check=False)
    assert_one_line_error(proc, "exactly one of do_train and do_eval must be true")


@pytest.mark.slow
def test_checkpoint_of_another_shape(tmp_path, fortunes_tfrecords):
    data_dir = make_data_dir(tmp_path / "data", fortunes_tfrecords)
    model_dir = os.path.join(data_dir, "models", "tiny")
    shutil.copytree(TINY_CKPT, model_dir)
    hparams = tiny(num_train_steps=45, model_hparam_overrides={"hidden_size": 128,
                                                               "num_hidden_layers": 2})
    proc = pretrain(data_dir, "tiny", hparams, check=False)
    # The generator is built first; its projection is the first variable whose shape differs.
    assert_one_line_error(proc, "checkpoint of another model",
                          "generator/embeddings_project/kernel has shape [128, 16]",
                          "[128, 32] in this model")
    assert sorted(os.listdir(model_dir)) == sorted(os.listdir(TINY_CKPT))


@pytest.mark.parametrize("hparams,parts", [
    ({"do_eval": "false"}, ['do_eval = "false"', "expected a boolean"]),
    ({"do_lower_case": "false"}, ['do_lower_case = "false"', "expected a boolean"]),
    ({"vocab_size": "32000"}, ['vocab_size = "32000"', "expected an integer"]),
    ({"num_train_steps": 1.5}, ["num_train_steps = 1.5", "expected an integer"]),
    ({"model_hparam_overrides": {"hidden_size": "64"}}, ['hidden_size = "64"']),
    ({"learning_rat": 0.1}, ["unknown hparam 'learning_rat'"]),
    ({"electric_objective": True}, ["electric_objective is not supported"]),
    # Ranges: the trainer's check is make hparams' own (configure_pretraining.validate).
    ({"learning_rate": -0.5}, ["learning_rate = -0.5", "must be positive"]),
    ({"learning_rate": float("nan")}, ["NaN is not a number JSON allows"]),
    ({"model_hparam_overrides": {"hidden_size": -128}}, ["hidden_size = -128", "at least 1"]),
])
def test_bad_hparams(tmp_path, hparams, parts):
    data_dir = make_data_dir(tmp_path / "data")
    proc = pretrain(data_dir, "m", hparams, check=False)
    assert_one_line_error(proc, *parts)
