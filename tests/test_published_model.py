"""The published model's shape and the tutorial's tools: electra-small-1m gives
skimai/electra-small-spanish's config.json, `python -m wrapper.convert` writes
model.safetensors as `make convert` does, a trained vocab of another size than asked says why.

The real-size check builds the real TensorFlow graph of the preset (vocab 50265) and derives
the Hugging Face config from its variables exactly as `make convert` does from a checkpoint,
without training or writing 70 MB of weights.
"""
import collections
import gzip
import json
import os
import re

import numpy as np
import pytest

from conftest import DEBIAN_REFERENCE_TXT, FORTUNES_DEBIAN, PY, REPO, VOCAB_8K, run
from convert_support import TINY_CONFIGS, TINY_PREFIX

# skimai/electra-small-spanish's config.json (the discriminator; the hub is offline here, so
# its fields are written down as data): vocab 50265, embedding 128, hidden 256, 12 layers,
# 4 heads, intermediate 1024, 512 positions, gelu, and ELECTRA-small's remaining values.
PUBLISHED_CONFIG = {
    "architectures": ["ElectraForPreTraining"],
    "model_type": "electra",
    "vocab_size": 50265,
    "embedding_size": 128,
    "hidden_size": 256,
    "num_hidden_layers": 12,
    "num_attention_heads": 4,
    "intermediate_size": 1024,
    "hidden_act": "gelu",
    "hidden_dropout_prob": 0.1,
    "attention_probs_dropout_prob": 0.1,
    "max_position_embeddings": 512,
    "type_vocab_size": 2,
    "initializer_range": 0.02,
    "layer_norm_eps": 1e-12,
    "pad_token_id": 0,
}
PUBLISHED_GENERATOR_WIDTH = 0.25        # the generator is 1/4 of the discriminator's width


def module(name, *args, check=True, **kwargs):
    return run([PY, "-m", "wrapper." + name] + [str(a) for a in args], check=check, cwd=REPO,
               **kwargs)


# ---- electra-small-1m: the published shape ---------------------------------------------------

def spanish_vocab(path, size):
    """A cased vocab of exactly `size` real tokens: the 8k WordPiece vocab, then the words of
    fortunes-es and debian-reference-es and their '##' forms (a given vocab of that size)."""
    with open(VOCAB_8K, encoding="utf-8") as f:
        tokens = f.read().splitlines()
    seen = set(tokens)
    texts = []
    for name in sorted(os.listdir(FORTUNES_DEBIAN)):
        if name.endswith(".fortunes"):
            with open(os.path.join(FORTUNES_DEBIAN, name), encoding="utf-8") as f:
                texts.append(f.read())
    with gzip.open(DEBIAN_REFERENCE_TXT, "rt", encoding="utf-8") as f:
        texts.append(f.read())
    words = [w for text in texts for w in re.findall(r"\w+", text)]
    for candidate in words + ["##" + w for w in words]:
        if len(tokens) == size:
            break
        if candidate not in seen:
            seen.add(candidate)
            tokens.append(candidate)
    assert len(tokens) == size, "the corpora hold fewer than %d distinct tokens" % size
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(tokens) + "\n")
    return path


def variable_shapes(run_config):
    """Every variable of the preset's real training graph: name -> shape (a checkpoint's)."""
    import tensorflow.compat.v1 as tf
    from wrapper import electra
    model = electra.load("pretraining_model")
    with tf.Graph().as_default():
        features = {k: tf.zeros([1, run_config.max_seq_length], tf.int32)
                    for k in ("input_ids", "input_mask", "segment_ids")}
        model.build_pretraining_model(run_config, features, False)
        return {v.op.name: v.shape.as_list() for v in tf.global_variables()}


@pytest.mark.slow
def test_electra_small_1m_preset_gives_the_published_config(tmp_path):
    from wrapper import checkpoint_layout, convert
    from wrapper.electra import configure_pretraining as cp
    data = tmp_path / "data"
    data.mkdir()
    given = spanish_vocab(str(tmp_path / "vocab-50265.txt"), 50265)
    module("vocab", "--data-dir", data, "--vocab", given)
    proc = module("hparams", "--data-dir", data, "--preset", "electra-small-1m")
    assert "note" not in proc.stderr, proc.stderr
    hparams = json.load(open(str(data / "hparams.json")))
    assert hparams["vocab_size"] == 50265
    run_config = cp.PretrainingConfig("m", str(data), **hparams)
    shapes = variable_shapes(run_config)
    assert shapes["electra/embeddings/word_embeddings"] == [50265, 128]
    configs = checkpoint_layout.derive_hf_configs(run_config, shapes, pad_token_id=0)
    written = convert.clean_config(configs["discriminator"], "discriminator")  # config.json
    assert {k: written.get(k) for k in PUBLISHED_CONFIG} == PUBLISHED_CONFIG
    generator = configs["generator"]
    assert generator["hidden_size"] == PUBLISHED_GENERATOR_WIDTH * 256 == 64
    assert (generator["num_hidden_layers"], generator["embedding_size"],
            generator["vocab_size"]) == (12, 128, 50265)
    # Those configs hold every tensor of such a checkpoint, each in its place.
    model = convert.build_model(written, "discriminator")
    parameters = collections.OrderedDict((k, list(v.shape))
                                         for k, v in model.state_dict().items())
    assert list(convert.map_checkpoint(shapes, "discriminator", parameters)) == list(parameters)
    # 16.1M float32 numbers, 64 MB: what the published 67.3 MB pytorch_model.bin fits (with
    # mBERT's 119,547 tokens the table alone would add 35 MB).
    assert 60e6 < 4 * sum(int(np.prod(s)) for s in parameters.values()) < 67.3e6


