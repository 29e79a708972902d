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
    assert len(lines) == 5
    assert lines[0].startswith("row 1: tokens; row 2: verdict, 1 = replaced")
    tokens, predictions, probabilities = (line.split() for line in lines[1:4])
    # Accents kept, as in pretraining (the tutorial's tokenizer made "pajar ##os").
    assert tokens == ["[CLS]", "Los", "pájaros", "están", "hablan", "##do", "[SEP]"]
    assert lines[1].startswith("%7s" % "[CLS]") and len(predictions) == len(tokens)
    model = transformers.ElectraForPreTraining.from_pretrained(model_dir).eval()
    ids = transformers.ElectraTokenizerFast.from_pretrained(model_dir).encode(SENTENCE)
    with torch.no_grad():
        logits = model(torch.tensor([ids]))[0].reshape(-1).tolist()
    assert [int(p) for p in predictions] == [int(x > 0) for x in logits]
    assert [float(p.rstrip("*")) for p in probabilities] == \
        [float("%.2f" % (1 / (1 + math.exp(-x)))) for x in logits]
    # The highest probability among the sentence's tokens ([CLS]/[SEP] aside) is marked, and
    # the last line names its whole word.
    top = max(range(1, len(tokens) - 1), key=lambda i: logits[i])
    assert [i for i, p in enumerate(probabilities) if p.endswith("*")] == [top]
    word = {"hablan": "hablando", "##do": "hablando"}.get(tokens[top], tokens[top])
    assert lines[4] == "most likely replaced: %s (token %s, p = %.2f)" % (
        word, tokens[top], 1 / (1 + math.exp(-logits[top])))


def test_predict_cuts_a_sentence_longer_than_the_model_with_a_note(tiny_run):
    model_dir = hf_dir(tiny_run, "discriminator")
    proc = predict(PY, model_dir, " ".join([SENTENCE + "."] * 120))   # 6 tokens each
    lines = proc.stdout.splitlines()
    assert lines[0] == ("note: the sentence has 722 tokens, more than the model's 512 "
                        "positions; the last 210 are cut off")
    tokens = lines[2].split()
    assert len(tokens) == 512 and tokens[0] == "[CLS]" and tokens[-1] == "[SEP]"
    assert "Traceback" not in proc.stderr and "longer than" not in proc.stderr


@pytest.mark.slow
def test_predict_same_table_with_current_transformers(tiny_run):
    model_dir = hf_dir(tiny_run, "discriminator")
    assert predict(need_modern(), model_dir).stdout == predict(PY, model_dir).stdout


def test_predict_bad_model_dir(tmp_path, tiny_run):
    assert_one_line_error(predict(PY, str(tmp_path / "nothing"), check=False),
                          "no converted model", "make convert")
    assert_one_line_error(predict(PY, hf_dir(tiny_run, "generator"), check=False),
                          "ElectraForMaskedLM", "hf/discriminator")
