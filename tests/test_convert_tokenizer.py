"""The converted model's tokenizer files reproduce the pretraining data's token ids.

Real Spanish text with accents (Debian's fortunes-es, its off/ collection, the Spanish Debian
Reference, and the reference token ids of the fortunes corpus) through the builder's
FullTokenizer and through transformers 2.8.0's ElectraTokenizer and ElectraTokenizerFast and
current transformers' AutoTokenizer (.venv-modern), cased and lower-cased.
"""
import gzip
import json
import os

import pytest

from conftest import CONFORMANCE, FORTUNES_SHARED, VOCAB_8K, run
from convert_support import TINY_CONFIGS, need_modern
from wrapper import convert, hf_tokenizer
from wrapper.electra import tokenization

LOWER_CASE = {"cased": False, "uncased": True}
CLS, SEP = 2, 3   # vocab-es-8k.txt


def builder_tokenizer(do_lower_case):
    return tokenization.FullTokenizer(VOCAB_8K, do_lower_case=do_lower_case, strip_accents=True)


def make_model_dir(path, do_lower_case):
    os.makedirs(path)
    hf_tokenizer.write_tokenizer_files(path, VOCAB_8K, do_lower_case, strip_accents=True,
                                       max_length=512)
    with open(os.path.join(path, "config.json"), "w") as f:   # AutoTokenizer reads model_type
        json.dump(convert.clean_config(TINY_CONFIGS["discriminator"], "discriminator"), f)
    return path


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("tokenizers")
    return {case: make_model_dir(str(root / case), lower) for case, lower in LOWER_CASE.items()}


