"""TF checkpoint -> Hugging Face: the reference tiny checkpoint, strictness, bad inputs, export.

Real checkpoints throughout: the conformance folder's tiny checkpoint, and variants of it
written with TF 1.15 (a tensor added or left out), converted by the real command line and
loaded with the real transformers 2.8.0 models.
"""
import json
import os
import shutil

import numpy as np
import pytest

from conftest import CONFORMANCE, PY, REPO, assert_one_line_error, run
from convert_support import (MODEL_NAME, TINY_CONFIGS, TINY_PREFIX, expected, exported_tiny,
                             hf_dir, make_data_dir, need_modern)
from wrapper import checkpoint_layout, convert, hf_export, tf_checkpoint
from wrapper.cli import UserError


def write_checkpoint(prefix, tensors):
    """A real TF checkpoint holding exactly `tensors` (name -> numpy array)."""
    import tensorflow.compat.v1 as tf
    graph = tf.Graph()
    with graph.as_default():
        variables = {name: tf.Variable(value, name="v%d" % i)
                     for i, (name, value) in enumerate(sorted(tensors.items()))}
        saver = tf.train.Saver(var_list=variables)
        with tf.Session() as session:
            session.run(tf.global_variables_initializer())
            saver.save(session, prefix, write_meta_graph=False)
    return prefix


@pytest.fixture(scope="module")
def tiny_tensors():
    return tf_checkpoint.read_tensors(TINY_PREFIX)


def config_file(tmp_path, network, **changes):
    path = str(tmp_path / ("config-%s.json" % network))
    with open(path, "w") as f:
        json.dump(dict(TINY_CONFIGS[network], **changes), f)
    return path


def convert_cli(ckpt, config, out, network="discriminator", check=False):
    return run([PY, "-m", "wrapper.convert", "--tf_checkpoint_path", ckpt,
                "--electra_config_file", config, "--pytorch_dump_path", out,
                "--discriminator_or_generator", network], check=check, cwd=REPO)


def logits(model_dir, network, eps=None):
    import torch
    import transformers
    cls = transformers.ElectraForPreTraining if network == "discriminator" \
        else transformers.ElectraForMaskedLM
    model = cls.from_pretrained(model_dir).eval()
    if eps is not None:
        model.generator_predictions.LayerNorm.eps = eps
    e = expected()
    with torch.no_grad():
        return model(*(torch.tensor(e[k]) for k in ("input_ids", "input_mask",
                                                     "segment_ids")))[0].numpy()


def assert_matches_reference(model_dir, network):
    e = expected()
    if network == "discriminator":
        diff = np.abs(logits(model_dir, network) - np.array(e["discriminator_logits"])).max()
        assert diff < 1e-4, diff
    else:
        out = logits(model_dir, network)
        assert (out.argmax(-1) == np.array(e["generator_logits_argmax"])).all()
        # transformers 2.8.0's generator head uses LayerNorm eps 1e-5: ~2e-3 off ...
        assert np.abs(out[:, :, :5] - np.array(e["generator_logits_first5"])).max() < 5e-3
        # ... and with the reference's eps the weights reproduce TF to float precision.
        exact = logits(model_dir, network, eps=1e-12)
        assert np.abs(exact[:, :, :5] - np.array(e["generator_logits_first5"])).max() < 1e-4
        assert abs(exact.sum() - e["generator_logits_sum"]) < 1e-5 * abs(e["generator_logits_sum"])


# ---- conversion of the reference checkpoint -----------------------------------------------

@pytest.mark.parametrize("network", ["discriminator", "generator"])
def test_convert_cli_reproduces_reference_logits(tmp_path, network):
    out = tmp_path / "hf"
    out.mkdir()
    proc = convert_cli(TINY_PREFIX, config_file(tmp_path, network),
                       str(out / "pytorch_model.bin"), network, check=True)
    assert "converted %s" % network in proc.stdout
    assert sorted(os.listdir(str(out))) == ["config.json", "model.safetensors",
                                            "pytorch_model.bin"]
    with open(str(out / "config.json")) as f:
        config = json.load(f)
    assert config["architectures"] == [convert.MODEL_CLASS[network]]
    assert config["hidden_size"] == TINY_CONFIGS[network]["hidden_size"]
    assert_matches_reference(str(out), network)


