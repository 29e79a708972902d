"""No stage deletes a file it did not create: each stage's output directory holding a
foreign file is refused with one line, and the file (and everything else) is left as it was.
"""
import json
import os
import shutil

import pytest

from conftest import one_error_line, CONFORMANCE, FORTUNES_SHARED, PY, REPO, VOCAB_8K, run
from reliability_support import tree_digest

ELECTRA = os.path.join(REPO, "third_party", "electra")
NOTE = "my notes, not the pipeline's\n"


def make(target, data_dir, **variables):
    args = ["make", "--no-print-directory", "-C", REPO, target, "DATA_DIR=%s" % data_dir]
    return run(args + ["%s=%s" % kv for kv in sorted(variables.items())], check=False,
               timeout=300)


def our_line(proc):
    """The one line our stage wrote (make adds its own `make: *** ...` line after it)."""
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [l for l in proc.stderr.splitlines() if l.strip() and not l.startswith("make")]
    assert len(lines) == 1, proc.stderr
    return lines[0]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """corpus/, vocab.txt, hparams.json, pretrain_tfrecords/ (32 tokens) of real text."""
    d = tmp_path_factory.mktemp("foreign-data")
    shutil.copy(VOCAB_8K, str(d / "vocab.txt"))
    (d / "hparams.json").write_text(json.dumps({
        "do_train": True, "do_eval": False, "model_size": "small", "do_lower_case": False,
        "vocab_size": 8000, "max_seq_length": 32}) + "\n")
    run([PY, "-m", "wrapper.corpus", "--data-dir", str(d), "--corpus",
         os.path.join(FORTUNES_SHARED, "amistad.fortunes"), "--train-size", "1000000"])
    run([PY, os.path.join(ELECTRA, "build_pretraining_dataset.py"), "--corpus-dir",
         str(d / "corpus"), "--vocab-file", str(d / "vocab.txt"), "--output-dir",
         str(d / "pretrain_tfrecords"), "--max-seq-length", "32", "--no-lower-case",
         "--seed", "1", "--num-out-files", "2"], timeout=300)
    return d


def plant(directory, name="notes.txt"):
    os.makedirs(str(directory), exist_ok=True)
    path = os.path.join(str(directory), name)
    with open(path, "w") as f:
        f.write(NOTE)
    return path


def assert_untouched(path, before):
    with open(path) as f:
        assert f.read() == NOTE
    assert tree_digest(os.path.dirname(path)) == before


def test_make_corpus_refuses_corpus_dir_holding_a_foreign_file(tmp_path):
    data_dir = tmp_path / "data"
    note = plant(data_dir / "corpus")
    before = tree_digest(os.path.dirname(note))
    proc = make("corpus", data_dir, CORPUS=os.path.join(FORTUNES_SHARED, "arte.fortunes"),
                TRAIN_SIZE="1000")
    line = our_line(proc)
    assert line == ("corpus: error: corpus directory %s holds files this stage did not write "
                    "(notes.txt); move them away or choose another directory"
                    % (data_dir / "corpus")), line
    assert_untouched(note, before)
    assert not (data_dir / ".stages" / "corpus.done").exists()


def test_builder_refuses_output_dir_holding_a_foreign_file(data_dir, tmp_path):
    """The reference wipes --output-dir; ours refuses (make pretrain-data and directly)."""
    work = tmp_path / "data"
    shutil.copytree(str(data_dir), str(work))
    note = plant(work / "pretrain_tfrecords")
    before = tree_digest(os.path.dirname(note))
    line = our_line(make("pretrain-data", work, NUM_PROCESSES="1"))
    assert line.startswith("build_pretraining_dataset.py: error: --output-dir %s holds 1 entry "
                           "that is not a pretraining shard" % (work / "pretrain_tfrecords")) \
        or "notes.txt" in line, line
    assert "notes.txt" in line
    assert_untouched(note, before)
    assert not (work / ".stages" / "pretrain-data.done").exists()


def test_make_pretrain_refuses_model_dir_it_did_not_start(data_dir, tmp_path):
    work = tmp_path / "data"
    shutil.copytree(str(data_dir), str(work))
    note = plant(work / "models" / "m")
    before = tree_digest(os.path.dirname(note))
    line = our_line(make("pretrain", work, MODEL_NAME="m"))
    assert line.startswith("pretrain-m: error: %s holds files that this pipeline did not "
                           "start" % os.path.join(str(work), "models", "m")) or \
        "models/m" in line, line
    assert_untouched(note, before)


