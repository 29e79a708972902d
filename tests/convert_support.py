"""Shared setup of the converter's tests: a data dir around the reference tiny checkpoint.

The conformance folder's tiny checkpoint (hidden 64, 2 layers, vocab 8000, 40 steps) becomes a
run of our layout: vocab-es-8k.txt as vocab.txt, tiny-hparams.json as hparams.json, the
checkpoint under models/NAME. It is exported once per test process.
"""
import json
import os
import shutil

import pytest

from conftest import CONFORMANCE, PY, PY_MODERN, REPO, VOCAB_8K, assert_one_line_error, run  # noqa: F401

CONVERTER = os.path.join(CONFORMANCE, "converter")
TINY_CKPT_DIR = os.path.join(CONVERTER, "tiny-ckpt")
TINY_PREFIX = os.path.join(TINY_CKPT_DIR, "model.ckpt-40")
TINY_HPARAMS = os.path.join(CONVERTER, "tiny-hparams.json")
EXPECTED = os.path.join(CONVERTER, "expected-tiny.json")
MODEL_NAME = "tiny"

# The Hugging Face configs of the tiny checkpoint's two networks (as conformance/check has them).
TINY_CONFIGS = {
    "discriminator": {"vocab_size": 8000, "embedding_size": 128, "hidden_size": 64,
                      "num_hidden_layers": 2, "num_attention_heads": 1,
                      "intermediate_size": 256, "hidden_act": "gelu",
                      "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1,
                      "max_position_embeddings": 512, "type_vocab_size": 2,
                      "initializer_range": 0.02},
}
TINY_CONFIGS["generator"] = dict(TINY_CONFIGS["discriminator"], hidden_size=16,
                                 intermediate_size=64)

_made = {}


def make_data_dir(root, hparams_path=TINY_HPARAMS, ckpt_files=None):
    """A data dir holding the tiny run: vocab.txt, hparams.json, models/tiny/<checkpoint>."""
    model_dir = os.path.join(root, "models", MODEL_NAME)
    os.makedirs(model_dir)
    shutil.copyfile(VOCAB_8K, os.path.join(root, "vocab.txt"))
    shutil.copyfile(hparams_path, os.path.join(root, "hparams.json"))
    for name in ckpt_files or os.listdir(TINY_CKPT_DIR):
        shutil.copyfile(os.path.join(TINY_CKPT_DIR, name), os.path.join(model_dir, name))
    return root


def exported_tiny(tmp_path_factory):
    """The tiny data dir after `python -m wrapper.hf_export` (made once per process)."""
    if "tiny" not in _made:
        root = make_data_dir(str(tmp_path_factory.mktemp("tiny-run")))
        run([PY, "-m", "wrapper.hf_export", "--data-dir", root, "--model-name", MODEL_NAME],
            cwd=REPO)
        _made["tiny"] = root
    return _made["tiny"]


def hf_dir(data_dir, network):
    return os.path.join(data_dir, "models", MODEL_NAME, "hf", network)


def expected():
    with open(EXPECTED) as f:
        return json.load(f)


def need_modern():
    if not os.path.isfile(PY_MODERN):
        pytest.fail("%s is missing: create it with `make setup-modern` (make test does)"
                    % PY_MODERN)
    return PY_MODERN
