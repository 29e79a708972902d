"""wrapper.replaced_word: the discriminator's top token against a word replaced at random,
on real Spanish sentences (Debian's fortunes-es), with the converted tiny model."""
import json
import os
import re

import pytest

from conftest import FORTUNES_DEBIAN, PY, REPO, run
from convert_support import assert_one_line_error, exported_tiny, hf_dir, need_modern
from test_evaluate import fortunes_of


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    return exported_tiny(tmp_path_factory)


@pytest.fixture(scope="module")
def sentences(tmp_path_factory):
    """One fortune a line: refranes (short sayings) and a few longer ones."""
    path = str(tmp_path_factory.mktemp("sentences") / "frases.txt")
    with open(path, "w", encoding="utf-8") as f:
        for category in ("refranes", "informatica"):
            for text in fortunes_of(os.path.join(FORTUNES_DEBIAN, category + ".fortunes")):
                f.write(text + "\n")
    return path


def replaced_word(python, model_dir, sentences, *args, check=True):
    return run([python, "-m", "wrapper.replaced_word", "--model-dir", model_dir,
                "--sentences", sentences] + list(args), check=check, cwd=REPO)


LINE = re.compile(r"^ ?(\d+)\. (hit |miss)  replaced '(\w+)' by '(\w+)'; discriminator's top: "
                  r"'(.+)' \(p = (0\.\d\d|1\.00)\)  \| (.+)$")


@pytest.mark.slow
def test_replaced_word_report_is_structured_and_repeatable(tmp_path, tiny_run, sentences):
    model_dir = hf_dir(tiny_run, "discriminator")
    out = str(tmp_path / "results.json")
    first = replaced_word(PY, model_dir, sentences, "--count", "8", "--seed", "7",
                          "--json", out)
    lines = first.stdout.splitlines()
    assert len(lines) == 9
    with open(out, encoding="utf-8") as f:
        summary = json.load(f)
    with open(sentences, encoding="utf-8") as f:
        originals = f.read().splitlines()
    assert summary["total"] == 8 and len(summary["results"]) == 8 and summary["seed"] == 7
    for number, (line, result) in enumerate(zip(lines, summary["results"]), 1):
        match = LINE.match(line)
        assert match, line
        assert int(match.group(1)) == number and match.group(2).strip() == (
            "hit" if result["hit"] else "miss")
        assert (match.group(3), match.group(4), match.group(5)) == (
            result["original"], result["replacement"], result["top_word"])
        # The sentence is the file's line with exactly one inner word replaced by another.
        words, changed = originals[result["line"] - 1].split(), result["sentence"].split()
        assert 6 <= len(words) <= 40 and len(changed) == len(words)
        differ = [i for i, (a, b) in enumerate(zip(words, changed)) if a != b]
        assert differ == [result["position"]] and 0 < result["position"] < len(words) - 1
        assert words[result["position"]] == result["original"] != result["replacement"]
    hits = sum(r["hit"] for r in summary["results"])
    assert lines[-1] == ("replaced word is the discriminator's top token in %d of 8 sentences "
                         "(%.0f%%)" % (hits, 100.0 * hits / 8))
    # The same seed: the same sentences, replacements and verdicts, in either environment;
    # another seed: other sentences.
    assert replaced_word(need_modern(), model_dir, sentences, "--count", "8", "--seed",
                         "7").stdout == first.stdout
    other = replaced_word(PY, model_dir, sentences, "--count", "8", "--seed", "8").stdout
    assert [l.split("| ")[1] for l in other.splitlines()[:-1]] != \
        [l.split("| ")[1] for l in lines[:-1]]


def test_replaced_word_bad_input(tmp_path, tiny_run, sentences):
    model_dir = hf_dir(tiny_run, "discriminator")
    short = tmp_path / "short.txt"
    short.write_text("Hola.\nUna frase con seis palabras aquí.\n", encoding="utf-8")
    assert_one_line_error(replaced_word(PY, model_dir, str(short), "--count", "3",
                                        check=False),
                          "has 1 line(s) of 6 to 40 words; ask for --count 1 or fewer")
    assert_one_line_error(replaced_word(PY, model_dir, str(tmp_path / "none.txt"),
                                        check=False), "is not a file")
    assert_one_line_error(replaced_word(PY, str(tmp_path), sentences, check=False),
                          "holds no converted model")
    assert_one_line_error(replaced_word(PY, model_dir, sentences, "--count", "x", check=False),
                          "replaced_word: error: argument --count: invalid int value: "
                          "'x' (see --help)")
    assert_one_line_error(replaced_word(PY, model_dir, sentences, "--count", "0", check=False),
                          "--count must be at least 1 (got 0)")
