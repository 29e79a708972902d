"""DATA_DIR/vocab.txt: the WordPiece vocabulary, validated before it is written.

    python -m wrapper.vocab --data-dir D --vocab mbert|train|PATH [--vocab-size N]

- mbert: bert-base-multilingual-cased's vocab (119547 tokens, cased) through transformers'
  BertTokenizer.from_pretrained, as the tutorial; the local cache is tried first.
- train: a cased WordPiece vocab of VOCAB_SIZE tokens trained on DATA_DIR/corpus with the
  `tokenizers` package: no lower-casing, accents kept (the builder runs --no-lower-case),
  the five specials first, "##" continuation pieces as BERT's tokenizer expects.
- PATH: an existing vocab.txt.
Whatever the source: non-empty, one token per line, no blank or duplicate tokens, the
specials [PAD] [UNK] [CLS] [SEP] [MASK] present; a trained vocab must also tokenize the
corpus with BERT's tokenizer mostly without [UNK].
"""
import itertools
import os
import sys
import tempfile
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from wrapper import fsutil, paths
from wrapper.cli import ArgumentParser, UserError, positive_int, run_main
from wrapper.settings import check_vocab, default
from wrapper.electra import tokenization

SPECIAL_TOKENS = tokenization.SPECIAL_TOKENS
MBERT = "bert-base-multilingual-cased"
MAX_UNK_FRACTION = 0.01       # of a trained vocab's tokens on a sample of its own corpus
LIMIT_ALPHABET = 1000         # characters the WordPiece trainer keeps (tokenizers' default)
SAMPLE_LINES = 2000


def validate(tokens: Sequence[str], source: str) -> None:
    """Raises UserError unless `tokens` is a usable BERT vocab: the builder's own rules
    (tokenization.vocab_problem), and no blank line or whitespace inside a token, which the
    builder would keep as tokens that no text can ever produce."""
    for number, token in enumerate(tokens, 1):
        if not token.strip():
            raise UserError("vocab %s: line %d is blank" % (source, number))
        if len(token.split()) != 1:
            raise UserError("vocab %s: line %d (%r) holds whitespace; one token per line"
                            % (source, number, token))
    problem = tokenization.vocab_problem(tokens)
    if problem:
        raise UserError("vocab %s %s" % (source, problem))


def read_tokens(path: str) -> List[str]:
    """The tokens of a vocab file as the builder reads them (tokenization.read_vocab_tokens:
    lines end at "\\n" only), or one clear UserError."""
    try:
        return tokenization.read_vocab_tokens(path)
    except UnicodeDecodeError as e:
        raise UserError("vocab %s is not UTF-8 text (%s)" % (path, e.reason))
    except OSError as e:
        raise UserError("cannot read vocab %s: %s" % (path, e.strerror))


def mbert_tokens() -> List[str]:
    """bert-base-multilingual-cased's vocab via transformers (the local cache first)."""
    import logging
    logging.getLogger("transformers").setLevel(logging.ERROR)
    from transformers import BertTokenizer
    tokenizer = None
    for local_only in (True, False):
        try:
            tokenizer = BertTokenizer.from_pretrained(MBERT, local_files_only=local_only)
            break
        except (OSError, ValueError):
            continue
    if tokenizer is None:
        raise UserError("VOCAB=mbert: cannot fetch %s's vocab from the Hugging Face hub "
                        "(offline?); use VOCAB=train (trained on the corpus) or "
                        "VOCAB=path/to/vocab.txt" % MBERT)
    with tempfile.TemporaryDirectory() as tmp:
        return read_tokens(tokenizer.save_vocabulary(tmp)[0])


def corpus_files(data_dir: str) -> List[str]:
    directory = paths.corpus_dir(data_dir)
    files = sorted(os.path.join(directory, n) for n in os.listdir(directory)) \
        if os.path.isdir(directory) else []
    if not files:
        raise UserError("VOCAB=train needs the corpus: %s is missing; run make corpus first"
                        % directory)
    return files