@pytest.mark.parametrize("network", ["discriminator", "generator"])
def test_every_tensor_placed_exactly_once(network):
    shapes = tf_checkpoint.read_shapes(TINY_PREFIX)
    model = convert.build_model(TINY_CONFIGS[network], network)
    parameters = {k: list(v.shape) for k, v in model.state_dict().items()}
    plan = convert.map_checkpoint(shapes, network, parameters)
    assert list(plan) == list(parameters)               # every parameter set
    used = [tf_name for name, (tf_name, _) in plan.items() if name != convert.TIED_LM_HEAD]
    assert len(used) == len(set(used))                  # no tensor used twice
    own, other, unknown = checkpoint_layout.split_by_network(list(shapes), network)
    assert sorted(used) == sorted(own) and not unknown  # every tensor of the network used
    assert other                                        # the other network's are left alone
    skipped = [n for n in shapes if tf_checkpoint.is_training_state(n)]
    assert "global_step" in skipped and any(n.endswith("/adam_m") for n in skipped)
    assert sorted(used + other + skipped) == sorted(shapes)
    if network == "generator":   # the LM head is the shared word-embedding table
        assert plan[convert.TIED_LM_HEAD][0] == "electra/embeddings/word_embeddings"
        assert not plan[convert.TIED_LM_HEAD][1]
    transposed = {tf_name for tf_name, t in plan.values() if t}
    assert transposed == {n for n in used if n.endswith("/kernel")}


def test_mapping_names():
    assert convert.hf_parameter_name(
        "electra/encoder/layer_11/attention/self/query/kernel", "discriminator") == \
        ("electra.encoder.layer.11.attention.self.query.weight", True)
    assert convert.hf_parameter_name("discriminator_predictions/dense_1/bias",
                                     "discriminator") == \
        ("discriminator_predictions.dense_prediction.bias", False)
    assert convert.hf_parameter_name("generator/encoder/layer_0/output/LayerNorm/gamma",
                                     "generator") == \
        ("electra.encoder.layer.0.output.LayerNorm.weight", False)
    assert convert.hf_parameter_name("generator_predictions/output_bias", "generator") == \
        ("generator_lm_head.bias", False)
    assert convert.hf_parameter_name("electra/embeddings/LayerNorm/beta", "generator") == \
        ("electra.embeddings.LayerNorm.bias", False)
    assert convert.hf_parameter_name("generator/encoder/layer_0/output/dense/kernel",
                                     "discriminator") is None


@pytest.mark.parametrize("extra", ["electra/encoder/layer_0/attention/self/query/scale",
                                   "mystery/weights"])
def test_unplaced_tensor_is_an_error(tmp_path, tiny_tensors, extra):
    tensors = dict(tiny_tensors)
    tensors[extra] = np.ones([64], np.float32)
    prefix = write_checkpoint(str(tmp_path / "model.ckpt-40"), tensors)
    with pytest.raises(UserError) as info:
        convert.convert(prefix, TINY_CONFIGS["discriminator"], "discriminator")
    assert extra in str(info.value)


def test_missing_tensor_is_an_error(tmp_path, tiny_tensors):
    tensors = {k: v for k, v in tiny_tensors.items()
               if not k.startswith("electra/encoder/layer_1/output/LayerNorm/gamma")}
    prefix = write_checkpoint(str(tmp_path / "model.ckpt-40"), tensors)
    with pytest.raises(UserError) as info:
        convert.convert(prefix, TINY_CONFIGS["discriminator"], "discriminator")
    assert "electra.encoder.layer.1.output.LayerNorm.weight" in str(info.value)
    assert "has no tensor" in str(info.value)


@pytest.mark.parametrize("changes,fragment", [
    ({"num_hidden_layers": 1}, "electra/encoder/layer_1/"),
    ({"num_hidden_layers": 3}, "electra.encoder.layer.2."),
    ({"intermediate_size": 128}, "intermediate/dense"),
    ({"embedding_size": 64}, "electra/embeddings/"),
    ({"vocab_size": 8001}, "word_embeddings"),
])
def test_config_contradicting_shapes_in_process(changes, fragment):
    with pytest.raises(UserError) as info:
        convert.convert(TINY_PREFIX, dict(TINY_CONFIGS["discriminator"], **changes),
                        "discriminator")
    assert fragment in str(info.value)


