"""make predict: the tutorial's table for a sentence, with probabilities."""
import math

import pytest

from conftest import PY, REPO, run
from convert_support import (assert_one_line_error, exported_tiny, hf_dir, need_modern)

SENTENCE = "Los pájaros están hablando"


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    return exported_tiny(tmp_path_factory)


def predict(python, model_dir, sentence=SENTENCE, check=True):
    return run([python, "-m", "wrapper.predict", "--model-dir", model_dir, sentence],
               check=check, cwd=REPO)


def test_predict_prints_tokens_predictions_probabilities(tiny_run):
    import torch
    import transformers
    model_dir = hf_dir(tiny_run, "discriminator")
    lines = predict(PY, model_dir).stdout.splitlines()
    assert len(lines) == 3
    tokens, predictions, probabilities = (line.split() for line in lines)
    # Accents kept, as in pretraining (the tutorial's tokenizer made "pajar ##os").
    assert tokens == ["[CLS]", "Los", "pájaros", "están", "hablan", "##do", "[SEP]"]
    assert lines[0].startswith("%7s" % "[CLS]") and len(predictions) == len(tokens)
    model = transformers.ElectraForPreTraining.from_pretrained(model_dir).eval()
    ids = transformers.ElectraTokenizerFast.from_pretrained(model_dir).encode(SENTENCE)
    with torch.no_grad():
        logits = model(torch.tensor([ids]))[0].reshape(-1).tolist()
    assert [int(p) for p in predictions] == [int(x > 0) for x in logits]
    assert [float(p) for p in probabilities] == \
        [float("%.2f" % (1 / (1 + math.exp(-x)))) for x in logits]


def test_predict_same_table_with_current_transformers(tiny_run):
    model_dir = hf_dir(tiny_run, "discriminator")
    assert predict(need_modern(), model_dir).stdout == predict(PY, model_dir).stdout


def test_predict_bad_model_dir(tmp_path, tiny_run):
    assert_one_line_error(predict(PY, str(tmp_path / "nothing"), check=False),
                          "no converted model", "make convert")
    assert_one_line_error(predict(PY, hf_dir(tiny_run, "generator"), check=False),
                          "ElectraForMaskedLM", "hf/discriminator")
