"""The tutorial's demo: which tokens of a sentence does the discriminator call replaced?

    python -m wrapper.predict --model-dir D/models/N/hf/discriminator "Los pájaros están hablando"

prints the tokens in one row ("%7s" each, [CLS] and [SEP] included, as the tutorial's fast
tokenizer showed them), the discriminator's 0/1 per token (logit > 0: "replaced") in the
next, and its probabilities (sigmoid of the logits) in a third. The tokenizer is the one
saved beside the model, so the text is tokenized as in pretraining (accents kept for a cased
model; the tutorial's `do_lower_case=False` call stripped them).
"""
import argparse
import os

from wrapper.cli import UserError, run_main


def load(model_dir):
    if not os.path.isfile(os.path.join(model_dir, "config.json")):
        raise UserError("%s holds no converted model (no config.json); run make convert, or "
                        "point --model-dir at DATA_DIR/models/NAME/hf/discriminator" % model_dir)
    if not os.path.isfile(os.path.join(model_dir, "vocab.txt")):
        raise UserError("%s has no vocab.txt; convert with `python -m wrapper.export`, which "
                        "writes the tokenizer files" % model_dir)
    # transformers 2.8.0 imports TensorFlow when it is installed; the demo needs only torch.
    os.environ.setdefault("USE_TF", "0")
    import transformers
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


def predict(tokenizer, model, sentence):
    """(tokens, 0/1 predictions, probabilities) for every position, [CLS]/[SEP] included."""
    import torch
    ids = tokenizer.encode(sentence)
    with torch.no_grad():
        out = model(torch.tensor([ids], dtype=torch.long))
    logits = (out[0] if isinstance(out, (tuple, list)) else out.logits).reshape(-1)
    tokens = tokenizer.convert_ids_to_tokens(ids)
    return tokens, (logits > 0).long().tolist(), torch.sigmoid(logits).tolist()


def table(tokens, predictions, probabilities):
    """The tutorial's "%7s" columns, widened where a token needs it ("pájaros" has 7
    characters, and "%7s" would glue it to its neighbour)."""
    widths = [max(7, len(token) + 1) for token in tokens]
    return "\n".join([
        "".join("%*s" % (w, token) for w, token in zip(widths, tokens)),
        "".join("%*d" % (w, int(p)) for w, p in zip(widths, predictions)),
        "".join("%*.2f" % (w, p) for w, p in zip(widths, probabilities)),
    ])


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m wrapper.predict",
        description="Show the discriminator's replaced-token predictions for a sentence.")
    parser.add_argument("--model-dir", required=True,
                        help="a converted discriminator, DATA_DIR/models/NAME/hf/discriminator")
    parser.add_argument("sentence", help='e.g. "Los pájaros están hablando"')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if not args.sentence.strip():
        raise UserError("the sentence is empty; pass one, e.g. \"Los pájaros están hablando\"")
    tokenizer, model = load(args.model_dir)
    print(table(*predict(tokenizer, model, args.sentence)))
    return 0


if __name__ == "__main__":
    run_main(main, program="wrapper.predict")
