"""Conversion SIGKILLed at seeded points: no half-written Hugging Face directory is ever left
looking complete; the rerun (`make convert`) completes.

The checkpoint is the reference's tiny one (tests/conformance/converter), so no training
is needed here.
"""
import json
import os
import random
import shutil
import time

import pytest

from conftest import CONFORMANCE, PY, REPO, VOCAB_8K, assert_one_line_error, run
from reliability_support import Running, file_matching

TINY = os.path.join(CONFORMANCE, "converter")
HF_FILES = {"config.json", "pytorch_model.bin", "vocab.txt"}


def tiny_data_dir(path):
    model_dir = path / "models" / "m"
    model_dir.mkdir(parents=True)
    for name in os.listdir(os.path.join(TINY, "tiny-ckpt")):
        shutil.copy(os.path.join(TINY, "tiny-ckpt", name), str(model_dir / name))
    shutil.copy(VOCAB_8K, str(path / "vocab.txt"))
    shutil.copy(os.path.join(TINY, "tiny-hparams.json"), str(path / "hparams.json"))
    return path


def make_convert(data_dir):
    return ["make", "--no-print-directory", "-C", REPO, "convert", "DATA_DIR=%s" % data_dir,
            "MODEL_NAME=m"]


def assert_absent_or_complete(directory, network):
    """A Hugging Face directory either does not exist or loads whole."""
    if not os.path.exists(directory):
        return False
    names = set(os.listdir(directory))
    assert HF_FILES <= names, "incomplete %s: %s" % (directory, sorted(names))
    import torch
    import transformers
    with open(os.path.join(directory, "config.json")) as f:
        json.load(f)
    state = torch.load(os.path.join(directory, "pytorch_model.bin"), map_location="cpu")
    assert len(state) > 20
    cls = (transformers.ElectraForPreTraining if network == "discriminator"
           else transformers.ElectraForMaskedLM)
    cls.from_pretrained(directory)
    with open(os.path.join(directory, "vocab.txt"), "rb") as f, open(VOCAB_8K, "rb") as g:
        assert f.read() == g.read()
    return True


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.slow
def test_make_convert_killed_leaves_no_half_written_model_directory(tmp_path, seed):
    rng = random.Random(seed)
    data_dir = tiny_data_dir(tmp_path / "data")
    hf = data_dir / "models" / "m" / "hf"
    record = data_dir / ".stages" / "convert-m.done"
    proc = Running(make_convert(data_dir), str(tmp_path / "logs"), "convert-1")
    if seed == 1:     # while the discriminator's files are being written aside
        trigger = file_matching(str(hf / ".discriminator.partial-*" / "*"))
    elif seed == 2:   # while the generator's files are being written aside
        trigger = file_matching(str(hf / ".generator.partial-*" / "*"))
    else:             # right after the discriminator is in place (a seeded moment after)
        delay = rng.uniform(0, 0.2)
        trigger = lambda: (os.path.exists(str(hf / "discriminator")) and
                           time.sleep(delay) is None)
    assert proc.kill_when(trigger, timeout=300), proc.output()
    for network in ("discriminator", "generator"):
        assert_absent_or_complete(str(hf / network), network)
    assert not record.exists()
    run(make_convert(data_dir), timeout=300)
    for network in ("discriminator", "generator"):
        assert assert_absent_or_complete(str(hf / network), network)
    assert record.exists()
    assert sorted(os.listdir(str(hf))) == ["discriminator", "generator"], os.listdir(str(hf))


@pytest.mark.slow
def test_lonepatient_convert_killed_leaves_output_absent_or_complete(tmp_path):
    data_dir = tiny_data_dir(tmp_path / "data")
    config = tmp_path / "config.json"
    config.write_text(json.dumps({
        "vocab_size": 8000, "embedding_size": 128, "hidden_size": 64, "num_hidden_layers": 2,
        "num_attention_heads": 1, "intermediate_size": 256, "hidden_act": "gelu",
        "max_position_embeddings": 512, "type_vocab_size": 2}))
    out = tmp_path / "out"
    args = [PY, "-m", "wrapper.convert", "--tf_checkpoint_path",
            str(data_dir / "models" / "m" / "model.ckpt-40"), "--electra_config_file",
            str(config), "--pytorch_dump_path", str(out / "pytorch_model.bin")]
    proc = Running(args, str(tmp_path / "logs"), "convert")
    assert proc.kill_when(file_matching(str(tmp_path / ".out.partial-*" / "*")), timeout=300), \
        proc.output()
    assert not out.exists()
    run(args, timeout=300)
    assert sorted(os.listdir(str(out))) == ["config.json", "model.safetensors",
                                            "pytorch_model.bin"]
    import transformers
    transformers.ElectraForPreTraining.from_pretrained(str(out))
    assert not [n for n in os.listdir(str(tmp_path)) if ".partial-" in n]


@pytest.mark.parametrize("target", ["convert", "verify"])
def test_truncated_checkpoint_data_is_one_line_naming_the_file(tmp_path, target):
    data_dir = tiny_data_dir(tmp_path / "data")
    if target == "verify":
        run(make_convert(data_dir), timeout=300)       # converted while the checkpoint was whole
    hf_before = sorted(os.listdir(str(data_dir / "models" / "m")))
    data = data_dir / "models" / "m" / "model.ckpt-40.data-00000-of-00001"
    with open(str(data), "r+b") as f:
        f.truncate(1000)
    proc = run(["make", "--no-print-directory", "-C", REPO, target, "DATA_DIR=%s" % data_dir,
                "MODEL_NAME=m"], check=False, timeout=300)
    assert_one_line_error(proc, "%s is truncated: 1000 of 14658644 bytes" % data,
                          "cannot read checkpoint")
    assert data.stat().st_size == 1000                   # the user's file, left as it was
    assert sorted(os.listdir(str(data_dir / "models" / "m"))) == hf_before
