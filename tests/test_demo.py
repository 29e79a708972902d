"""`make demo` end to end in its shortest form: real Debian Spanish text, a trained vocab, the
demo-cpu model for 20 steps, conversion, verification and the prediction table; then the
stage records: a second run redoes nothing, and a run interrupted after a stage resumes at
the stage that did not finish.
"""
import os

from conftest import REPO, run

MAKE = ["make", "--no-print-directory", "-C", REPO]
STAGES = ["corpus", "vocab", "hparams", "pretrain-data", "pretrain-electra-spanish",
          "convert-electra-spanish", "verify-electra-spanish"]
SHORT = 'HPARAMS_OVERRIDES={"num_train_steps": 20, "save_checkpoints_steps": 20}'


def demo(tmp_path):
    return run(MAKE + ["demo", "DATA_DIR=%s" % tmp_path, SHORT], timeout=900)


def assert_prediction_table(stdout):
    """A row of the sentence's tokens, then the discriminator's 0/1 per token."""
    lines = stdout.splitlines()
    rows = [i for i, l in enumerate(lines) if l.split()[:2] == ["[CLS]", "Los"]]
    assert rows, stdout[-2000:]
    tokens, marks = lines[rows[-1]].split(), lines[rows[-1] + 1].split()
    assert tokens[-1] == "[SEP]" and "habla" in "".join(tokens).replace("##", "")
    assert len(marks) == len(tokens) and set(marks) <= {"0", "1"}


def test_demo_shortest_form_then_resume(tmp_path):
    data = tmp_path / "demo"
    hf = os.path.join(str(data), "models", "electra-spanish", "hf", "discriminator")
    first = demo(tmp_path)
    assert "Hugging Face model (ElectraForPreTraining): %s" % hf in first.stdout
    assert os.path.isfile(os.path.join(hf, "config.json"))
    assert_prediction_table(first.stdout)
    assert "up to date" not in first.stdout
    for stage in STAGES:
        assert os.path.isfile(os.path.join(str(data), ".stages", stage + ".done")), stage

    # An interruption after convert (verify's record missing): only verify runs again.
    os.remove(os.path.join(str(data), ".stages", "verify-electra-spanish.done"))
    again = demo(tmp_path)
    assert again.stdout.count(": up to date") == len(STAGES) - 1, again.stdout
    assert "verify-electra-spanish: up to date" not in again.stdout
    assert_prediction_table(again.stdout)
