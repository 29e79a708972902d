"""third_party/electra/build_pretraining_dataset.py: equal to the reference's output, equal
between the fast and the plain path, safe with the output directory, clear on bad input."""
import gzip
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import CONFORMANCE, DEBIAN_REFERENCE_TXT, ELECTRA_DIR, PY, VOCAB_8K, run
from wrapper import conformance

sys.path.insert(0, ELECTRA_DIR)
import tfrecord_io  # noqa: E402
from protobuf_wire import field_bytes  # noqa: E402

BUILDER = os.path.join(ELECTRA_DIR, "build_pretraining_dataset.py")
PROG = "build_pretraining_dataset.py: error: "


def build(corpus, out, *flags, check=True, vocab=VOCAB_8K):
    return run([PY, BUILDER, "--corpus-dir", str(corpus), "--vocab-file", str(vocab),
                "--output-dir", str(out)] + [str(f) for f in flags], check=check)


def shard_bytes(directory):
    """{shard name: sha256 of its bytes}; identical bytes mean identical examples here,
    since both paths share one writer."""
    result = {}
    for name in sorted(os.listdir(str(directory))):
        with open(os.path.join(str(directory), name), "rb") as f:
            result[name] = hashlib.sha256(f.read()).hexdigest()
    return result


@pytest.fixture(scope="module")
def mixed_corpus(tmp_path_factory, debian_fortunes_dir):
    """Real text with blank lines: fortunes-es files and slices of debian-reference-es."""
    corpus = tmp_path_factory.mktemp("mixed")
    for name in ("amistad.fortunes", "arte.fortunes", "ciencia.fortunes", "vida.fortunes"):
        shutil.copy(os.path.join(debian_fortunes_dir, name), str(corpus / name))
    with gzip.open(DEBIAN_REFERENCE_TXT, "rb") as f:
        text = f.read()
    lines = text.split(b"\n")
    (corpus / "reference-a.txt").write_bytes(b"\n".join(lines[:6000]) + b"\n")
    (corpus / "reference-b.txt").write_bytes(b"\n".join(lines[6000:11000]))   # no final newline
    # Windows line ends and a BOM; lines that are blank only to strip() (NBSP, U+3000, \x1c),
    # lines that are not blank but have no tokens (ZWSP, NUL), a lone \r inside a line.
    odd = ("\ufeffPrimera línea\r\n\u00a0\u3000\r\n\u200b\r\n\x00\r\nuno\rdos\r\n\x1c\r\n"
           "ΣΟΦΙΑ Ελληνικά İstanbul ﬁn 中文\r\n\r\n")
    (corpus / "odd.txt").write_bytes((odd * 300).encode("utf-8") +
                                     b"\r\n".join(lines[11000:12000]))
    return corpus


# ---- equal to the reference ------------------------------------------------------------

@pytest.mark.parametrize("processes,tokenizer", [(1, "fast"), (2, "fast"), (2, "plain")])
@pytest.mark.slow
def test_reference_shards(processes, tokenizer, tmp_path, fortunes_dir):
    golden_path = os.path.join(CONFORMANCE, "builder",
                               "fortunes-seq128-cased-seed1234-p%d.json" % processes)
    with open(golden_path) as f:
        golden = json.load(f)
    out = tmp_path / "out"
    proc = build(fortunes_dir, out, "--max-seq-length", 128, "--no-lower-case",
                 "--num-processes", processes, "--seed", 1234, "--tokenizer", tokenizer)
    got = conformance.shard_digests(str(out))   # the reference's digest format
    assert got["examples"] == golden["examples"]
    assert got["shards"] == golden["shards"]
    assert "processed 24/24 files" in proc.stdout
    assert "examples written" in proc.stdout and "ETA" in proc.stdout
    summary = proc.stdout.strip().splitlines()[-1]
    assert summary.startswith("wrote %d examples (" % golden["examples"])
    assert "tokens" in summary and "MB/s" in summary


