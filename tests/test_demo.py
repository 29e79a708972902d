"""`make demo` end to end in its shortest form: real Debian Spanish text, a trained vocab, the
demo-cpu model for 20 steps, conversion, verification and the prediction table; then the
stage records: a second run redoes nothing, and a run interrupted after a stage resumes at
the stage that did not finish. DATA_DIR and CORPUS hold spaces, quotes, `$(...)`, backticks,
`;` and non-ASCII; at the end the data directory, mounted read-only, is still up to date and
predicts.
"""
import os
import re

import pytest

from conftest import DEBIAN_REFERENCE_TXT, FORTUNES_DEBIAN, REPO, run
from test_evaluate import real_classification_data
from test_pipeline import read_only, read_only_mount_works

# The whole pipeline and an evaluation: make test-all runs it (tests/conftest.py).
pytestmark = pytest.mark.slow

MAKE = ["make", "--no-print-directory", "-C", REPO]
STAGES = ["corpus", "vocab", "hparams", "pretrain-data", "pretrain-electra-spanish",
          "convert-electra-spanish", "verify-electra-spanish"]
SHORT = 'HPARAMS_OVERRIDES={"num_train_steps": 20, "save_checkpoints_steps": 20}'


# A shell or Make that evaluated any of it would fail the run (or touch `x`).
AWKWARD = "dá tos 'q\" $(touch x) `touch x`; ñ"


def awkward_corpus(root):
    """The demo's own Debian text, reached through paths as awkward as AWKWARD."""
    fortunes, reference = root / ("fortunes " + AWKWARD), root / ("referencia 'ñ'.txt.gz")
    if not fortunes.exists():
        os.symlink(FORTUNES_DEBIAN, str(fortunes))
        os.symlink(DEBIAN_REFERENCE_TXT, str(reference))
    return "%s:%s" % (fortunes, reference)


def demo(tmp_path):
    # Its evaluation on a small real task (two fortune categories) instead of all of them.
    task_data = real_classification_data(str(tmp_path / "task"))
    return run(MAKE + ["demo", "DATA_DIR=%s" % tmp_path, "CORPUS=" + awkward_corpus(tmp_path),
                       SHORT, "TASK=two-categories", "TASK_DATA=" + task_data, "SEEDS=1"],
               timeout=900)


def assert_prediction_table(stdout):
    """A row of the sentence's tokens, then the discriminator's 0/1 per token."""
    lines = stdout.splitlines()
    rows = [i for i, l in enumerate(lines) if l.split()[:2] == ["[CLS]", "Los"]]
    assert rows, stdout[-2000:]
    tokens, marks = lines[rows[-1]].split(), lines[rows[-1] + 1].split()
    assert tokens[-1] == "[SEP]" and "habla" in "".join(tokens).replace("##", "")
    assert len(marks) == len(tokens) and set(marks) <= {"0", "1"}


def test_demo_shortest_form_then_resume(tmp_path):
    tmp_path = tmp_path / AWKWARD
    tmp_path.mkdir()
    data = tmp_path / "demo"
    hf = os.path.join(str(data), "models", "electra-spanish", "hf", "discriminator")
    first = demo(tmp_path)
    assert "Hugging Face model (ElectraForPreTraining): %s" % hf in first.stdout
    assert os.path.isfile(os.path.join(hf, "config.json"))
    assert_prediction_table(first.stdout)
    # ... then is fine-tuned against random initialisation, and says how it did.
    assert "== make evaluate TASK=two-categories" in first.stdout
    for model in ("electra-spanish", "random init (same config)"):
        assert re.search(r"%s +[\d.]+ ± [\d.]+" % re.escape(model), first.stdout), first.stdout
    evaluation = os.path.join(str(data), "models", "electra-spanish", "evaluation")
    assert sorted(os.listdir(evaluation)) == ["two-categories.json", "two-categories.png"]
    assert "up to date" not in first.stdout
    for stage in STAGES:
        assert os.path.isfile(os.path.join(str(data), ".stages", stage + ".done")), stage

    # An interruption after convert (verify's record missing): only verify runs again.
    os.remove(os.path.join(str(data), ".stages", "verify-electra-spanish.done"))
    again = demo(tmp_path)
    assert again.stdout.count(": up to date") == len(STAGES) - 1, again.stdout
    assert "verify-electra-spanish: up to date" not in again.stdout
    assert_prediction_table(again.stdout)

    # Read-only (a private read-only mount): the stages that are up to date, a verify that
    # is not (it writes only its record) and predict all run.
    if not read_only_mount_works():
        pytest.skip("no user and mount namespaces here (unshare -rm): the read-only part "
                    "did not run; the rest passed")
    os.remove(os.path.join(str(data), ".stages", "verify-electra-spanish.done"))
    settings = ["DATA_DIR=%s" % data, "CORPUS=" + awkward_corpus(tmp_path), "TRAIN_SIZE=100000",
                "VOCAB=train", "VOCAB_SIZE=4000", "PRESET=demo-cpu", SHORT]
    frozen = run(read_only(data, MAKE + ["all", "predict"] + settings), timeout=600)
    assert frozen.stdout.count(": up to date") == len(STAGES) - 1, frozen.stdout
    assert "verify-electra-spanish: DATA_DIR %s is read-only: running without a record" % data \
        in frozen.stdout
    assert "verify-electra-spanish: done in" in frozen.stdout
    assert_prediction_table(frozen.stdout)
    assert not os.path.exists(os.path.join(str(data), ".stages", "verify-electra-spanish.done"))
    assert not os.path.exists(os.path.join(REPO, "x"))
