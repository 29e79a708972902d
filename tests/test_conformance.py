"""The conformance checker itself (wrapper/conformance.py): on the reference data it passes,
and with one fact of that data altered (in a copy) it fails, naming what differs.

The full run, every check against tests/conformance/, is `make conformance` in .ci/run; these
tests only run the cheap parts, or one check on an altered copy.
"""
import gzip
import json
import os
import shutil

import numpy as np
import pytest

from conftest import ELECTRA_DIR, PY, REPO, run
from wrapper import conformance

REFERENCE = conformance.REFERENCE_DIR


def reference_copy(root, writable=()):
    """A copy of tests/conformance: links to every file except `writable` (relative paths),
    which are real copies, free to alter."""
    for dirpath, _, filenames in os.walk(REFERENCE):
        relative_dir = os.path.relpath(dirpath, REFERENCE)
        os.makedirs(os.path.join(str(root), relative_dir), exist_ok=True)
        for name in filenames:
            relative = os.path.normpath(os.path.join(relative_dir, name))
            source, target = os.path.join(dirpath, name), os.path.join(str(root), relative)
            if relative in writable:
                shutil.copy(source, target)
            else:
                os.symlink(source, target)
    return str(root)


def conformance_cli(*args):
    return run([PY, "-m", "wrapper.conformance"] + list(args), check=False, cwd=REPO)


def check_lines(stdout):
    """{check name: (PASS|FAIL, detail)} of the one-line-per-check output."""
    lines = {}
    for line in stdout.splitlines():
        if line.startswith(("PASS ", "FAIL ")):
            verdict, name, detail = line.split(None, 2)
            lines[name] = (verdict, detail.rsplit("  [", 1)[0])   # without "  [i/n, t s]"
    return lines


def context(reference_dir, tmp_path, electra_dir=ELECTRA_DIR):
    work = tmp_path / "work"
    work.mkdir(parents=True)
    return conformance.Context(reference_dir, electra_dir, str(work))


def load(relative, reference_dir=REFERENCE):
    with open(os.path.join(reference_dir, relative)) as f:
        return json.load(f)


# ---- builder: the real builder against an altered digest -----------------------------------

@pytest.mark.slow
def test_builder_check_fails_on_one_altered_shard_digest(tmp_path):
    relative = conformance.BUILDER_DIGESTS % 1
    reference = reference_copy(tmp_path / "reference", writable={relative})
    digests = load(relative, reference)
    shard = "pretrain_data.tfrecord-7-of-1000"
    digests["shards"][shard][1] = "0" * 64
    with open(os.path.join(reference, relative), "w") as f:
        json.dump(digests, f)

    proc = conformance_cli("--reference", reference, "builder-p1")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = check_lines(proc.stdout)
    assert sorted(lines) == ["builder-p1", "corpus"]
    assert lines["corpus"][0] == "PASS"
    # Every other shard equal: our digest format is the reference's.
    verdict, detail = lines["builder-p1"]
    assert verdict == "FAIL"
    assert detail.startswith("999/1000 shards equal, 1953 examples (reference 1953); "
                             "first differing shard %s: " % shard), detail
    assert proc.stdout.strip().splitlines()[-1].startswith("conformance: FAIL (1 of 2: builder-p1)")
    assert "builder-p1: building" in proc.stdout    # progress for the slow part
    assert "Traceback" not in proc.stdout + proc.stderr


def test_compare_shards_names_missing_and_extra_shards():
    want = load(conformance.BUILDER_DIGESTS % 2)
    assert conformance.compare_shards(want, json.loads(json.dumps(want))).ok
    got = json.loads(json.dumps(want))
    got["shards"]["pretrain_data.tfrecord-1000-of-1001"] = [1, "ab"]
    del got["shards"]["pretrain_data.tfrecord-3-of-1000"]
    result = conformance.compare_shards(want, got)
    assert not result.ok
    assert "999/1000 shards equal" in result.detail
    assert "first differing shard pretrain_data.tfrecord-3-of-1000: missing" in result.detail
    assert "unexpected shards: pretrain_data.tfrecord-1000-of-1001" in result.detail


# ---- variables -----------------------------------------------------------------------------

def test_compare_variables_catches_a_changed_missing_or_extra_variable():
    want = load(conformance.VARIABLES)
    assert len(want) == 1207
    assert conformance.compare_variables(want, dict(want)).detail == (
        "1207 reference, 1207 written, 0 missing, 0 extra, 0 differ")

    name = "electra/encoder/layer_3/attention/self/query/kernel"
    for alter, expected in [
            (lambda got: got.update({name: {"shape": [256, 255], "dtype": "float32"}}),
             "0 missing, 0 extra, 1 differ; differs: %s" % name),
            (lambda got: got.update({name: dict(want[name], dtype="float16")}), "1 differ"),
            (lambda got: got.pop(name + "/adam_m"), "1 missing, 0 extra, 0 differ; missing: "),
            (lambda got: got.update({"electra/pooler/dense/kernel": want[name]}),
             "0 missing, 1 extra, 0 differ; extra: electra/pooler/dense/kernel")]:
        got = json.loads(json.dumps(want))
        alter(got)
        result = conformance.compare_variables(want, got)
        assert not result.ok and expected in result.detail, result.detail