@pytest.mark.parametrize("flags", [
    ["--do-lower-case", "--num-processes", 3, "--max-seq-length", 64, "--blanks-separate-docs", ""],
    ["--no-strip-accents", "--num-processes", 1, "--max-seq-length", 200, "--num-out-files", 7],
], ids=["lower-strip-p3-seq64-blanks-off", "lower-keep-accents-p1-seq200"])
def test_fast_equals_plain(flags, tmp_path, mixed_corpus):
    fast, plain = tmp_path / "fast", tmp_path / "plain"
    build(mixed_corpus, fast, "--seed", 7, *flags)
    build(mixed_corpus, plain, "--seed", 7, "--tokenizer", "plain", *flags)
    fast_shards = shard_bytes(fast)
    assert fast_shards == shard_bytes(plain)
    assert sum(os.path.getsize(str(fast / n)) for n in fast_shards) > 100000


def test_tfrecords_read_by_tensorflow(tmp_path, mixed_corpus):
    """The hand-written records parse with TF and hold what the SPEC says an example is."""
    import tensorflow.compat.v1 as tf
    out = tmp_path / "out"
    build(mixed_corpus, out, "--seed", 3, "--max-seq-length", 32, "--num-out-files", 2)
    vocab = [line.strip() for line in open(VOCAB_8K, encoding="utf-8")]
    cls_id, sep_id = vocab.index("[CLS]"), vocab.index("[SEP]")
    count = 0
    for name in sorted(os.listdir(str(out))):
        for record in tf.io.tf_record_iterator(str(out / name)):
            feats = tf.train.Example.FromString(record).features.feature
            ids = list(feats["input_ids"].int64_list.value)
            mask = list(feats["input_mask"].int64_list.value)
            segments = list(feats["segment_ids"].int64_list.value)
            assert len(ids) == len(mask) == len(segments) == 32
            n = sum(mask)
            assert mask == [1] * n + [0] * (32 - n) and ids[n:] == [0] * (32 - n)
            assert ids[0] == cls_id and ids[n - 1] == sep_id
            first = segments.index(1) if 1 in segments else n
            assert ids[first - 1] == sep_id and segments[first:n] == [1] * (n - first)
            count += 1
    assert count > 1000


def test_record_framing_equals_tensorflow_writer(tmp_path):
    import tensorflow.compat.v1 as tf
    payloads = [os.urandom(n) for n in (0, 1, 7, 100, 513, 4000)] * 3
    path = str(tmp_path / "tf.tfrecord")
    with tf.io.TFRecordWriter(path) as writer:
        for payload in payloads:
            writer.write(payload)
    with open(path, "rb") as f:
        assert f.read() == tfrecord_io.frame_records(payloads)
    assert tfrecord_io.crc32c(b"123456789") == 0xE3069283
    serializer = tfrecord_io.ExampleSerializer(vocab_size=300000, max_length=8)
    blob = serializer.serialize([2, 127, 128, 16384, 299999, 3], 4)
    want = tf.train.Example(features=tf.train.Features(feature={
        "input_ids": tf.train.Feature(int64_list=tf.train.Int64List(
            value=[2, 127, 128, 16384, 299999, 3, 0, 0])),
        "input_mask": tf.train.Feature(int64_list=tf.train.Int64List(value=[1] * 6 + [0] * 2)),
        "segment_ids": tf.train.Feature(int64_list=tf.train.Int64List(
            value=[0] * 4 + [1] * 2 + [0] * 2)),
    }))
    assert tf.train.Example.FromString(blob) == want


# ---- reading the records back without TensorFlow -------------------------------------------

def tf_parsed(tf, path, names=("input_ids", "input_mask", "segment_ids")):
    rows = {name: [] for name in names}
    for record in tf.io.tf_record_iterator(path):
        feature = tf.train.Example.FromString(record).features.feature
        for name in names:
            rows[name].append(list(feature[name].int64_list.value))
    return rows


