"""One way from wrapper/ into third_party/electra: wrapper.electra imports its modules once."""
import os
import subprocess

from conftest import PY, REPO, run


def test_every_caller_gets_the_same_module():
    from wrapper import checkpoint_layout, electra, hparams
    from wrapper.electra import configure_pretraining
    assert electra.load("configure_pretraining") is configure_pretraining
    assert hparams.configure_pretraining is checkpoint_layout.configure_pretraining is configure_pretraining
    # so an `except HparamError` written against one module catches what another raised
    try:
        checkpoint_layout.configure_pretraining.PretrainingConfig("m", "/d", mask_prob=1.5)
    except hparams.configure_pretraining.HparamError as e:
        assert "mask_prob = 1.5" in str(e)
    else:
        raise AssertionError("mask_prob 1.5 was accepted")
    assert os.path.dirname(configure_pretraining.__file__) == os.path.join(
        REPO, "third_party", "electra")


def test_a_module_of_another_checkout_is_refused(tmp_path):
    """An upstream checkout has modules of the same names without our checks."""
    (tmp_path / "tokenization.py").write_text("VERSION = 'upstream'\n")
    script = ("import sys; sys.path.insert(0, sys.argv[1]); import tokenization\n"
              "import wrapper.electra\n")
    proc = run([PY, "-c", script, str(tmp_path)], check=False, cwd=REPO)
    assert proc.returncode != 0
    assert "module tokenization was imported from %s" % tmp_path in proc.stderr


def test_nothing_loads_electra_files_by_path():
    loader = "spec_from_" + "file_location"   # (not spelt out: this file would match)
    proc = subprocess.run(["grep", "-rn", "--include=*.py", loader, "wrapper", "tests",
                           "third_party"], cwd=REPO, stdout=subprocess.PIPE,
                          universal_newlines=True)
    assert proc.returncode == 1 and proc.stdout == "", (proc.returncode, proc.stdout)  # 1: no match