def test_checkpoint_variables_reads_the_reference_format():
    """The reference's tiny checkpoint, read as the check reads ours: its names are a subset of
    ELECTRA-small's (2 layers of 12), its shapes those of hidden 64, global_step int64."""
    got = conformance.checkpoint_variables(os.path.join(REFERENCE, conformance.TINY_CHECKPOINT))
    assert got["global_step"] == {"shape": [], "dtype": "int64"}
    assert got["electra/embeddings/word_embeddings"] == {"shape": [8000, 128], "dtype": "float32"}
    result = conformance.compare_variables(load(conformance.VARIABLES), got)
    assert not result.ok
    assert ", 0 extra, " in result.detail and "missing: electra/encoder/layer_10/" in result.detail


# ---- configs (with --electra-dir: another implementation's configure_pretraining.py) ------

def test_configs_check_passes_and_fails_on_an_altered_value(tmp_path):
    result = conformance.check_configs(context(REFERENCE, tmp_path))
    assert result.ok, result.detail
    assert result.detail.startswith("3/3 resolved configs equal (debug, defaults, tutorial)")

    reference = reference_copy(tmp_path / "reference", writable={conformance.CONFIGS})
    configs = load(conformance.CONFIGS, reference)
    configs["tutorial"]["config"]["max_predictions_per_seq"] = 20
    with open(os.path.join(reference, conformance.CONFIGS), "w") as f:
        json.dump(configs, f)
    result = conformance.check_configs(context(reference, tmp_path / "altered"))
    assert not result.ok
    assert "tutorial: 1 keys differ, first max_predictions_per_seq = 19 (reference 20)" in result.detail


def test_electra_dir_is_the_implementation_checked(tmp_path):
    """--electra-dir runs the trainer-side checks against that directory: a copy of ours with
    one default changed fails the configs check; nothing but trainer-side checks run."""
    other = tmp_path / "electra"
    shutil.copytree(ELECTRA_DIR, str(other))
    config_file = other / "configure_pretraining.py"
    text = config_file.read_text()
    assert '("learning_rate", 5e-4),' in text
    config_file.write_text(text.replace('("learning_rate", 5e-4),', '("learning_rate", 1e-3),'))

    proc = conformance_cli("--electra-dir", str(other), "configs")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    verdict, detail = check_lines(proc.stdout)["configs"]
    assert verdict == "FAIL" and "first learning_rate = 0.001 (reference 0.0005)" in detail
    assert str(other) in proc.stdout.splitlines()[0]

    assert conformance.select_checks([], other_implementation=True) == [
        "corpus", "builder-p1", "builder-p2", "configs", "variables"]
    assert conformance.select_checks([], other_implementation=False) == list(conformance.CHECKS)
    assert conformance.select_checks(["converter-generator"], False) == ["converter-generator"]


# ---- converter -----------------------------------------------------------------------------

def generator_logits(expected, vocab_size=8000):
    """Logits consistent with the reference's first 5 per position and argmax per position."""
    first5 = np.array(expected["generator_logits_first5"], dtype=np.float32)
    argmax = np.array(expected["generator_logits_argmax"])
    logits = np.full(first5.shape[:2] + (vocab_size,), -1e3, dtype=np.float32)
    logits[:, :, :5] = first5
    rows, cols = np.nonzero(argmax >= 5)
    logits[rows, cols, argmax[rows, cols]] = 1e3
    return logits


def test_compare_logits_bounds():
    expected = load(conformance.TINY_EXPECTED)
    disc = np.array(expected["discriminator_logits"], dtype=np.float32)
    assert conformance.compare_logits("discriminator", disc, expected).ok
    disc[1, 5] += 2e-4
    result = conformance.compare_logits("discriminator", disc, expected)
    assert not result.ok and result.detail.startswith("max |logit - reference| = 2.0")

    gen = generator_logits(expected)
    assert conformance.compare_logits("generator", gen, expected).ok
    shifted = gen.copy()
    shifted[0, 3, 2] += 6e-3
    assert not conformance.compare_logits("generator", shifted, expected).ok
    wrong_argmax = gen.copy()
    wrong_argmax[2, 0, 7999] = 2e3
    result = conformance.compare_logits("generator", wrong_argmax, expected)
    assert not result.ok and "argmax agreement 0.986" in result.detail   # 71 of 72 positions


