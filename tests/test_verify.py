"""make verify: our TF graph against the converted models, in both environments.

Runs on the reference tiny checkpoint as a run of our layout (convert_support), exported by
`python -m wrapper.export`; the TF side is third_party/electra's inference graph.
"""
import json
import os
import re
import shutil

from conftest import PY, REPO, run
from convert_support import (MODEL_NAME, assert_one_line_error, exported_tiny, hf_dir,
                             make_data_dir, need_modern)

import pytest


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    return exported_tiny(tmp_path_factory)


def differences(output):
    return [float(x) for x in re.findall(r"max \|logit difference\| ([0-9.e+-]+)", output)]


def test_verify_passes_in_both_environments(tiny_run):
    need_modern()
    proc = run([PY, "-m", "wrapper.verify", "--data-dir", tiny_run, "--model-name", MODEL_NAME],
               cwd=REPO)
    out = proc.stdout
    assert "FAIL" not in out
    assert "verify: PASS (transformers 2.8.0 and current)" in out
    assert "2.8.0 discriminator: max |logit difference|" in out
    assert "2.8.0 generator: argmax equal" in out
    for weights in ("model.safetensors", "pytorch_model.bin"):
        for network in ("discriminator", "generator"):
            assert "%s from %s: every parameter loaded" % (network, weights) in out
    assert "ElectraTokenizerFast(discriminator): same ids as the builder" in out
    assert "AutoTokenizer(generator): same ids as the builder" in out
    assert out.count("config.json agrees with the run's hparams and checkpoint") == 4
    # 2.8.0's generator (eps 1e-5) is the one allowed to differ by more than 1e-4.
    small = [d for d in differences(out) if d < 1e-4]
    assert len(small) == len(differences(out)) - 1 == 6


def test_verify_run_with_current_transformers(tiny_run):
    python = need_modern()
    proc = run([python, "-m", "wrapper.verify", "--data-dir", tiny_run,
                "--model-name", MODEL_NAME], cwd=REPO)
    assert "TF logits computed by .venv" in proc.stdout
    assert "verify: PASS" in proc.stdout and "FAIL" not in proc.stdout
    assert all(d < 1e-4 for d in differences(proc.stdout))


def test_verify_catches_a_wrong_conversion(tiny_run, tmp_path):
    """Shapes cannot show the number of attention heads; a wrong one must not pass."""
    root = str(tmp_path / "data")
    shutil.copytree(tiny_run, root)
    config_path = os.path.join(hf_dir(root, "discriminator"), "config.json")
    with open(config_path) as f:
        config = json.load(f)
    config["num_attention_heads"] = 2
    with open(config_path, "w") as f:
        json.dump(config, f)
    proc = run([PY, "-m", "wrapper.verify", "--data-dir", root, "--model-name", MODEL_NAME,
                "--skip-modern"], check=False, cwd=REPO)
    assert "FAIL discriminator config.json agrees with the run's hparams" in proc.stdout
    assert "num_attention_heads is 2, the run says 1" in proc.stdout
    # and the logits show it too (this checkpoint is trained enough for heads to matter)
    assert "FAIL transformers 2.8.0 discriminator: max |logit difference|" in proc.stdout
    assert_one_line_error(proc, "2 check(s) failed", "discriminator")


def test_verify_before_convert_says_so(tmp_path):
    root = make_data_dir(str(tmp_path / "data"))
    proc = run([PY, "-m", "wrapper.verify", "--data-dir", root, "--model-name", MODEL_NAME],
               check=False, cwd=REPO)
    assert_one_line_error(proc, "convert first", "hf/discriminator")