def spread_sample(lines, limit):
    """About `limit` non-empty lines spread evenly over the whole text."""
    lines = [l for l in lines if l]
    return lines[::max(1, len(lines) // limit)][:limit]


@pytest.fixture(scope="module")
def spanish_lines(debian_fortunes_dir, debian_reference_lines):
    lines = []
    off = os.path.join(debian_fortunes_dir, "off")
    for name in sorted(os.listdir(off)):
        if name.endswith(".fortunes"):
            with open(os.path.join(off, name), encoding="utf-8", errors="replace") as f:
                lines += [l.strip() for l in f]
    sample = spread_sample(lines, 1500)
    sample += spread_sample([l.strip() for l in debian_reference_lines], 1500)
    assert len(sample) > 2000
    assert sum("á" in l or "é" in l or "ó" in l for l in sample) > 500
    assert sum("ñ" in l for l in sample) > 50
    return sample


@pytest.fixture(scope="module")
def builder_ids(spanish_lines):
    """The builder's ids of every line, [CLS] ... [SEP], per case; the cases must differ."""
    ids = {}
    for case, lower in LOWER_CASE.items():
        builder = builder_tokenizer(lower)
        ids[case] = [[CLS] + builder.convert_tokens_to_ids(builder.tokenize(l)) + [SEP]
                     for l in spanish_lines]
    assert sum(a != b for a, b in zip(ids["cased"], ids["uncased"])) > len(spanish_lines) // 2
    return ids


@pytest.fixture(scope="module")
def fortunes_reference():
    """(line, reference ids) of the fortunes corpus, cased (the reference builder's ids)."""
    lines = {}
    for name in sorted(os.listdir(FORTUNES_SHARED)):
        with open(os.path.join(FORTUNES_SHARED, name), encoding="utf-8") as f:
            for number, line in enumerate(f):
                lines[(name, number)] = line.strip()
    pairs = []
    with gzip.open(os.path.join(CONFORMANCE, "tokenizer", "fortunes-cased.jsonl.gz"), "rt",
                   encoding="utf-8") as f:
        for record in map(json.loads, f):
            pairs.append((lines[(record["file"], record["line"])], record["ids"]))
    pairs = [p for p in pairs if p[0]]
    return pairs[::max(1, len(pairs) // 3000)]


def legacy_ids(model_dir, lines):
    import transformers
    slow = transformers.ElectraTokenizer.from_pretrained(model_dir)
    fast = transformers.ElectraTokenizerFast.from_pretrained(model_dir)
    return {"ElectraTokenizer": [slow.encode(l) for l in lines],
            "ElectraTokenizerFast": fast.batch_encode_plus(lines)["input_ids"]}


MODERN_SCRIPT = """
import json, sys
from transformers import AutoTokenizer
results = []
for job in json.load(open(sys.argv[1], encoding="utf-8")):
    tokenizer = AutoTokenizer.from_pretrained(job["dir"])
    results.append({"class": type(tokenizer).__name__,
                    "ids": tokenizer(job["lines"], truncation=False)["input_ids"]})
json.dump(results, open(sys.argv[2], "w"))
"""


@pytest.fixture(scope="module")
def modern_ids(model_dirs, spanish_lines, fortunes_reference, tmp_path_factory):
    """AutoTokenizer's ids (current transformers, one .venv-modern run for every case)."""
    python = need_modern()
    root = tmp_path_factory.mktemp("modern-tokenizer")
    jobs = [("cased", model_dirs["cased"], spanish_lines),
            ("uncased", model_dirs["uncased"], spanish_lines),
            ("reference", model_dirs["cased"], [line for line, _ in fortunes_reference])]
    source, target = str(root / "jobs.json"), str(root / "ids.json")
    with open(source, "w", encoding="utf-8") as f:
        json.dump([{"dir": d, "lines": l} for _, d, l in jobs], f)
    run([python, "-c", MODERN_SCRIPT, source, target])
    with open(target) as f:
        results = json.load(f)
    return {name: (r["class"], r["ids"]) for (name, _, _), r in zip(jobs, results)}


def mismatches(lines, want, got):
    bad = [(l, g, w) for l, g, w in zip(lines, got, want) if list(g) != list(w)]
    return len(bad), bad[:2]


@pytest.mark.parametrize("case", sorted(LOWER_CASE))
def test_transformers_2_8_tokenizers_match_builder(model_dirs, spanish_lines, builder_ids, case):
    want = builder_ids[case]
    for name, got in legacy_ids(model_dirs[case], spanish_lines).items():
        assert mismatches(spanish_lines, want, got) == (0, []), name


@pytest.mark.parametrize("case", sorted(LOWER_CASE))
@pytest.mark.slow
def test_current_transformers_autotokenizer_matches_builder(modern_ids, spanish_lines,
                                                            builder_ids, case):
    want = builder_ids[case]
    cls, got = modern_ids[case]
    assert cls in ("BertTokenizer", "BertTokenizerFast", "ElectraTokenizerFast")
    assert mismatches(spanish_lines, want, got) == (0, [])


def test_all_tokenizers_match_reference_builder_ids(model_dirs, fortunes_reference, modern_ids):
    lines = [line for line, _ in fortunes_reference]
    want = [[CLS] + ids + [SEP] for _, ids in fortunes_reference]
    for name, got in legacy_ids(model_dirs["cased"], lines).items():
        assert mismatches(lines, want, got) == (0, []), name
    _, got = modern_ids["reference"]
    assert mismatches(lines, want, got) == (0, [])


def test_tutorial_call_keeps_accents(model_dirs, tmp_path):
    """The tutorial's `ElectraTokenizerFast.from_pretrained(DIR, do_lower_case=False)`."""
    import transformers
    sentence = "Los pájaros están hablando"
    ours = transformers.ElectraTokenizerFast.from_pretrained(model_dirs["cased"],
                                                             do_lower_case=False)
    assert "pájaros" in ours.tokenize(sentence) and "están" in ours.tokenize(sentence)
    # Without strip_accents in tokenizer_config.json, the same call strips them (the trap).
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "vocab.txt").write_bytes(open(VOCAB_8K, "rb").read())
    trap = transformers.ElectraTokenizerFast.from_pretrained(str(bare), do_lower_case=False)
    assert "pájaros" not in trap.tokenize(sentence)


def test_tokenizer_config_keys():
    cased = hf_tokenizer.tokenizer_config(False, True, 512)
    assert cased["do_lower_case"] is False and cased["strip_accents"] is False
    uncased = hf_tokenizer.tokenizer_config(True, True, 512)
    assert uncased["do_lower_case"] is True and uncased["strip_accents"] is True
    assert cased["model_max_length"] == cased["max_len"] == 512