@pytest.mark.slow
def test_converter_check_fails_on_an_altered_reference_logit(tmp_path):
    """The real conversion of the reference's tiny checkpoint, against expected logits with one
    value moved by 1e-3."""
    reference = reference_copy(tmp_path / "reference", writable={conformance.TINY_EXPECTED})
    expected = load(conformance.TINY_EXPECTED, reference)
    expected["discriminator_logits"][0][0] += 1e-3
    with open(os.path.join(reference, conformance.TINY_EXPECTED), "w") as f:
        json.dump(expected, f)
    proc = conformance_cli("--reference", reference, "converter-discriminator")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    verdict, detail = check_lines(proc.stdout)["converter-discriminator"]
    assert verdict == "FAIL" and detail.startswith("max |logit - reference| = 1.0"), detail


# ---- tokenizer and corpus ------------------------------------------------------------------

def test_tokenizer_check_on_a_slice_of_the_reference_ids(tmp_path):
    reference = reference_copy(tmp_path / "reference", writable={conformance.TOKENIZER_IDS})
    with gzip.open(os.path.join(REFERENCE, conformance.TOKENIZER_IDS), "rt", encoding="utf-8") as f:
        records = [json.loads(next(f)) for _ in range(300)]

    def write(records):
        with gzip.open(os.path.join(reference, conformance.TOKENIZER_IDS), "wt", encoding="utf-8") as f:
            f.writelines(json.dumps(r) + "\n" for r in records)

    write(records)
    result = conformance.check_tokenizer(context(reference, tmp_path))
    assert result.ok and result.detail == "300/300 lines give the reference's ids"

    altered = next(r for r in records[100:] if r["ids"])
    altered["ids"][0] += 1
    write(records)
    result = conformance.check_tokenizer(context(reference, tmp_path / "again"))
    assert not result.ok
    assert "299/300 lines" in result.detail
    assert "first: %s line %d: " % (altered["file"], altered["line"]) in result.detail


def test_an_altered_corpus_file_fails_and_stops_the_checks_that_read_it(tmp_path):
    relative = os.path.join(conformance.CORPUS_DIR, "arte.fortunes")
    reference = reference_copy(tmp_path / "reference", writable={relative})
    with open(os.path.join(reference, relative), "ab") as f:
        f.write(b"\n")
    proc = conformance_cli("--reference", reference, "tokenizer")
    assert proc.returncode == 1
    lines = check_lines(proc.stdout)
    assert lines["corpus"] == ("FAIL", "23/24 files equal Debian fortunes-es 1.36 (sha256); "
                                       "differ or missing: arte.fortunes")
    assert lines["tokenizer"] == ("FAIL", "not run: the reference corpus is not intact")


@pytest.mark.parametrize("args,message", [
    (["nope"], "unknown check nope; choose from all, builder, configs, converter, corpus, "
               "tokenizer, variables, or one of "),
    (["--electra-dir", "/nonexistent", "variables"], "--electra-dir /nonexistent has no "
                                                     "build_pretraining_dataset.py"),
    (["--reference", "/nonexistent"], "reference data folder /nonexistent is missing"),
], ids=["unknown-check", "no-electra-dir", "no-reference"])
def test_bad_arguments_are_one_line(args, message):
    proc = conformance_cli(*args)
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("conformance: error: " + message), lines


def test_a_builder_without_seed_flag_is_told_apart(tmp_path):
    """Upstream's builder has no --seed (its shards are random): the check says so rather than
    showing argparse's complaint. The stand-in takes the reference's other flags."""
    other = tmp_path / "upstream"
    other.mkdir()
    for name in ("configure_pretraining.py", "run_pretraining.py"):
        os.symlink(os.path.join(ELECTRA_DIR, name), str(other / name))
    (other / "build_pretraining_dataset.py").write_text(
        "import argparse\n"
        "parser = argparse.ArgumentParser()\n"
        "for flag in ('--corpus-dir', '--vocab-file', '--output-dir', '--max-seq-length',\n"
        "             '--num-processes'):\n"
        "    parser.add_argument(flag)\n"
        "parser.add_argument('--no-lower-case', action='store_true')\n"
        "parser.parse_args()\n")
    proc = conformance_cli("--electra-dir", str(other), "builder-p2")
    assert proc.returncode == 1
    verdict, detail = check_lines(proc.stdout)["builder-p2"]
    assert verdict == "FAIL"
    assert detail == ("%s/build_pretraining_dataset.py has no --seed flag, so its shards cannot "
                      "equal the reference's (made with job j seeded by random.seed(1234 + j), "
                      "SPEC.md)" % other)