def trained_tokens(data_dir: str, vocab_size: int) -> List[str]:
    from tokenizers import BertWordPieceTokenizer
    tokenizer = BertWordPieceTokenizer(lowercase=False, strip_accents=False, clean_text=True,
                                       handle_chinese_chars=True, wordpieces_prefix="##")
    tokenizer.train(corpus_files(data_dir), vocab_size=vocab_size, min_frequency=2,
                    limit_alphabet=LIMIT_ALPHABET, special_tokens=list(SPECIAL_TOKENS),
                    show_progress=sys.stderr.isatty(), wordpieces_prefix="##")
    with tempfile.TemporaryDirectory() as tmp:
        saved = tokenizer.save(tmp, "trained")
        saved = saved[0] if isinstance(saved, list) else saved
        return read_tokens(saved)


def unknown_words(tokenizer, lines: Iterable[str], limit: int = 3) -> Tuple[List[str], int]:
    """Up to `limit` different words of `lines` that BERT's tokenizer makes [UNK], and how
    many such words there are in all."""
    found, count = [], 0
    for line in lines:
        for word in tokenizer.basic_tokenizer.tokenize(line):
            if "[UNK]" in tokenizer.wordpiece_tokenizer.tokenize(word):
                count += 1
                if len(found) < limit and word[:40] not in [w[:40] for w in found]:
                    found.append(word)
    return found, count


def unknown_advice(tokenizer, words: Sequence[str]) -> str:
    """Why those words are [UNK] and what helps (a larger VOCAB_SIZE does not: the trainer
    keeps every character it keeps at any size)."""
    longest = tokenizer.wordpiece_tokenizer.max_input_chars_per_word
    long_words = [w for w in words if len(w) > longest]
    if long_words:
        return ("BERT's tokenizer makes any word longer than %d characters [UNK] (e.g. %r): "
                "the corpus holds long runs without spaces (URLs, encoded data, markup?); "
                "clean them out of it" % (longest, long_words[0][:40]))
    missing = sorted({c for w in words for c in w
                      if c not in tokenizer.vocab and "##" + c not in tokenizer.vocab})
    return ("the vocab lacks the character(s) %s: the WordPiece trainer keeps the %d most "
            "frequent characters of the corpus, whatever VOCAB_SIZE, so a larger VOCAB_SIZE "
            "does not help; take text in other scripts out of the corpus"
            % (" ".join(missing[:10]), LIMIT_ALPHABET))


def check_usable(vocab_path: str, data_dir: str) -> Dict[str, int]:
    """A trained vocab must suit BERT's tokenizer: '##' continuation pieces in it, few [UNK]
    on its own corpus."""
    from transformers import BertTokenizer
    tokenizer = BertTokenizer(vocab_path, do_lower_case=False)
    if not any(t.startswith("##") for t in tokenizer.vocab):
        raise UserError("the trained vocab (%d tokens) holds no '##' continuation pieces, which "
                        "BERT's tokenizer needs for the parts of a word; the tokenizers package "
                        "did not train it as WordPiece: check its version against "
                        "requirements.lock" % len(tokenizer.vocab))
    lines = []
    for name in corpus_files(data_dir):     # the first lines of every file
        with open(name, encoding="utf-8") as f:
            lines += [line.strip() for line in itertools.islice(f, SAMPLE_LINES) if line.strip()]
    pieces = [t for line in lines for t in tokenizer.tokenize(line)]
    unknown = sum(1 for t in pieces if t == "[UNK]")
    continuation = sum(1 for t in pieces if t.startswith("##"))
    if unknown > MAX_UNK_FRACTION * len(pieces):
        words, count = unknown_words(tokenizer, lines)
        raise UserError("the trained vocab makes %d of %d tokens of the corpus [UNK] (%d words, "
                        "e.g. %s; at most %d%% may be); %s"
                        % (unknown, len(pieces), count, " ".join(repr(w[:40]) for w in words),
                           round(100 * MAX_UNK_FRACTION), unknown_advice(tokenizer, words)))
    return {"sample_tokens": len(pieces), "unknown": unknown, "continuation": continuation}