def test_conversion_does_not_import_tensorflow(tmp_path):
    """The checkpoint is read by tensor_bundle, the model built by torch alone."""
    proc = run([PY, "-X", "importtime", "-m", "wrapper.convert", "--tf_checkpoint_path",
                TINY_PREFIX, "--electra_config_file", config_file(tmp_path, "discriminator"),
                "--pytorch_dump_path", str(tmp_path / "hf" / "pytorch_model.bin")], cwd=REPO)
    imported = [line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines()
                if line.startswith("import time:")]
    assert "protobuf_wire" in imported and "torch" in imported     # (tensor_bundle's)
    assert not [name for name in imported if name.startswith("tensorflow")]


# ---- bad inputs on the command line: one line, non-zero exit ------------------------------

def test_bad_input_missing_checkpoint(tmp_path):
    out = str(tmp_path / "hf" / "pytorch_model.bin")
    proc = convert_cli(str(tmp_path / "model.ckpt-5"), config_file(tmp_path, "discriminator"),
                       out)
    assert_one_line_error(proc, "model.ckpt-5", "not found")
    assert not os.path.exists(out)


@pytest.mark.parametrize("keep,missing", [(".index", ".data-0"),
                                          (".data-00000-of-00001", ".index")])
def test_bad_input_partial_checkpoint(tmp_path, keep, missing):
    partial = tmp_path / "ckpt"
    partial.mkdir()
    shutil.copyfile(TINY_PREFIX + keep, str(partial / ("model.ckpt-40" + keep)))
    proc = convert_cli(str(partial / "model.ckpt-40"), config_file(tmp_path, "discriminator"),
                       str(tmp_path / "hf" / "pytorch_model.bin"))
    assert_one_line_error(proc, "incomplete", missing)
    assert not (tmp_path / "hf").exists()


def test_bad_input_config_contradicts_checkpoint(tmp_path):
    proc = convert_cli(TINY_PREFIX, config_file(tmp_path, "discriminator", hidden_size=32),
                       str(tmp_path / "hf" / "pytorch_model.bin"))
    assert_one_line_error(proc, "contradicts the checkpoint",
                          "discriminator_predictions/dense/bias has shape [64]", "needs [32]")


def test_bad_input_misspelt_config_key(tmp_path):
    config = dict(TINY_CONFIGS["discriminator"], max_position_embedings=512)
    path = str(tmp_path / "config.json")
    with open(path, "w") as f:
        json.dump(config, f)
    proc = convert_cli(TINY_PREFIX, path, str(tmp_path / "hf" / "pytorch_model.bin"))
    assert_one_line_error(proc, "'max_position_embedings'", "did you mean "
                          "'max_position_embeddings'")


@pytest.fixture(scope="module")
def discriminator_only_checkpoint(tmp_path_factory, tiny_tensors):
    """A real checkpoint without a generator (as a run with uniform_generator writes)."""
    root = tmp_path_factory.mktemp("no-generator")
    tensors = {k: v for k, v in tiny_tensors.items() if not k.startswith("generator")}
    return write_checkpoint(str(root / "model.ckpt-40"), tensors)


def test_bad_input_generator_from_checkpoint_without_one(tmp_path,
                                                         discriminator_only_checkpoint):
    proc = convert_cli(discriminator_only_checkpoint, config_file(tmp_path, "generator"),
                       str(tmp_path / "hf" / "pytorch_model.bin"), network="generator")
    assert_one_line_error(proc, "no generator", "convert the discriminator")
    assert not (tmp_path / "hf").exists()


def test_bad_input_output_holds_other_files(tmp_path):
    out = tmp_path / "hf"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    proc = convert_cli(TINY_PREFIX, config_file(tmp_path, "discriminator"),
                       str(out / "pytorch_model.bin"))
    assert_one_line_error(proc, "notes.txt", "did not write")
    assert sorted(os.listdir(str(out))) == ["notes.txt"]
    assert (out / "notes.txt").read_text() == "mine"


# ---- export: the pipeline's stage -------------------------------------------------------

EXPORTED_FILES = sorted(["README.md", "config.json", "model.safetensors", "pytorch_model.bin",
                         "special_tokens_map.json", "tokenizer_config.json", "vocab.txt"])


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    return exported_tiny(tmp_path_factory)