def test_read_examples_equals_tensorflow_parsing(tmp_path, mixed_corpus):
    import tensorflow.compat.v1 as tf
    out = tmp_path / "out"
    build(mixed_corpus, out, "--seed", 3, "--max-seq-length", 128, "--num-out-files", 2)
    for name in sorted(os.listdir(str(out))):
        path = str(out / name)
        ours = tfrecord_io.read_examples(path, seq_length=128)
        want = tf_parsed(tf, path)
        assert ours["input_ids"].shape[0] > 100
        for feature, rows in want.items():
            assert ours[feature].dtype == np.int32
            assert ours[feature].tolist() == rows, feature
    # TF's own writer and Example (any map order); unpacked lists, large and negative values.
    values = [[5, 0, 2 ** 31 - 1, -2 ** 31], [127, 128, 16383, 16384]]
    path = str(tmp_path / "tf.tfrecord")
    with tf.io.TFRecordWriter(path) as writer:
        for ids in values:
            writer.write(tf.train.Example(features=tf.train.Features(feature={
                "segment_ids": tf.train.Feature(int64_list=tf.train.Int64List(value=[1] * 4)),
                "input_ids": tf.train.Feature(int64_list=tf.train.Int64List(value=ids)),
                "other": tf.train.Feature(float_list=tf.train.FloatList(value=[0.5])),
                "input_mask": tf.train.Feature(int64_list=tf.train.Int64List(value=[1] * 4)),
            })).SerializeToString())
        unpacked = b"".join(b"\x08" + tfrecord_io.varint(v) for v in (7, 300, 9, 0))
        features = b"".join(
            field_bytes(1, field_bytes(1, name.encode()) + field_bytes(2, field_bytes(3, unpacked)))
            for name in ("input_ids", "input_mask", "segment_ids"))
        writer.write(field_bytes(1, features))
    assert tfrecord_io.read_records(path) == list(tf.io.tf_record_iterator(path))
    ours = tfrecord_io.read_examples(path)
    assert {k: v.tolist() for k, v in ours.items()} == tf_parsed(tf, path)
    assert ours["input_ids"].tolist() == values + [[7, 300, 9, 0]]


def damage(path, change):
    with open(path, "rb") as f:
        data = bytearray(f.read())
    with open(path, "wb") as f:
        f.write(change(data))


@pytest.mark.parametrize("change,words", [
    (lambda d: d[:-10], ["is truncated: record 3 (at byte"]),
    (lambda d: d[:5], ["is truncated: record 1 (at byte 0) ends inside its length header"]),
    (lambda d: d[:40] + bytes([d[40] ^ 1]) + d[41:], ["is corrupt: record 1 (at byte 0) has a bad "
                                                      "data checksum"]),
    (lambda d: d[:2] + b"\x7f" + d[3:], ["is corrupt: record 1 (at byte 0) has a bad length "
                                         "checksum"]),
])
def test_damaged_shard_is_one_error_naming_file_and_record(tmp_path, change, words):
    serializer = tfrecord_io.ExampleSerializer(vocab_size=8000, max_length=16)
    path = str(tmp_path / "pretrain_data.tfrecord-0-of-1")
    with open(path, "wb") as f:
        f.write(tfrecord_io.frame_records([serializer.serialize([2, 5, 3], 3)] * 3))
    damage(path, change)
    with pytest.raises(tfrecord_io.TFRecordError) as info:
        tfrecord_io.read_examples(path)
    assert path in str(info.value) and "\n" not in str(info.value)
    for word in words:
        assert word in str(info.value), str(info.value)


def test_examples_of_other_lengths_or_features_are_named(tmp_path):
    serializer = tfrecord_io.ExampleSerializer(vocab_size=8000, max_length=16)
    path = str(tmp_path / "shard")
    with open(path, "wb") as f:
        f.write(tfrecord_io.frame_records([serializer.serialize([2, 5, 3], 3)] * 2))
    with pytest.raises(tfrecord_io.TFRecordError, match="record 1 has 16 values of input_ids, "
                                                          "not 128"):
        tfrecord_io.read_examples(path, seq_length=128)
    with pytest.raises(tfrecord_io.TFRecordError, match="record 1 has no feature labels"):
        tfrecord_io.read_examples(path, features=("input_ids", "labels"))


# ---- flags -----------------------------------------------------------------------------

def test_blanks_separate_docs_quirk(tmp_path, mixed_corpus):
    default, false_word, empty = tmp_path / "default", tmp_path / "false", tmp_path / "empty"
    build(mixed_corpus, default, "--seed", 5, "--num-out-files", 3)
    proc = build(mixed_corpus, false_word, "--seed", 5, "--num-out-files", 3,
                 "--blanks-separate-docs", "False")
    assert "means True" in proc.stderr and "--blanks-separate-docs ''" in proc.stderr
    assert shard_bytes(false_word) == shard_bytes(default)
    proc = build(mixed_corpus, empty, "--seed", 5, "--num-out-files", 3,
                 "--blanks-separate-docs", "")
    assert "means True" not in proc.stderr
    assert shard_bytes(empty) != shard_bytes(default)