def test_electra_small_1m_with_another_vocab_says_it_is_not_the_published_shape(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    module("vocab", "--data-dir", data, "--vocab", VOCAB_8K)
    proc = module("hparams", "--data-dir", data, "--preset", "electra-small-1m")
    assert ("hparams: note: PRESET electra-small-1m is meant for a vocab of 50265 tokens (the "
            "published model's); %s has 8000" % (data / "vocab.txt")) in proc.stderr
    assert "VOCAB=train VOCAB_SIZE=50265" in proc.stderr
    tutorial = module("hparams", "--data-dir", data, "--preset", "tutorial")
    assert "note" not in tutorial.stderr


# ---- python -m wrapper.convert writes model.safetensors --------------------------------------

@pytest.mark.parametrize("network", ["discriminator", "generator"])
def test_convert_command_line_writes_safetensors_equal_to_the_weights(tmp_path, network):
    import torch
    from safetensors.numpy import load_file
    config = tmp_path / "config.json"
    config.write_text(json.dumps(TINY_CONFIGS[network]))
    out = tmp_path / "hf"
    module("convert", "--tf_checkpoint_path", TINY_PREFIX, "--electra_config_file", config,
           "--pytorch_dump_path", out / "pytorch_model.bin",
           "--discriminator_or_generator", network)
    assert sorted(os.listdir(str(out))) == ["config.json", "model.safetensors",
                                            "pytorch_model.bin"]
    weights = torch.load(str(out / "pytorch_model.bin"))
    tensors = load_file(str(out / "model.safetensors"))
    assert sorted(tensors) == sorted(weights)
    for name, value in weights.items():
        assert np.array_equal(tensors[name], value.numpy()), name


def test_convert_refuses_a_dump_path_naming_a_file_it_writes_beside(tmp_path):
    proc = module("convert", "--tf_checkpoint_path", TINY_PREFIX, "--electra_config_file",
                  tmp_path / "c.json", "--pytorch_dump_path", tmp_path / "model.safetensors",
                  check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "names model.safetensors, which the converter writes beside" in proc.stderr


# ---- a trained vocab of another size than asked -----------------------------------------------

@pytest.fixture(scope="module")
def fortunes_corpus_dir(tmp_path_factory):
    data = tmp_path_factory.mktemp("vocab-size") / "d"
    module("corpus", "--data-dir", data, "--corpus", FORTUNES_DEBIAN, "--train-size", "6000")
    return data


def test_trained_vocab_reaches_the_asked_size(fortunes_corpus_dir):
    proc = module("vocab", "--data-dir", fortunes_corpus_dir, "--vocab", "train",
                  "--vocab-size", "500")
    with open(str(fortunes_corpus_dir / "vocab.txt"), encoding="utf-8") as f:
        assert len(f.read().splitlines()) == 500
    assert "note" not in proc.stderr


def test_trained_vocab_larger_than_asked_says_why(fortunes_corpus_dir):
    proc = module("vocab", "--data-dir", fortunes_corpus_dir, "--vocab", "train",
                  "--vocab-size", "150")
    with open(str(fortunes_corpus_dir / "vocab.txt"), encoding="utf-8") as f:
        tokens = f.read().splitlines()
    chars = [t for t in tokens if len(t) == 1]
    continued = [t for t in tokens if len(t) == 3 and t.startswith("##")]
    # Nothing but the alphabet: no merge fits, and the trainer never drops a character.
    assert len(tokens) == 5 + len(chars) + len(continued) > 150
    assert ("vocab: note: VOCAB_SIZE=150 asked, %d tokens made: the WordPiece trainer keeps "
            "every character of the corpus (%d) and its '##' form (%d) so that no word becomes "
            "[UNK], and the 5 special tokens; %d is the smallest vocab for this corpus"
            % (len(tokens), len(chars), len(continued), len(tokens))) in proc.stderr
