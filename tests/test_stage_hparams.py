"""make hparams: presets and overrides, checked by the trainer's own configure_pretraining
(types, ranges, sizes) before hparams.json is written."""
import json
import os

import pytest

from conftest import MAKE, REPO, VOCAB_8K, assert_one_line_error, module, run

TUTORIAL_AS_PUBLISHED = {
    "do_train": "true", "do_eval": "false", "model_size": "small", "do_lower_case": "false",
    "vocab_size": 119547, "num_train_steps": 100, "save_checkpoints_steps": 100,
    "train_batch_size": 32}


# ---- hparams --------------------------------------------------------------------------------

@pytest.fixture
def vocab_dir(tmp_path):
    data = tmp_path / "d"
    data.mkdir()
    module("vocab", "--data-dir", str(data), "--vocab", VOCAB_8K)
    return str(data)


def test_tutorial_preset_has_json_types(vocab_dir):
    module("hparams", "--data-dir", vocab_dir, "--preset", "tutorial")
    hp = json.load(open(os.path.join(vocab_dir, "hparams.json")))
    assert hp == {"do_train": True, "do_eval": False, "model_size": "small",
                  "do_lower_case": False, "num_train_steps": 100, "save_checkpoints_steps": 100,
                  "train_batch_size": 32, "vocab_size": 8000}
    from wrapper import hparams
    assert hparams.builder_flags(vocab_dir).split() == ["--max-seq-length", "128",
                                                        "--no-lower-case"]


def test_every_preset_resolves_in_the_trainer_config(vocab_dir):
    from wrapper.electra import configure_pretraining as config
    presets = sorted(n[:-5] for n in os.listdir(os.path.join(REPO, "hparams")))
    assert presets == ["demo-cpu", "demo-gpu", "electra-small-1m", "tutorial"]
    for preset in presets:
        module("hparams", "--data-dir", vocab_dir, "--preset", preset)
        hp = config.load_hparams(os.path.join(vocab_dir, "hparams.json"))
        resolved = config.PretrainingConfig("m", vocab_dir, **hp)
        assert resolved.vocab_size == 8000 and resolved.do_lower_case is False
        if preset == "electra-small-1m":
            assert (resolved.num_train_steps, resolved.train_batch_size, resolved.learning_rate,
                    resolved.num_warmup_steps, resolved.model_size) == (
                        1000000, 128, 5e-4, 10000, "small")
        if preset == "demo-cpu":
            assert resolved.model_hparam_overrides["hidden_size"] < 256
        if preset == "demo-gpu":   # the published shape, for the PyTorch trainer in bf16
            assert (resolved.model_size, resolved.model_hparam_overrides, resolved.precision,
                    resolved.train_batch_size, resolved.max_seq_length,
                    resolved.num_train_steps) == ("small", {}, "bf16", 128, 128, 10000)


def test_overrides_merge_over_the_preset(vocab_dir):
    module("hparams", "--data-dir", vocab_dir, "--preset", "demo-cpu", "--overrides",
           '{"num_train_steps": 7, "model_hparam_overrides": {"num_hidden_layers": 1}}')
    hp = json.load(open(os.path.join(vocab_dir, "hparams.json")))
    demo = json.load(open(os.path.join(REPO, "hparams", "demo-cpu.json")))
    assert hp["num_train_steps"] == 7 and hp["model_hparam_overrides"] == dict(
        demo["model_hparam_overrides"], num_hidden_layers=1)


def test_tutorial_as_published_is_rejected_naming_do_eval(vocab_dir, tmp_path):
    path = tmp_path / "hparams.json"
    path.write_text(json.dumps(TUTORIAL_AS_PUBLISHED))
    proc = module("hparams", "--data-dir", vocab_dir, "--preset", str(path), check=False)
    line = assert_one_line_error(proc, "do_eval", '"false"', "silently mean true")
    assert "do_lower_case" in line
    assert not os.path.exists(os.path.join(vocab_dir, "hparams.json"))


@pytest.mark.parametrize("args,words", [
    (["--preset", "tutorail"], ["unknown PRESET 'tutorail'", "demo-cpu"]),
    (["--overrides", "{num_train_steps: 5}"], ["HPARAMS_OVERRIDES is not valid JSON"]),
    (["--overrides", "500"], ["HPARAMS_OVERRIDES must be a JSON object"]),
    (["--overrides", '{"num_train_step": 5}'], ["unknown hparam 'num_train_step'"]),
    (["--overrides", '{"model_hparam_overrides": {"hiden_size": 5}}'],
     ["unknown key 'hiden_size'"]),
    (["--overrides", '{"train_batch_size": "32"}'], ["train_batch_size", "without quotes"]),
    (["--overrides", '{"do_eval": true}'], ["exactly one of do_train and do_eval"]),
    (["--overrides", '{"vocab_size": 119547}'], ["disagrees", "8000"]),
])
def test_bad_hparams(vocab_dir, args, words):
    proc = module("hparams", "--data-dir", vocab_dir, *args, check=False)
    assert_one_line_error(proc, *words)
    assert not os.path.exists(os.path.join(vocab_dir, "hparams.json"))