def test_trainer_debug_mode_keeps_foreign_files_in_the_model_dir(data_dir, tmp_path):
    """The reference's debug mode wipes the whole model directory; ours never deletes a file
    the trainer did not write (here run_pretraining.py directly, as the reference is run)."""
    work = tmp_path / "data"
    shutil.copytree(str(data_dir), str(work))
    model_dir = work / "models" / "m"
    note = plant(model_dir)
    hf_file = plant(model_dir / "hf" / "discriminator", "config.json")
    hparams = {"do_train": True, "do_eval": False, "debug": True, "vocab_size": 8000,
               "max_seq_length": 32, "num_train_steps": 2, "do_lower_case": False,
               "model_hparam_overrides": {"hidden_size": 32, "num_hidden_layers": 1}}
    proc = run([PY, "run_pretraining.py", "--data-dir", str(work), "--model-name", "m",
                "--hparams", json.dumps(hparams)], check=False, cwd=ELECTRA, timeout=600)
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    for path in (note, hf_file):
        with open(path) as f:
            assert f.read() == NOTE, path
    if proc.returncode != 0:   # refusing is as good as keeping: one clear line
        assert "notes.txt" in one_error_line(proc.stderr) or "hf" in proc.stderr


def test_make_convert_refuses_hf_dir_holding_a_foreign_file(tmp_path):
    data_dir = tmp_path / "data"
    model_dir = data_dir / "models" / "m"
    shutil.copytree(os.path.join(CONFORMANCE, "converter", "tiny-ckpt"), str(model_dir))
    shutil.copy(VOCAB_8K, str(data_dir / "vocab.txt"))
    shutil.copy(os.path.join(CONFORMANCE, "converter", "tiny-hparams.json"),
                str(data_dir / "hparams.json"))
    note = plant(model_dir / "hf" / "generator")
    before = tree_digest(os.path.dirname(note))
    line = our_line(make("convert", data_dir, MODEL_NAME="m"))
    assert line.endswith("hf_export: error: Hugging Face directory %s holds files this stage "
                         "did not write (notes.txt); move them away or choose another directory"
                         % (model_dir / "hf" / "generator")), line
    assert_untouched(note, before)
    assert not (model_dir / "hf" / "discriminator").exists(), "refused before writing anything"


def test_convert_refuses_dump_dir_holding_a_foreign_file(tmp_path):
    out = tmp_path / "out"
    note = plant(out)
    before = tree_digest(str(out))
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"vocab_size": 8000, "embedding_size": 128,
                                  "hidden_size": 64, "num_hidden_layers": 2,
                                  "num_attention_heads": 1, "intermediate_size": 256}))
    proc = run([PY, "-m", "wrapper.convert", "--tf_checkpoint_path",
                os.path.join(CONFORMANCE, "converter", "tiny-ckpt", "model.ckpt-40"),
                "--electra_config_file", str(config), "--pytorch_dump_path",
                str(out / "pytorch_model.bin")], check=False, timeout=300)
    assert proc.returncode == 2
    assert "notes.txt" in one_error_line(proc.stderr)
    assert_untouched(note, before)


@pytest.mark.parametrize("target,name,variables", [
    ("hparams", "hparams.json", {"PRESET": "tutorial"}),
    ("vocab", "vocab.txt", {"VOCAB": VOCAB_8K}),
])
def test_hand_written_data_files_are_not_overwritten(tmp_path, target, name, variables):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    shutil.copy(VOCAB_8K, str(data_dir / "vocab.txt"))
    path = data_dir / name
    if name == "hparams.json":
        path.write_text('{"do_train": true, "num_train_steps": 7}\n')
    else:
        path.write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nhola\n")
    before = path.read_bytes()
    line = our_line(make(target, data_dir, **variables))
    assert line.startswith("%s: error: %s was not written by this pipeline" % (target, path)), \
        line
    assert path.read_bytes() == before


def test_make_corpus_naming_no_file_is_one_line(tmp_path):
    data_dir = tmp_path / "data"
    line = our_line(make("corpus", data_dir, CORPUS="/nonexistent/es.txt"))
    assert line == "corpus: error: CORPUS=/nonexistent/es.txt: no such file or directory", line
    assert not (data_dir / "corpus").exists()