@pytest.mark.parametrize("network", ["discriminator", "generator"])
def test_export_writes_complete_directories(tiny_run, network):
    path = hf_dir(tiny_run, network)
    assert sorted(os.listdir(path)) == EXPORTED_FILES
    assert sorted(os.listdir(os.path.dirname(path))) == ["discriminator", "generator"]
    with open(os.path.join(path, "config.json")) as f:
        config = json.load(f)
    for key, value in TINY_CONFIGS[network].items():
        assert config[key] == value, key
    assert config["layer_norm_eps"] == 1e-12 and config["model_type"] == "electra"
    with open(os.path.join(path, "tokenizer_config.json")) as f:
        tokenizer_config = json.load(f)
    assert tokenizer_config["do_lower_case"] is False   # tiny-hparams.json: cased
    assert tokenizer_config["strip_accents"] is False
    with open(os.path.join(path, "README.md"), encoding="utf-8") as f:
        card = f.read()
    assert "global step 40 of 40" in card and "8000 WordPiece tokens, cased" in card
    assert '"learning_rate": 0.001' in card and "No evaluation results" in card
    assert_matches_reference(path, network)


def read_safetensors(path):
    """(tensors, metadata) with .venv's safetensors library."""
    from safetensors import safe_open
    with safe_open(path, framework="np") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, f.metadata()


def test_export_safetensors_equal_pytorch_weights(tiny_run):
    import torch
    for network in ("discriminator", "generator"):
        path = hf_dir(tiny_run, network)
        tensors, metadata = read_safetensors(os.path.join(path, "model.safetensors"))
        state = torch.load(os.path.join(path, "pytorch_model.bin"))
        assert metadata == {"format": "pt"}
        assert sorted(tensors) == sorted(state)
        for name, value in state.items():
            assert np.array_equal(tensors[name], value.numpy()), name


def test_export_safetensors_read_by_the_safetensors_library(tiny_run):
    python = need_modern()
    path = os.path.join(hf_dir(tiny_run, "generator"), "model.safetensors")
    script = ("import json, sys\nfrom safetensors.numpy import load_file\n"
              "t = load_file(sys.argv[1])\n"
              "print(json.dumps({k: [list(v.shape), str(v.dtype), float(v.sum())] "
              "for k, v in t.items()}))")
    proc = run([python, "-c", script, path])
    theirs = json.loads(proc.stdout)
    ours, _ = read_safetensors(path)   # safetensors 0.4.5, which wrote it
    assert sorted(theirs) == sorted(ours)
    for name, (shape, dtype, total) in theirs.items():
        assert shape == list(ours[name].shape) and dtype == "float32"
        assert abs(total - float(ours[name].sum())) <= 1e-6 * max(1.0, abs(total))


def test_export_without_generator_writes_only_the_discriminator(tmp_path,
                                                                discriminator_only_checkpoint):
    root = make_data_dir(str(tmp_path / "data"), ckpt_files=[])
    model_dir = os.path.join(root, "models", MODEL_NAME)
    for name in os.listdir(os.path.dirname(discriminator_only_checkpoint)):
        shutil.copyfile(os.path.join(os.path.dirname(discriminator_only_checkpoint), name),
                        os.path.join(model_dir, name))
    stale = os.path.join(model_dir, "hf", "generator")   # an earlier export's generator
    os.makedirs(stale)
    with open(os.path.join(stale, "config.json"), "w") as f:
        f.write("{}")
    messages = []
    hf_export.export(root, MODEL_NAME, log=messages.append)
    assert os.listdir(os.path.join(model_dir, "hf")) == ["discriminator"]
    assert any("no generator" in m for m in messages)
    assert any("removed" in m for m in messages)


def test_export_refuses_hparams_contradicting_the_checkpoint(tmp_path):
    hparams = str(tmp_path / "hparams.json")
    with open(hparams, "w") as f:
        json.dump({"model_size": "small", "vocab_size": 8000, "do_lower_case": False,
                   "model_hparam_overrides": {"hidden_size": 128, "num_hidden_layers": 2}}, f)
    root = make_data_dir(str(tmp_path / "data"), hparams_path=hparams)
    proc = run([PY, "-m", "wrapper.hf_export", "--data-dir", root, "--model-name", MODEL_NAME],
               check=False, cwd=REPO)
    assert_one_line_error(proc, "hidden_size is 128", "64 in the checkpoint")
    assert not os.path.exists(os.path.join(root, "models", MODEL_NAME, "hf"))


