"""BERT tokenization: the plain-Python definition against the reference's ids, and the
fast path against the plain one, line by line on real Spanish text."""
import glob
import gzip
import json
import os

import pytest

from conftest import CONFORMANCE, VOCAB_8K

from wrapper import electra
from wrapper.electra import tokenization

fast_tokenization = electra.load("fast_tokenization")

REFERENCE_IDS = os.path.join(CONFORMANCE, "tokenizer", "fortunes-cased.jsonl.gz")
CONFIGS = {                       # name: (do_lower_case, strip_accents)
    "cased": (False, True),
    "lower-strip": (True, True),
    "lower-keep-accents": (True, False),
}
# Characters where BERT's rules are easy to get wrong: control and format characters,
# NUL and U+FFFD, odd whitespace (NBSP, line separator, ideographic space), final sigma,
# dotted capital I, ligatures, combining marks, CJK, unassigned and private-use code
# points, non-ASCII punctuation and symbols, a literal "[SEP]", a word over 100 chars.
TRICKY_LINES = [
    "ΟΔΟΣ Σ ΣΑ aΣb ΑΣ. İstanbul İ ǅ ﬁn ß Straße",
    "a\u200bb\u00adc\ufeffd\x00e\ufffdf\x07g\x1fh\x85i\u2028j\u2029k",
    "tab\there\rcarriage \u00a0nbsp \u3000ideo \u2003em \u202fnarrow",
    "e\u0301 n\u0303 a\u0308\u0301 \u1e9b\u0323 \u0958 \u00c5\u212b \u037e \u0387 \u1fef",
    "中文字 日本語のテキスト 한국어 𠀀𪜀 丽",
    "«¿Qué?» —dijo— ¡Hola! … “comillas” ‘simples’ §1 ¶ † ‰ € £ ¥ © ® ° ± × ÷",
    "[SEP] [CLS] [UNK] [MASK] ## ##a",
    "\U000e0001\U000f0000\ue000 \U0001f600\U0001f971 \u0378 \u2e50",
    "x" * 100 + " " + "y" * 101 + " " + "ñ" * 101 + " " + "á" * 100,
    "1,000.5 3/4 ½ ² ① Ⅻ 𝟘 ٣",
]


@pytest.fixture(scope="module")
def vocab():
    return tokenization.load_vocab(VOCAB_8K)


@pytest.fixture(scope="module")
def reference_records():
    """(line text, reference ids) for every line of the fortunes corpus."""
    files, records = {}, []
    with gzip.open(REFERENCE_IDS, "rt", encoding="utf-8") as f:
        for record in map(json.loads, f):
            name = record["file"]
            if name not in files:
                with open(os.path.join(CONFORMANCE, "corpus", "fortunes", name), "rb") as g:
                    files[name] = g.read().split(b"\n")
            line = files[name][record["line"]].decode("utf-8").strip()
            records.append((line, record["ids"]))
    return records


@pytest.fixture(scope="module")
def spanish_lines(debian_fortunes_dir, debian_reference_lines):
    """Every line of Debian's fortunes-es (incl. off/) and debian-reference-es, stripped."""
    lines = []
    for path in sorted(glob.glob(os.path.join(debian_fortunes_dir, "*.fortunes")) +
                       glob.glob(os.path.join(debian_fortunes_dir, "off", "*.fortunes"))):
        with open(path, "rb") as f:
            lines += f.read().decode("utf-8").split("\n")
    lines += debian_reference_lines
    lines = [line.strip() for line in lines]
    assert len(lines) > 50000
    return lines


def plain_ids(tokenizer, lines):
    return [tokenizer.convert_tokens_to_ids(tokenizer.tokenize(line)) for line in lines]


def fast_ids(bulk, lines, chunk=20000):
    ids = []
    for start in range(0, len(lines), chunk):
        ids += bulk.ids_of_lines(lines[start:start + chunk])
    return ids


def first_difference(lines, want, got):
    for line, a, b in zip(lines, want, got):
        if a != b:
            return "%r: expected %s, got %s" % (line, a, b)
    return None


def test_load_vocab_ids_are_line_numbers(vocab):
    assert len(vocab) == 8000
    assert [vocab[t] for t in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")] == [0, 1, 2, 3, 4]


def test_plain_tokenizer_equals_reference_ids(reference_records):
    tokenizer = tokenization.FullTokenizer(VOCAB_8K, do_lower_case=False)
    lines = [line for line, _ in reference_records]
    want = [ids for _, ids in reference_records]
    assert len(lines) == 30272
    got = plain_ids(tokenizer, lines)
    assert first_difference(lines, want, got) is None


def test_fast_tokenizer_equals_reference_ids(reference_records, vocab):
    bulk = fast_tokenization.BulkTokenizer(vocab, do_lower_case=False)
    lines = [line for line, _ in reference_records if line]
    want = [ids for line, ids in reference_records if line]
    got = fast_ids(bulk, lines)
    assert first_difference(lines, want, got) is None


@pytest.mark.parametrize("config", sorted(CONFIGS))
@pytest.mark.slow
def test_fast_equals_plain_on_debian_text(config, spanish_lines, vocab):
    lower, strip = CONFIGS[config]
    tokenizer = tokenization.FullTokenizer(VOCAB_8K, do_lower_case=lower, strip_accents=strip)
    lines = [line for line in spanish_lines if line] + TRICKY_LINES
    want = plain_ids(tokenizer, lines)
    got = fast_ids(fast_tokenization.BulkTokenizer(vocab, lower, strip), lines)
    assert first_difference(lines, want, got) is None
    assert sum(map(len, want)) > 500000


@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_tricky_characters(config, vocab):
    """Each tricky line alone and all together (the fast path's caches start empty)."""
    lower, strip = CONFIGS[config]
    tokenizer = tokenization.FullTokenizer(VOCAB_8K, do_lower_case=lower, strip_accents=strip)
    want = plain_ids(tokenizer, TRICKY_LINES)
    for line, ids in zip(TRICKY_LINES, want):
        assert fast_tokenization.BulkTokenizer(vocab, lower, strip).ids_of_lines([line]) == [ids]
    assert fast_tokenization.BulkTokenizer(vocab, lower, strip).ids_of_lines(TRICKY_LINES) == want


def test_bert_rules_by_example():
    """A few rules spelt out, so that a change of definition cannot pass unnoticed."""
    cased = tokenization.BasicTokenizer(do_lower_case=False)
    assert cased.tokenize(" ¡Hola,\tmundo!\x00 ") == ["¡", "Hola", ",", "mundo", "!"]
    assert cased.tokenize("中文") == ["中", "文"]
    assert cased.tokenize("a\u200bb") == ["ab"]            # format char removed, no split
    lower = tokenization.BasicTokenizer(do_lower_case=True, strip_accents=True)
    assert lower.tokenize("Pájaros ÑANDÚ") == ["pajaros", "nandu"]
    keep = tokenization.BasicTokenizer(do_lower_case=True, strip_accents=False)
    assert keep.tokenize("Pájaros ÑANDÚ") == ["pájaros", "ñandú"]
    wordpiece = tokenization.WordpieceTokenizer({"un": 0, "##able": 1, "[UNK]": 2})
    assert wordpiece.tokenize("unable unx " + "u" * 101) == ["un", "##able", "[UNK]", "[UNK]"]