def test_help_lists_reference_flags():
    out = run([PY, BUILDER, "--help"]).stdout
    for flag in ("--corpus-dir", "--vocab-file", "--output-dir", "--max-seq-length",
                 "--num-processes", "--blanks-separate-docs", "--do-lower-case",
                 "--no-lower-case", "--do-strip-accents", "--no-strip-accents", "--seed",
                 "--num-out-files"):
        assert flag in out


# ---- output directory safety -----------------------------------------------------------

def test_job_without_files_creates_its_empty_shards(tmp_path, fortunes_dir):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    shutil.copy(os.path.join(fortunes_dir, "asimov.fortunes"), str(corpus))
    out = tmp_path / "out"
    build(corpus, out, "--num-processes", 3, "--num-out-files", 6, "--seed", 1)
    sizes = {n: os.path.getsize(str(out / n)) for n in os.listdir(str(out))}
    assert sorted(sizes) == sorted("pretrain_data.tfrecord-%d-of-6" % i for i in range(6))
    assert all(sizes["pretrain_data.tfrecord-%d-of-6" % i] > 0 for i in (0, 3))
    assert all(sizes["pretrain_data.tfrecord-%d-of-6" % i] == 0 for i in (1, 2, 4, 5))


def test_foreign_file_in_output_dir_is_refused(tmp_path, fortunes_dir):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    proc = build(fortunes_dir, out, check=False)
    assert proc.returncode == 2
    assert proc.stderr.startswith(PROG) and "notes.txt" in proc.stderr
    assert "not pretraining shards" in proc.stderr
    assert os.listdir(str(out)) == ["notes.txt"] and (out / "notes.txt").read_text() == "mine"


def aside_dirs(parent):
    return [n for n in os.listdir(str(parent)) if n.startswith(".")]


def test_rerun_replaces_only_its_shards(tmp_path, fortunes_dir):
    out = tmp_path / "out"
    build(fortunes_dir, out, "--num-out-files", 4, "--seed", 1)
    assert len(os.listdir(str(out))) == 4
    build(fortunes_dir, out, "--num-out-files", 3, "--seed", 1)
    assert sorted(os.listdir(str(out))) == ["pretrain_data.tfrecord-%d-of-3" % i for i in range(3)]
    assert aside_dirs(tmp_path) == []


def test_failed_run_keeps_previous_output(tmp_path, fortunes_dir):
    out = tmp_path / "out"
    build(fortunes_dir, out, "--num-out-files", 4, "--seed", 1)
    before = shard_bytes(out)
    blank = tmp_path / "blank"
    blank.mkdir()
    (blank / "spaces.txt").write_text("   \n\t\n \n")
    proc = build(blank, out, "--num-out-files", 4, check=False)
    assert proc.returncode == 2 and proc.stderr.startswith(PROG)
    assert "no readable text" in proc.stderr and "Traceback" not in proc.stderr
    assert shard_bytes(out) == before
    assert aside_dirs(tmp_path) == []


