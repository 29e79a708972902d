"""Tokenizer files for a converted model, so that Hugging Face tokenizers reproduce the
pretraining data's token ids.

The builder tokenizes BERT's way with two switches: lower-case, and strip accents (only ever
applied when lower-casing). The Hugging Face classes read their switches from
tokenizer_config.json, and each reads different keys:
- transformers 2.8.0 ElectraTokenizer (Python): `do_lower_case` only; lower-casing always
  strips accents, which is what the builder does by default.
- transformers 2.8.0 ElectraTokenizerFast (tokenizers 0.5.2): `do_lower_case` and
  `strip_accents`, independently, with strip_accents defaulting to True even without
  lower-casing: the tutorial's `from_pretrained(DATA_DIR, do_lower_case=False)` thus turned
  "pájaros" into "pajar ##os". Writing `strip_accents` explicitly fixes that.
- current transformers (BertTokenizer for model_type electra): `do_lower_case`,
  `strip_accents` (None would mean "follow do_lower_case"), `tokenize_chinese_chars`,
  `model_max_length` (2.8.0 calls it `max_len`).
"""
import collections
import json
import os
import shutil
from typing import Any, Dict

from wrapper.cli import UserError
from wrapper.electra import tokenization
from wrapper.vocab import read_tokens

# special_tokens_map.json: each of the builder's special tokens under its role's name.
SPECIAL_TOKENS = collections.OrderedDict(
    (token.strip("[]").lower() + "_token", token) for token in tokenization.SPECIAL_TOKENS)
TOKENIZER_FILES = ("vocab.txt", "tokenizer_config.json", "special_tokens_map.json")


def read_vocab(path: str) -> Dict[str, int]:
    """token -> id (line number), as the builder reads it; checks the special tokens."""
    vocab = collections.OrderedDict()
    for index, token in enumerate(read_tokens(path)):
        vocab[token] = index
    missing = [t for t in SPECIAL_TOKENS.values() if t not in vocab]
    if missing:
        raise UserError("vocab %s lacks the special token %s that BERT tokenizers need"
                        % (path, missing[0]))
    return vocab


def tokenizer_config(do_lower_case: bool, strip_accents: bool, max_length: int
                     ) -> Dict[str, Any]:
    """tokenizer_config.json: every key any of the three tokenizer classes reads."""
    return collections.OrderedDict([
        ("do_lower_case", bool(do_lower_case)),
        # The builder never strips accents without lower-casing.
        ("strip_accents", bool(do_lower_case and strip_accents)),
        ("tokenize_chinese_chars", True),
        ("model_max_length", int(max_length)),
        ("max_len", int(max_length)),
    ] + list(SPECIAL_TOKENS.items()))


def write_tokenizer_files(out_dir: str, vocab_path: str, do_lower_case: bool,
                          strip_accents: bool, max_length: int) -> None:
    """vocab.txt (byte for byte), tokenizer_config.json, special_tokens_map.json."""
    read_vocab(vocab_path)
    shutil.copyfile(vocab_path, os.path.join(out_dir, "vocab.txt"))
    with open(os.path.join(out_dir, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(tokenizer_config(do_lower_case, strip_accents, max_length), f, indent=2,
                  ensure_ascii=False)
        f.write("\n")
    with open(os.path.join(out_dir, "special_tokens_map.json"), "w", encoding="utf-8") as f:
        json.dump(SPECIAL_TOKENS, f, indent=2)
        f.write("\n")
