"""make verify: our TF graph against the converted models, in both environments.

Runs on the reference tiny checkpoint as a run of our layout (convert_support), exported by
`python -m wrapper.hf_export`; the TF side is third_party/electra's inference graph, run by
`python -m wrapper.tf_logits`, and `python -m wrapper.verify` compares in each venv.
"""
import json
import os
import re
import shutil

from conftest import PY, REPO, assert_one_line_error, run
from convert_support import MODEL_NAME, exported_tiny, hf_dir, make_data_dir, need_modern

import pytest


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """The exported tiny run with its TF logits computed by wrapper.tf_logits."""
    root = exported_tiny(tmp_path_factory)
    # TensorFlow's log level as make sets it (errors shown), to see what a user sees.
    proc = run([PY, "-m", "wrapper.tf_logits", "--data-dir", root,
                "--model-name", MODEL_NAME], cwd=REPO, env={"TF_CPP_MIN_LOG_LEVEL": "2"})
    # Scratch under D/.cache: nothing of verify's is written into the model directory.
    assert "tf_logits: %s" % os.path.join(root, ".cache", "verify", MODEL_NAME,
                                             "tf-logits.npz") in proc.stdout
    # (exported_tiny is shared by the session: other tests may have added evaluation/.)
    assert set(os.listdir(os.path.join(root, "models", MODEL_NAME))) - {"evaluation"} == \
        {"checkpoint", "hf", "model.ckpt-40.data-00000-of-00001", "model.ckpt-40.index"}
    # A CPU-only machine: TensorFlow's CUDA start-up error is not shown as if it mattered.
    assert "cuInit" not in proc.stderr, proc.stderr
    return root


def differences(output):
    return [float(x) for x in re.findall(r"max \|logit difference\| ([0-9.e+-]+)", output)]


def verify(python, data_dir, check=True):
    return run([python, "-m", "wrapper.verify", "--data-dir", data_dir,
                "--model-name", MODEL_NAME], check=check, cwd=REPO)


def test_verify_with_transformers_2_8_0(tiny_run):
    out = verify(PY, tiny_run).stdout
    assert "FAIL" not in out
    assert "verify: PASS (transformers 2.8.0)" in out
    assert "2.8.0 discriminator: max |logit difference|" in out
    assert "2.8.0 generator: argmax equal" in out
    assert "ElectraTokenizerFast(discriminator): same ids as the builder" in out
    assert out.count("config.json agrees with the TF graph as built") == 2
    # 2.8.0's generator (eps 1e-5) is the one allowed to differ by more than 1e-4.
    small = [d for d in differences(out) if d < 1e-4]
    assert len(small) == len(differences(out)) - 1 == 2


@pytest.mark.slow
def test_verify_with_current_transformers(tiny_run):
    out = verify(need_modern(), tiny_run).stdout
    assert "verify: PASS" in out and "FAIL" not in out
    for weights in ("model.safetensors", "pytorch_model.bin"):
        for network in ("discriminator", "generator"):
            assert "%s from %s: every parameter loaded" % (network, weights) in out
    assert "AutoTokenizer(generator): same ids as the builder" in out
    assert out.count("config.json agrees with the TF graph as built") == 2
    assert len(differences(out)) == 4 and all(d < 1e-4 for d in differences(out))


def test_verify_catches_a_wrong_conversion(tiny_run, tmp_path):
    """Shapes cannot show the number of attention heads; a wrong one must not pass: the
    graph's own attention says how many it was built with."""
    root = str(tmp_path / "data")
    shutil.copytree(tiny_run, root)
    config_path = os.path.join(hf_dir(root, "discriminator"), "config.json")
    with open(config_path) as f:
        config = json.load(f)
    config["num_attention_heads"] = 2
    with open(config_path, "w") as f:
        json.dump(config, f)
    proc = verify(PY, root, check=False)
    assert "FAIL discriminator config.json agrees with the TF graph as built" in proc.stdout
    assert "num_attention_heads is 2, the graph says 1" in proc.stdout
    # and the logits show it too (this checkpoint is trained enough for heads to matter)
    assert "FAIL transformers 2.8.0 discriminator: max |logit difference|" in proc.stdout
    assert_one_line_error(proc, "2 check(s) failed", "discriminator")


def test_verify_before_convert_says_so(tmp_path):
    root = make_data_dir(str(tmp_path / "data"))
    run([PY, "-m", "wrapper.tf_logits", "--data-dir", root, "--model-name", MODEL_NAME],
        cwd=REPO)
    proc = verify(PY, root, check=False)
    assert_one_line_error(proc, "convert first", "hf/discriminator")


def test_verify_without_tf_logits_says_which_command_computes_them(tmp_path):
    root = make_data_dir(str(tmp_path / "data"))
    proc = verify(PY, root, check=False)
    assert_one_line_error(proc, "tf-logits.npz is missing", "python -m wrapper.tf_logits")


@pytest.mark.parametrize("python", ["legacy", "modern"])
def test_verify_of_an_hf_directory_lacking_its_vocab_is_one_line(tiny_run, tmp_path, python):
    root = str(tmp_path / "data")
    shutil.copytree(tiny_run, root)
    os.remove(os.path.join(hf_dir(root, "discriminator"), "vocab.txt"))
    proc = verify(PY if python == "legacy" else need_modern(), root, check=False)
    assert_one_line_error(proc, "%s lacks vocab.txt" % hf_dir(root, "discriminator"),
                          "convert again (make convert)", program="verify")
