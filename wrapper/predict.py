"""The tutorial's demo: which tokens of a sentence does the discriminator call replaced?

    python -m wrapper.predict --model-dir D/models/N/hf/discriminator "Los pájaros están hablando"

prints a legend, then the tokens in one row ("%7s" each, [CLS] and [SEP] included, as the
tutorial's fast tokenizer showed them), the discriminator's verdict per token in the next
(1 = replaced: logit > 0), its probability that the token was replaced (sigmoid of the logit)
in a third with the highest marked "*", and last the word most likely replaced. The tokenizer
is the one saved beside the model, so the text is tokenized as in pretraining (accents kept
for a cased model; the tutorial's `do_lower_case=False` call stripped them). A sentence
longer than the model's positions (512 for ELECTRA-small) is cut there, with a note.
"""
import argparse
import os
from dataclasses import dataclass
from typing import Any, List, Optional, Tuple

from wrapper.cli import ArgumentParser, UserError, run_main


def load(model_dir: str) -> Tuple[Any, Any]:
    if not os.path.isfile(os.path.join(model_dir, "config.json")):
        raise UserError("%s holds no converted model (no config.json); run make convert, or "
                        "point --model-dir at DATA_DIR/models/NAME/hf/discriminator" % model_dir)
    if not os.path.isfile(os.path.join(model_dir, "vocab.txt")):
        raise UserError("%s has no vocab.txt; convert with `python -m wrapper.hf_export`, which "
                        "writes the tokenizer files" % model_dir)
    # transformers 2.8.0 imports TensorFlow when it is installed; the demo needs only torch.
    os.environ.setdefault("USE_TF", "0")
    import logging
    import transformers
    # A sentence past 512 tokens is cut (and said so) in main(); the tokenizer's own warning
    # about it would be a second, noisier line.
    logging.getLogger("transformers").setLevel(logging.ERROR)
    if hasattr(transformers, "utils") and hasattr(transformers.utils, "logging"):
        transformers.utils.logging.disable_progress_bar()   # current transformers only
    with open(os.path.join(model_dir, "config.json"), encoding="utf-8") as f:
        import json
        architectures = json.load(f).get("architectures") or []
    if architectures and architectures[0] != "ElectraForPreTraining":
        raise UserError("%s holds a %s, not the discriminator (ElectraForPreTraining); use "
                        ".../hf/discriminator" % (model_dir, architectures[0]))
    tokenizer = transformers.ElectraTokenizerFast.from_pretrained(model_dir)
    model = transformers.ElectraForPreTraining.from_pretrained(model_dir).eval()
    return tokenizer, model


@dataclass(frozen=True)
class Prediction:
    """The discriminator's verdict on every position, [CLS]/[SEP] included."""
    tokens: List[str]
    predictions: List[int]        # 1: replaced (logit > 0), 0: original
    probabilities: List[float]    # that the token was replaced
    cut: int                      # tokens cut off the end (0 when the sentence fits the model)


def predict(tokenizer, model, sentence: str) -> Prediction:
    """The discriminator on `sentence`, cut to the model's positions."""
    import torch
    ids = tokenizer.encode(sentence)
    limit = model.config.max_position_embeddings
    cut = max(0, len(ids) - limit)
    if cut:   # positions past the table would index out of range: keep [SEP] last
        ids = ids[:limit - 1] + ids[-1:]
    with torch.no_grad():
        out = model(torch.tensor([ids], dtype=torch.long))
    logits = (out[0] if isinstance(out, (tuple, list)) else out.logits).reshape(-1)
    tokens = tokenizer.convert_ids_to_tokens(ids)
    return Prediction(tokens, (logits > 0).long().tolist(), torch.sigmoid(logits).tolist(),
                      cut)


LEGEND = ("row 1: tokens; row 2: verdict, 1 = replaced, 0 = original (logit > 0); "
          "row 3: probability that the token was replaced, * = highest")


def table(tokens: List[str], predictions: List[int], probabilities: List[float]) -> str:
    """The tutorial's "%7s" columns, widened where a token needs it ("pájaros" has 7
    characters, and "%7s" would glue it to its neighbour), the top probability marked."""
    widths = [max(7, len(token) + 1) for token in tokens]
    top = top_position(tokens, probabilities)
    return "\n".join([
        "".join("%*s" % (w, token) for w, token in zip(widths, tokens)),
        "".join("%*d" % (w, int(p)) for w, p in zip(widths, predictions)),
        "".join(("%*.2f*" % (w - 1, p)) if i == top else "%*.2f" % (w, p)
                for i, (w, p) in enumerate(zip(widths, probabilities))),
    ])


def top_position(tokens: List[str], probabilities: List[float]) -> int:
    """The most likely replaced token, [CLS] and [SEP] aside (never replaced in training)."""
    inner = range(1, len(tokens) - 1) if len(tokens) > 2 else range(len(tokens))
    return max(inner, key=lambda i: probabilities[i])


def top_word(tokens: List[str], position: int) -> str:
    """The whole word around a word piece ("hablan ##do" -> "hablando")."""
    start, end = position, position + 1
    while start > 0 and tokens[start].startswith("##"):
        start -= 1
    while end < len(tokens) and tokens[end].startswith("##"):
        end += 1
    return "".join(t[2:] if t.startswith("##") else t for t in tokens[start:end])


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = ArgumentParser(
        prog="python -m wrapper.predict",
        description="Show the discriminator's replaced-token predictions for a sentence.")
    parser.add_argument("--model-dir", required=True,
                        help="a converted discriminator, DATA_DIR/models/NAME/hf/discriminator")
    parser.add_argument("sentence", help='e.g. "Los pájaros están hablando"')
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    if not args.sentence.strip():
        raise UserError("the sentence is empty; pass one, e.g. \"Los pájaros están hablando\"")
    tokenizer, model = load(args.model_dir)
    prediction = predict(tokenizer, model, args.sentence)
    tokens, probabilities, cut = prediction.tokens, prediction.probabilities, prediction.cut
    if cut:
        print("note: the sentence has %d tokens, more than the model's %d positions; the "
              "last %d are cut off" % (len(tokens) + cut, len(tokens), cut))
    print(LEGEND)
    print(table(tokens, prediction.predictions, probabilities))
    top = top_position(tokens, probabilities)
    print("most likely replaced: %s (token %s, p = %.2f)" % (
        top_word(tokens, top), tokens[top], probabilities[top]))
    return 0


if __name__ == "__main__":
    run_main(main)