def test_export_refuses_output_directory_with_foreign_files(tmp_path):
    root = make_data_dir(str(tmp_path / "data"))
    target = os.path.join(root, "models", MODEL_NAME, "hf", "generator")
    os.makedirs(target)
    with open(os.path.join(target, "my-notes.md"), "w") as f:
        f.write("keep me")
    proc = run([PY, "-m", "wrapper.hf_export", "--data-dir", root, "--model-name", MODEL_NAME],
               check=False, cwd=REPO)
    assert_one_line_error(proc, "my-notes.md", target)
    assert os.listdir(target) == ["my-notes.md"]


def test_model_card_reports_eval_metrics(tmp_path):
    root = make_data_dir(str(tmp_path / "data"), ckpt_files=[])
    results = os.path.join(root, "models", MODEL_NAME, "results")
    os.makedirs(results)
    with open(os.path.join(results, "unsup_results.txt"), "w") as f:
        f.write("  disc_auc = 0.61\n  masked_lm_accuracy = 0.052\n  global_step = 40\n")
    run = checkpoint_layout.load_run_config(root, MODEL_NAME)
    card = hf_export.model_card("discriminator", MODEL_NAME, TINY_CONFIGS["discriminator"],
                                run, 40, 8000, False, root)
    assert "| disc_auc | 0.61 |" in card and "| masked_lm_accuracy | 0.052 |" in card


def test_real_small_sizes_derived_and_mapped():
    """ELECTRA-small as the reference writes it (every variable name and shape): the
    configs follow from the hparams and the shapes, and the mapping places every tensor."""
    from wrapper.electra import configure_pretraining as cp
    with open(os.path.join(CONFORMANCE, "pretraining", "variables-small-vocab8000.json")) as f:
        shapes = {name: entry["shape"] for name, entry in json.load(f).items()}
    run_config = cp.PretrainingConfig("m", "/data", model_size="small", vocab_size=8000)
    configs = checkpoint_layout.derive_hf_configs(run_config, shapes)
    sizes = {n: [c[k] for k in ("hidden_size", "num_hidden_layers", "num_attention_heads",
                                "intermediate_size", "embedding_size", "vocab_size")]
             for n, c in configs.items()}
    assert sizes == {"discriminator": [256, 12, 4, 1024, 128, 8000],
                     "generator": [64, 12, 1, 256, 128, 8000]}
    for network, config in configs.items():
        model = convert.build_model(config, network)
        parameters = {k: list(v.shape) for k, v in model.state_dict().items()}
        assert list(convert.map_checkpoint(shapes, network, parameters)) == list(parameters)
    # The run's hparams must agree with the shapes: base-sized hparams do not.
    with pytest.raises(UserError) as info:
        checkpoint_layout.derive_hf_configs(cp.PretrainingConfig("m", "/data", model_size="base",
                                                      vocab_size=8000), shapes)
    assert "embedding_size is 768" in str(info.value) and "128 in the checkpoint" in str(info.value)


def test_checkpoint_found_from_its_directory(tmp_path):
    """The tutorial passed the model directory; a container records absolute paths."""
    for name in os.listdir(os.path.dirname(TINY_PREFIX)):
        if name.startswith("model.ckpt-40."):
            shutil.copyfile(os.path.join(os.path.dirname(TINY_PREFIX), name),
                            str(tmp_path / name))
    assert tf_checkpoint.resolve_checkpoint(str(tmp_path)) == str(tmp_path / "model.ckpt-40")
    (tmp_path / "checkpoint").write_text(
        'model_checkpoint_path: "/workspace/data/models/x/model.ckpt-40"\n')
    assert tf_checkpoint.resolve_checkpoint(str(tmp_path)) == str(tmp_path / "model.ckpt-40")
    assert tf_checkpoint.resolve_checkpoint(str(tmp_path / "model.ckpt-40.index")) == \
        str(tmp_path / "model.ckpt-40")
    with pytest.raises(UserError) as info:
        tf_checkpoint.resolve_checkpoint(str(tmp_path / "empty-dir-does-not-exist"))
    assert "not found" in str(info.value)