@pytest.mark.slow
def test_killed_run_leaves_previous_complete_set(tmp_path, fortunes_dir):
    out = tmp_path / "out"
    build(fortunes_dir, out, "--num-out-files", 5, "--seed", 1)
    before = shard_bytes(out)
    big = tmp_path / "big"
    big.mkdir()
    with gzip.open(DEBIAN_REFERENCE_TXT, "rb") as f:
        (big / "reference.txt").write_bytes(f.read() * 3)
    proc = subprocess.Popen([PY, BUILDER, "--corpus-dir", str(big), "--vocab-file", VOCAB_8K,
                             "--output-dir", str(out), "--num-out-files", "5",
                             "--tokenizer", "plain"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 60
        while not aside_dirs(tmp_path) and time.time() < deadline:
            time.sleep(0.05)
        assert aside_dirs(tmp_path), "the builder never started writing"
        time.sleep(0.5)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert shard_bytes(out) == before
    assert aside_dirs(tmp_path)                 # the killed run's partial shards, aside
    build(fortunes_dir, out, "--num-out-files", 5, "--seed", 2)
    assert aside_dirs(tmp_path) == []           # cleaned up by the next run
    assert shard_bytes(out) != before


# ---- bad input -------------------------------------------------------------------------

def bad_vocab(tmp_path, transform):
    tokens = [line.rstrip("\n") for line in open(VOCAB_8K, encoding="utf-8")]
    path = tmp_path / "vocab.txt"
    path.write_text("".join(t + "\n" for t in transform(tokens)), encoding="utf-8")
    return path


BAD_INPUTS = {
    "corpus-missing": (lambda t, f: (t / "nowhere", VOCAB_8K, []), "does not exist"),
    "corpus-empty": (lambda t, f: (mkdir(t / "empty"), VOCAB_8K, []), "is empty"),
    "corpus-empty-files": (lambda t, f: (files(t / "c", {"a.txt": b"", "b.txt": b""}), VOCAB_8K, []),
                           "no readable text"),
    "corpus-binary": (lambda t, f: (files(t / "c", {"a.bin": b"\xff\xfe\x80" * 100}), VOCAB_8K, []),
                      "no readable text"),
    "corpus-subdirectory": (lambda t, f: (mkdir(mkdir(t / "c") / "sub") and t / "c", VOCAB_8K, []),
                            "not a file"),
    "vocab-missing": (lambda t, f: (f, t / "none.txt", []), "does not exist"),
    "vocab-empty": (lambda t, f: (f, files(t / "v", {"vocab.txt": b""}) / "vocab.txt", []),
                    "is empty"),
    "vocab-duplicate": (lambda t, f: (f, bad_vocab(t, lambda v: v[:9] + v[8:]), []),
                        "(lines 9 and 10)"),
    "vocab-lacks-mask": (lambda t, f: (f, bad_vocab(t, lambda v: [x for x in v if x != "[MASK]"]), []),
                         "lacks [MASK]"),
    "vocab-lacks-pad-unk": (lambda t, f: (f, bad_vocab(t, lambda v: v[2:]), []),
                            "lacks [PAD] [UNK]"),
    "max-seq-length-4": (lambda t, f: (f, VOCAB_8K, ["--max-seq-length", 4]), "at least 5"),
    "num-processes-0": (lambda t, f: (f, VOCAB_8K, ["--num-processes", 0]), "at least 1"),
}


def mkdir(path):
    path.mkdir()
    return path


def files(directory, contents):
    directory.mkdir()
    for name, data in contents.items():
        (directory / name).write_bytes(data)
    return directory


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_is_one_clear_line(case, tmp_path, fortunes_dir):
    make, expected = BAD_INPUTS[case]
    corpus, vocab, flags = make(tmp_path, fortunes_dir)
    out = tmp_path / "out"
    proc = build(corpus, out, *flags, check=False, vocab=vocab)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith(PROG)]
    assert len(errors) == 1 and expected in errors[0], proc.stderr
    assert all(line.startswith("warning: ") for line in lines if line not in errors)
    assert not out.exists() and aside_dirs(tmp_path) == []


def test_invalid_utf8_is_dropped_and_counted(tmp_path, fortunes_dir):
    with open(os.path.join(fortunes_dir, "vida.fortunes"), "rb") as f:
        text = f.read()
    # inserted where lines begin, so that no inserted byte can complete a character
    p1, p2 = text.index(b"\n", 1000) + 1, text.index(b"\n", 20000) + 1
    broken = text[:p1] + b"\xff\xfe" + text[p1:p2] + b"\xc3" + text[p2:]
    bad, good = files(tmp_path / "bad", {"t.txt": broken}), files(tmp_path / "good", {"t.txt": text})
    proc = build(bad, tmp_path / "out-bad", "--seed", 9, "--num-out-files", 2)
    assert "dropped 3 invalid UTF-8 byte(s)" in proc.stderr
    assert "3 invalid UTF-8 byte(s) dropped" in proc.stdout
    build(good, tmp_path / "out-good", "--seed", 9, "--num-out-files", 2)
    assert shard_bytes(tmp_path / "out-bad") == shard_bytes(tmp_path / "out-good")