# Values of the right type that training cannot use (issue 14's list): each is refused in
# one line naming key, value and the range, before hparams.json is written; the trainer
# refuses the same values with the same words (test_pretraining.py::test_bad_hparams).
OUT_OF_RANGE = [
    ('{"learning_rate": -0.5}', ["learning_rate = -0.5", "must be positive"]),
    ('{"learning_rate": NaN}', ["NaN is not a number JSON allows"]),
    ('{"learning_rate": Infinity}', ["Infinity is not a number JSON allows"]),
    ('{"mask_prob": 1.5}', ["mask_prob = 1.5", "in (0, 1]"]),
    ('{"mask_prob": 0}', ["mask_prob = 0", "in (0, 1]"]),
    ('{"temperature": 0}', ["temperature = 0", "must be positive"]),
    ('{"disc_weight": -50}', ["disc_weight = -50", "zero or more"]),
    ('{"gen_weight": -1.0}', ["gen_weight = -1.0", "zero or more"]),
    ('{"num_warmup_steps": -1}', ["num_warmup_steps = -1", "zero or more"]),
    ('{"weight_decay_rate": -0.01}', ["weight_decay_rate = -0.01", "zero or more"]),
    ('{"lr_decay_power": -1}', ["lr_decay_power = -1", "zero or more"]),
    ('{"num_train_steps": 0}', ["num_train_steps = 0", "at least 1"]),
    ('{"train_batch_size": -8}', ["train_batch_size = -8", "at least 1"]),
    ('{"embedding_size": 0}', ["embedding_size = 0", "at least 1"]),
    ('{"model_hparam_overrides": {"hidden_size": -128}}',
     ["model_hparam_overrides hidden_size = -128", "at least 1"]),
    ('{"model_hparam_overrides": {"hidden_dropout_prob": 1.0}}',
     ["hidden_dropout_prob = 1.0", "in [0, 1)"]),
    ('{"model_hparam_overrides": {"hidden_act": "swish"}}', ["hidden_act = swish", "gelu"]),
    ('{"generator_hidden_size": 0}', ["generator_hidden_size = 0", "must be positive"]),
    ('{"generator_hidden_size": 0.001}', ["the generator's hidden_size would be 0"]),
    ('{"model_hparam_overrides": {"hidden_size": 100, "num_attention_heads": 3}}',
     ["hidden_size 100 is not a multiple of num_attention_heads 3"]),
    ('{"max_seq_length": 1024}', ["max_seq_length 1024 exceeds max_position_embeddings 512"]),
    ('{"mask_prob": 0.001, "max_seq_length": 64}', ["masks no token"]),
    ('{"do_train": false}', ["exactly one of do_train and do_eval"]),
]


@pytest.mark.parametrize("overrides,words", OUT_OF_RANGE)
def test_out_of_range_hparams(vocab_dir, overrides, words):
    proc = module("hparams", "--data-dir", vocab_dir, "--overrides", overrides, check=False)
    assert_one_line_error(proc, *words)
    assert not os.path.exists(os.path.join(vocab_dir, "hparams.json"))


def test_range_rules_accept_their_edges(vocab_dir):
    """The edges are legal: mask_prob 1, no warmup, no weight decay, a zero loss weight."""
    module("hparams", "--data-dir", vocab_dir, "--preset", "demo-cpu", "--overrides",
           '{"mask_prob": 1.0, "num_warmup_steps": 0, "weight_decay_rate": 0, '
           '"gen_weight": 0, "lr_decay_power": 0}')
    assert json.load(open(os.path.join(vocab_dir, "hparams.json")))["mask_prob"] == 1.0


def test_bad_hparams_through_make(vocab_dir):
    for var, words in [("PRESET=nope", ["unknown PRESET 'nope'"]),
                       ("HPARAMS_OVERRIDES={oops", ["HPARAMS_OVERRIDES is not valid JSON"])]:
        proc = run(MAKE + ["hparams", "DATA_DIR=" + vocab_dir, var], check=False)
        assert_one_line_error(proc, *words)


def test_num_gpus_goes_into_hparams_through_make(vocab_dir):
    """make hparams NUM_GPUS=4 is {"num_gpus": 4} over the preset and overrides (the trainer
    then asks for 4 GPUs); a count that is not a positive integer is one line."""
    run(MAKE + ["hparams", "DATA_DIR=" + vocab_dir, "PRESET=demo-cpu", "NUM_GPUS=4",
                'HPARAMS_OVERRIDES={"num_train_steps": 9}'])
    hp = json.load(open(os.path.join(vocab_dir, "hparams.json")))
    assert (hp["num_gpus"], hp["num_train_steps"]) == (4, 9)
    proc = run(MAKE + ["hparams", "DATA_DIR=" + vocab_dir, "NUM_GPUS=0"], check=False)
    assert_one_line_error(proc, "NUM_GPUS must be a positive integer")
