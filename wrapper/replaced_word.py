"""Does the discriminator find a replaced word? The pretraining task, on sentences of a file.

    python -m wrapper.replaced_word --model-dir D/models/N/hf/discriminator --sentences FILE \
        [--count 20] [--seed 1234] [--json OUT]

From FILE (one sentence a line) it takes `count` lines of 6 to 40 words, chosen with the
seed; in each it replaces one word (drawn with the seed among the words made of letters
only, neither the first nor the last) by a word of letters drawn from the other chosen
sentences (a different word), runs the discriminator (wrapper/predict.py's loading and
prediction) and prints the replaced word, the word of the discriminator's top token
([CLS]/[SEP] aside) and hit or miss; hit: the top token is one of the replacement's
pieces. The last line: `replaced word is the discriminator's top token in K of N sentences
(P%)`. The same file, count and seed give the same sentences and replacements.
"""
import argparse
import json
import os
import random
from typing import Any, Dict, List, Optional, Sequence, Tuple

from wrapper import fsutil, predict
from wrapper.cli import ArgumentParser, UserError, run_main

MIN_WORDS, MAX_WORDS = 6, 40


def replaceable(words: Sequence[str]) -> List[int]:
    """Positions that may be replaced: inner words made of letters only."""
    return [i for i in range(1, len(words) - 1) if words[i].isalpha()]


def choose(path: str, count: int, seed: int
           ) -> Tuple[List[Tuple[int, List[str]]], random.Random]:
    """[(line number, words)] of `count` lines chosen with `seed`, and the rng to go on."""
    if not os.path.isfile(path):
        raise UserError("--sentences %s is not a file; give a text file, one sentence a line"
                        % path)
    eligible = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, 1):
            words = line.split()
            # A line with an undecodable byte (U+FFFD) is left out rather than guessed at.
            if MIN_WORDS <= len(words) <= MAX_WORDS and "\ufffd" not in line \
                    and replaceable(words):
                eligible.append((number, words))
    if len(eligible) < count:
        raise UserError("%s has %d line(s) of %d to %d words; ask for --count %d or fewer, or "
                        "give a file with more sentences" % (path, len(eligible), MIN_WORDS,
                                                              MAX_WORDS, len(eligible)))
    rng = random.Random(seed)
    return rng.sample(eligible, count), rng


def replacements(chosen: Sequence[Tuple[int, List[str]]], rng: random.Random
                 ) -> List[Tuple[int, str, str]]:
    """[(position, original word, replacement)] per chosen sentence."""
    found = []
    for index, (_, words) in enumerate(chosen):
        position = rng.choice(replaceable(words))
        pool = sorted({w for other, (_, ws) in enumerate(chosen) if other != index
                       for w in ws if w.isalpha() and w != words[position]})
        if not pool:
            raise UserError("the chosen sentences share no other word to put in; give more "
                            "sentences (--count) or another --seed")
        found.append((position, words[position], rng.choice(pool)))
    return found


def pieces(tokenizer, text: str) -> int:
    """How many word pieces `text` is (encode() adds [CLS] and [SEP] in every version; the
    old tokenize() of transformers 2.8's fast tokenizer adds them too, the current not)."""
    return len(tokenizer.encode(text)) - 2


def check(tokenizer, model, words: List[str], position: int, replacement: str
          ) -> Dict[str, Any]:
    """The discriminator on the sentence with words[position] replaced: a result dict."""
    changed = words[:position] + [replacement] + words[position + 1:]
    prediction = predict.predict(tokenizer, model, " ".join(changed))
    tokens, probabilities = prediction.tokens, prediction.probabilities
    top = predict.top_position(tokens, probabilities)
    # The replacement's pieces: the tokens after [CLS] and the words before it (WordPiece
    # splits on whitespace first, so the words before it give the same pieces alone).
    start = 1 + pieces(tokenizer, " ".join(changed[:position]))
    count = pieces(tokenizer, replacement)
    return dict(sentence=" ".join(changed), position=position, replacement=replacement,
                top_word=predict.top_word(tokens, top), top_token=tokens[top],
                top_probability=round(probabilities[top], 4),
                hit=start <= top < start + count)


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = ArgumentParser(
        prog="python -m wrapper.replaced_word",
        description="Replace one word per sentence; does the discriminator find it?")
    parser.add_argument("--model-dir", required=True,
                        help="a converted discriminator, DATA_DIR/models/NAME/hf/discriminator")
    parser.add_argument("--sentences", required=True, help="a text file, one sentence a line")
    parser.add_argument("--count", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--json", default="", help="write the results to this file too")
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    if args.count < 1:
        raise UserError("--count must be at least 1 (got %d)" % args.count)
    chosen, rng = choose(args.sentences, args.count, args.seed)
    planned = replacements(chosen, rng)
    tokenizer, model = predict.load(args.model_dir)
    results = []
    for number, ((line, words), (position, original, replacement)) in enumerate(
            zip(chosen, planned), 1):
        result = check(tokenizer, model, words, position, replacement)
        result.update(line=line, original=original)
        results.append(result)
        print("%2d. %s  replaced %r by %r; discriminator's top: %r (p = %.2f)  | %s" % (
            number, "hit " if result["hit"] else "miss", original, replacement,
            result["top_word"], result["top_probability"], result["sentence"]))
    hits = sum(r["hit"] for r in results)
    print("replaced word is the discriminator's top token in %d of %d sentences (%.0f%%)" % (
        hits, len(results), 100.0 * hits / len(results)))
    if args.json:
        summary = dict(model_dir=args.model_dir, sentences=args.sentences, count=args.count,
                       seed=args.seed, hits=hits, total=len(results), results=results)
        try:
            fsutil.atomic_write_text(args.json, json.dumps(summary, indent=2,
                                                           ensure_ascii=False) + "\n")
        except OSError as e:
            raise UserError("cannot write --json %s: %s" % (args.json, e.strerror or e))
    return 0


if __name__ == "__main__":
    run_main(main)
