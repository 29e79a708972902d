"""make vocab: mbert, a WordPiece vocab trained with `tokenizers` on real Spanish text, or
a user's file, validated; and one vocab reader for every stage that counts tokens."""
import json
import os
import re

import pytest

from conftest import PY, REPO, VOCAB_8K, assert_one_line_error, module, run


# ---- vocab ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def trained_vocab(spanish_corpus):
    data, _ = spanish_corpus
    proc = module("vocab", "--data-dir", data, "--vocab", "train", "--vocab-size", "3000")
    return data, proc


def test_trained_vocab_is_cased_wordpiece_with_accents(trained_vocab):
    from transformers import BertTokenizer
    data, proc = trained_vocab
    tokens = open(os.path.join(data, "vocab.txt"), encoding="utf-8").read().splitlines()
    assert tokens[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    assert 2900 <= len(tokens) <= 3000 and len(set(tokens)) == len(tokens)
    assert sum(t.startswith("##") for t in tokens) > 500
    assert "más" in tokens and "Los" in tokens and "los" in tokens        # accents, case
    pieces = BertTokenizer(os.path.join(data, "vocab.txt"), do_lower_case=False).tokenize(
        "Los pájaros están cantando")
    assert "[UNK]" not in pieces and pieces[0] == "Los" and any(p.startswith("##") for p in pieces)
    sample, unknown = map(int, re.search(r"on (\d+) corpus tokens: (\d+) \[UNK\]",
                                         proc.stdout).groups())
    assert sample > 10000 and unknown <= 0.01 * sample
    # says where the tokens come from in words (it once read "2000 tokens from trained on")
    assert "%d tokens, from a vocab trained on %s" % (
        len(tokens), os.path.join(data, "corpus")) in proc.stdout


def test_vocab_path_is_validated(tmp_path):
    data = str(tmp_path / "d")
    module("vocab", "--data-dir", data, "--vocab", VOCAB_8K)
    assert open(os.path.join(data, "vocab.txt")).read() == open(VOCAB_8K).read()
    tokens = open(VOCAB_8K, encoding="utf-8").read().splitlines()
    bad = {"dup.txt": tokens + [tokens[100]], "nomask.txt": [t for t in tokens if t != "[MASK]"],
           "empty.txt": []}
    words = {"dup.txt": "repeats token %r (lines 101 and 8001)" % tokens[100],
             "nomask.txt": "lacks [MASK]", "empty.txt": "is empty"}
    for name, lines in bad.items():
        path = tmp_path / name
        path.write_text("".join(l + "\n" for l in lines), encoding="utf-8")
        proc = module("vocab", "--data-dir", data, "--vocab", str(path), check=False)
        assert_one_line_error(proc, words[name])
    assert open(os.path.join(data, "vocab.txt")).read() == open(VOCAB_8K).read()


def test_vocab_never_overwrites_a_users_vocab(tmp_path):
    data = tmp_path / "d"
    data.mkdir()
    users = open(VOCAB_8K, encoding="utf-8").read() + "qqqzzz\n"
    (data / "vocab.txt").write_text(users, encoding="utf-8")
    proc = module("vocab", "--data-dir", str(data), "--vocab", VOCAB_8K, check=False)
    assert_one_line_error(proc, "not written by this pipeline", "VOCAB=")
    # It is only ever read, as VOCAB=DATA_DIR/vocab.txt.
    module("vocab", "--data-dir", str(data), "--vocab", str(data / "vocab.txt"))
    assert (data / "vocab.txt").read_text(encoding="utf-8") == users


@pytest.mark.network(host="huggingface.co")
def test_vocab_mbert_from_the_hub(tmp_path):
    proc = module("vocab", "--data-dir", str(tmp_path), "--vocab", "mbert")
    tokens = open(str(tmp_path / "vocab.txt"), encoding="utf-8").read().split("\n")[:-1]
    assert len(tokens) == 119547 and tokens[:1] == ["[PAD]"] and "pájaro" in tokens
    assert "119547 tokens, from bert-base-multilingual-cased's vocab" in proc.stdout


def test_vocab_mbert_offline_fails_in_one_line(tmp_path):
    # No cache and no way out (a proxy that refuses), whether or not this machine is online.
    offline = {"PYTORCH_TRANSFORMERS_CACHE": str(tmp_path / "cache"),
               "XDG_CACHE_HOME": str(tmp_path / "cache"), "TORCH_HOME": str(tmp_path / "cache"),
               "HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9",
               "https_proxy": "http://127.0.0.1:9", "http_proxy": "http://127.0.0.1:9",
               "NO_PROXY": "", "no_proxy": ""}
    proc = module("vocab", "--data-dir", str(tmp_path / "d"), "--vocab", "mbert", check=False,
                  env=offline)
    assert_one_line_error(proc, "VOCAB=mbert", "VOCAB=train", "VOCAB=path")
    assert not os.path.exists(str(tmp_path / "d" / "vocab.txt"))


@pytest.mark.parametrize("value", ["Train", "MBERT", "vocab-es.txt"])
def test_vocab_neither_mbert_train_nor_a_file(tmp_path, value):
    """A typo is not a missing output of an earlier stage: say what VOCAB may be."""
    proc = module("vocab", "--data-dir", str(tmp_path / "d"), "--vocab", value, check=False)
    line = assert_one_line_error(proc, "VOCAB=%s is neither mbert, train nor an existing file;"
                                 % value, "a path to a WordPiece vocab")
    assert "run " not in line
    proc = module("vocab", "--data-dir", str(tmp_path / "d"), "--vocab", str(tmp_path),
                  check=False)
    assert_one_line_error(proc, "VOCAB=%s is a directory, not a file;" % tmp_path)


def test_vocab_says_how_many_tokens_and_where_from(tmp_path):
    proc = module("vocab", "--data-dir", str(tmp_path), "--vocab", VOCAB_8K)
    assert "vocab: %s: 8000 tokens, from %s" % (tmp_path / "vocab.txt", VOCAB_8K) in proc.stdout


# ---- one reader ---------------------------------------------------------------------------

ODD_TOKENS = ["ho\rla", "uno\u2028dos", "casa"]   # a CR and a LINE SEPARATOR inside tokens
ODD_VOCAB = "\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + ODD_TOKENS) + "\n\n"
ODD_COUNT = 9   # lines end at "\n" only: 5 specials, 3 tokens, the trailing blank line


COUNT_EVERY_STAGE = r"""
import json, sys
from wrapper import electra, hf_tokenizer, hparams, vocab
path, data_dir = sys.argv[1], sys.argv[2]
builder = electra.load("build_pretraining_dataset")
pretraining_model = electra.load("pretraining_model")
tokenizer = electra.tokenization.FullTokenizer(path, do_lower_case=False)
print(json.dumps({
    "vocab stage": len(vocab.read_tokens(path)),
    "hparams vocab_size": hparams.vocab_size_of(data_dir),
    "builder": len(builder.check_vocab(path)),
    "FullTokenizer": len(tokenizer.inv_vocab),
    "trainer": pretraining_model.count_vocab_lines(path),
    "trainer ids": len(pretraining_model.load_vocab(path)),
    "export": max(hf_tokenizer.read_vocab(path).values()) + 1,
}))
"""


def test_every_stage_counts_a_vocab_the_same(tmp_path):
    """One reader (tokenization.read_vocab_tokens): "\\n" ends a line, nothing else does."""
    data = tmp_path / "d"
    data.mkdir()
    (data / "vocab.txt").write_bytes(ODD_VOCAB.encode("utf-8"))
    counts = json.loads(run([PY, "-c", COUNT_EVERY_STAGE, str(data / "vocab.txt"), str(data)],
                            cwd=REPO).stdout)
    assert set(counts.values()) == {ODD_COUNT}, counts
    # The vocab stage refuses such a file, naming the line as every other stage numbers it.
    proc = module("vocab", "--data-dir", str(tmp_path / "e"), "--vocab", str(data / "vocab.txt"),
                  check=False)
    assert_one_line_error(proc, "line 6 (%r) holds whitespace" % ODD_TOKENS[0])
    clean = ODD_VOCAB.replace(ODD_TOKENS[0], "hola").replace(ODD_TOKENS[1], "uno")
    (data / "clean.txt").write_text(clean, encoding="utf-8")
    proc = module("vocab", "--data-dir", str(tmp_path / "e"), "--vocab", str(data / "clean.txt"),
                  check=False)
    assert_one_line_error(proc, "line %d is blank" % ODD_COUNT)