def size_note(tokens: Sequence[str], vocab_size: int) -> str:
    """Why a trained vocab is not VOCAB_SIZE tokens long ("" when it is)."""
    if len(tokens) > vocab_size:
        # The trainer starts from every character of the corpus and its "##" form (so that no
        # word becomes [UNK]) and only then merges: that start is the smallest vocab it makes.
        chars = sum(1 for t in tokens if len(t) == 1)
        continued = sum(1 for t in tokens if len(t) == 3 and t.startswith("##"))
        return ("VOCAB_SIZE=%d asked, %d tokens made: the WordPiece trainer keeps every "
                "character of the corpus (%d) and its '##' form (%d) so that no word becomes "
                "[UNK], and the %d special tokens; %d is the smallest vocab for this corpus"
                % (vocab_size, len(tokens), chars, continued, len(SPECIAL_TOKENS), len(tokens)))
    if len(tokens) < vocab_size:
        return ("VOCAB_SIZE=%d asked, %d tokens made: the corpus has no more pieces that occur "
                "at least twice (the trainer's min_frequency); a larger corpus gives more"
                % (vocab_size, len(tokens)))
    return ""


def build(data_dir: str, vocab: str, vocab_size: int) -> None:
    target = paths.vocab_file(data_dir)
    if vocab == "mbert":
        tokens, source = mbert_tokens(), "%s's vocab" % MBERT
    elif vocab == "train":
        tokens, source = trained_tokens(data_dir, vocab_size), "a vocab trained on %s" % (
            paths.corpus_dir(data_dir))
    else:
        tokens, source = read_tokens(vocab), vocab
    validate(tokens, source)
    report = ""
    if vocab == "train":   # checked before it replaces anything
        with tempfile.TemporaryDirectory() as tmp:
            candidate = os.path.join(tmp, "vocab.txt")
            with open(candidate, "w", encoding="utf-8") as f:
                f.write("\n".join(tokens) + "\n")
            usable = check_usable(candidate, data_dir)
        report = " (BERT tokenizer on %d corpus tokens: %d [UNK], %d '##' pieces)" % (
            usable["sample_tokens"], usable["unknown"], usable["continuation"])
        note = size_note(tokens, vocab_size)
        if note:
            sys.stderr.write("vocab: note: %s\n" % note)
    same_file = vocab not in ("mbert", "train") and os.path.exists(target) and \
        os.path.samefile(vocab, target)
    if not same_file:
        fsutil.check_replaceable(data_dir, target,
                                 "to use it, run with VOCAB=%s; else move it away" % target)
        fsutil.write_owned_text(data_dir, target, "\n".join(tokens) + "\n")
    print("vocab: %s: %d tokens, from %s%s" % (target, len(tokens), source, report))


def main(argv: Optional[List[str]] = None) -> None:
    parser = ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--vocab", default=default("VOCAB"), help="mbert | train | path/to/vocab.txt")
    parser.add_argument("--vocab-size", default=default("VOCAB_SIZE"),
                        help="tokens of a trained vocab")
    args = parser.parse_args(argv)
    vocab = args.vocab.strip()
    check_vocab(vocab)
    vocab_size = positive_int(args.vocab_size, "VOCAB_SIZE")
    if vocab == "train" and vocab_size < len(SPECIAL_TOKENS) + 100:
        raise UserError("VOCAB_SIZE=%d is too small for a WordPiece vocab; use 1000 or more"
                        % vocab_size)
    os.makedirs(args.data_dir, exist_ok=True)
    build(args.data_dir, vocab, vocab_size)


if __name__ == "__main__":
    run_main(main)
