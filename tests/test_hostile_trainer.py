"""Hostile input to the trainer, its hparams, the corpus encoding, the vocab check, convert
and verify: one line each, a non-zero exit, never a traceback, never a hang.

- A TF_CONFIG cluster whose other host never starts: the trainer says whom it waits for, how
  long and how to stop, then stops after PEER_TIMEOUT_S naming the missing host.
- TF_CONFIG's shape: a boolean index, numbers for addresses, ports out of range ...
- Integers beyond int64, JSON nested thousands deep, a million CPU replicas.
- CORPUS_ENCODING naming a codec that is no text encoding (rot13, hex, base64).
- VOCAB=train: advice that fits the numbers.
- A full disk (a real tmpfs) under make convert's export and verify's TF logits; a quota.
"""
import errno
import json
import os
import shutil
import socket
import subprocess
import sys
import time

import pytest

from conftest import (ELECTRA_DIR, FORTUNES_SHARED, PY, REPO, VOCAB_8K, assert_one_line_error,
                      module, one_fortunes_file_input, run)
from convert_support import MODEL_NAME, TINY_CKPT_DIR, TINY_HPARAMS
from test_hostile_input import small_filesystem

TINY = dict(json.load(open(TINY_HPARAMS)), num_train_steps=4, iterations_per_loop=1)


def electra(name):
    if ELECTRA_DIR not in sys.path:
        sys.path.insert(0, ELECTRA_DIR)
    import importlib
    return importlib.import_module(name)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """vocab.txt and the TFRecords of one fortunes file (the trainer checks both first)."""
    return one_fortunes_file_input(str(tmp_path_factory.mktemp("trainer-data")), 128)


def trainer(data_dir, tf_config, **env):
    return run([PY, "run_pretraining.py", "--data-dir", data_dir, "--model-name", "mw",
                "--hparams", json.dumps(TINY)], check=False, cwd=ELECTRA_DIR, timeout=120,
               env=dict(TF_CONFIG=json.dumps(tf_config), CUDA_VISIBLE_DEVICES="", **env))


# ---- a host of the cluster that never comes --------------------------------------------------

@pytest.mark.slow
def test_a_peer_that_never_comes_is_said_then_one_line_after_the_bound(data_dir):
    cluster = ["127.0.0.1:%d" % free_port(), "127.0.0.1:%d" % free_port()]
    start = time.time()
    proc = trainer(data_dir, {"cluster": {"worker": cluster},
                              "task": {"type": "worker", "index": 0}}, PEER_TIMEOUT_S="3")
    took = time.time() - start
    # Said before it waits: whom (the address), how long, how to change it, how to stop.
    assert "Waiting for the other host(s) of the cluster: worker 1 at %s (at most 3 s, " \
           "PEER_TIMEOUT_S=N changes it; Ctrl-C stops)" % cluster[1] in proc.stdout, proc.stdout
    # TF 1.15's server cannot bind one address: said, with what to do.
    assert "listens on port %s of every interface" % cluster[0].split(":")[1] in proc.stdout
    assert_one_line_error(proc, "worker 1 at %s did not come within 3 s (PEER_TIMEOUT_S)"
                          % cluster[1], "PEER_TIMEOUT_S=SECONDS",
                          program="run_pretraining.py", status=2)
    assert took < 60, took   # before: more than 600 s with nothing said
    assert not os.path.exists(os.path.join(data_dir, "models", "mw", "checkpoint"))


def test_a_boolean_index_in_tf_config_is_one_line(data_dir):
    cluster = ["127.0.0.1:%d" % free_port(), "127.0.0.1:%d" % free_port()]
    proc = trainer(data_dir, {"cluster": {"worker": cluster},
                              "task": {"type": "worker", "index": True}})
    assert_one_line_error(proc, "TF_CONFIG task index true is not a task of the cluster's 2 "
                          "worker(s)", program="run_pretraining.py", status=2)


def tf_config_error(monkeypatch, value):
    distribute = electra("distribute")
    monkeypatch.setenv("TF_CONFIG", value if isinstance(value, str) else json.dumps(value))
    with pytest.raises(distribute.DistributeError) as error:
        distribute.tf_config()
    return str(error.value)


def short_id(value):
    return json.dumps(value)[:40] if not isinstance(value, str) else value[:40]


def config_of(workers, task=None):
    return {"cluster": {"worker": workers}, "task": task or {"type": "worker", "index": 0}}


@pytest.mark.parametrize("value,words", [
    (config_of(["a:1", "b:2"], {"type": "worker", "index": True}), "task index true"),
    (config_of(["a:1", "b:2"], {"type": "worker", "index": 1.0}), "task index 1.0"),
    (config_of(["a:1", "b:2"], {"type": "worker", "index": 2}), "task index 2 is not a task"),
    (config_of(["a:1", "b:2"], {"type": "worker", "index": -1}), "task index -1"),
    (config_of(["a:1", "b:2"], {"type": ["worker"], "index": 0}), 'task type ["worker"]'),
    (config_of(["a:1", "b:2"], {"type": "chief", "index": 0}), 'task type "chief" is not a job'),
    (config_of([1, 2]), "cluster worker 0 is 1; each address is a string \"host:port\""),
    (config_of(["a:0", "b:2"]), 'cluster worker 0 is "a:0"'),
    (config_of(["a:1", "b:65536"]), 'cluster worker 1 is "b:65536"'),
    (config_of(["a", "b:2"]), 'cluster worker 0 is "a"'),
    (config_of(["a:1", "a:1"]), "names a:1 for both worker 0 and worker 1"),
    (config_of("a:1"), 'cluster "worker" is "a:1"; give a list'),
    (config_of([]), 'cluster "worker" is []'),
    ({"cluster": {"chief": ["a:1", "b:2"]}, "task": {"type": "chief"}}, "2 chiefs"),
    ({"cluster": {"ps": ["a:1"]}, "task": {"type": "ps"}}, "cluster has ps job(s)"),
    ("[" * 3000 + "]" * 3000, "TF_CONFIG is not valid JSON (maximum recursion depth"),
    ("{", "TF_CONFIG is not valid JSON"),
], ids=short_id)
def test_tf_config_of_the_wrong_shape_is_one_line(monkeypatch, value, words):
    assert words in tf_config_error(monkeypatch, value)


def test_tf_config_of_the_right_shape_passes(monkeypatch):
    distribute = electra("distribute")
    for value in (config_of(["[::1]:2222", "h2.example:2222"]),
                  {"cluster": {"chief": ["a:1"], "worker": ["b:1"]},
                   "task": {"type": "worker", "index": 0}}):
        monkeypatch.setenv("TF_CONFIG", json.dumps(value))
        assert distribute.tf_config() == value


def test_the_wait_ends_when_every_peer_listens_and_says_so():
    distribute = electra("distribute")
    with socket.socket() as peer:
        peer.bind(("127.0.0.1", 0))
        peer.listen(1)
        cluster = {"worker": ["127.0.0.1:%d" % free_port(),
                              "127.0.0.1:%d" % peer.getsockname()[1]]}
        said = []
        distribute.wait_for_peers({"cluster": cluster, "task": {"type": "worker", "index": 0}},
                                  said.append, timeout_s=10)
    assert said[0].startswith("Waiting for the other host(s) of the cluster: worker 1 at %s"
                              % cluster["worker"][1])
    assert said[-1].startswith("All 2 hosts are up")


@pytest.mark.parametrize("own,words", [
    ("192.0.2.1", "but 192.0.2.1 is not an address of this host"),   # TEST-NET-1
    ("in-use", "is in use by another program"),
])
def test_a_task_address_this_host_cannot_listen_on_is_one_line(own, words):
    distribute = electra("distribute")
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        address = "127.0.0.1:%d" % holder.getsockname()[1] if own == "in-use" \
            else "%s:%d" % (own, free_port())
        config_json = {"cluster": {"worker": [address, "127.0.0.1:%d" % free_port()]},
                       "task": {"type": "worker", "index": 0}}
        with pytest.raises(distribute.DistributeError, match=words):
            distribute.wait_for_peers(config_json, lambda line: None, timeout_s=1)


@pytest.mark.parametrize("value", ["abc", "0", "-5", "inf", "nan"])
def test_peer_timeout_that_is_no_number_of_seconds_is_one_line(monkeypatch, value):
    distribute = electra("distribute")
    monkeypatch.setenv("PEER_TIMEOUT_S", value)
    with pytest.raises(distribute.DistributeError, match="PEER_TIMEOUT_S=%s is not a number "
                                                         "of seconds" % value):
        distribute.peer_timeout_s()


# ---- hparams: integers beyond int64, JSON nested too deep, too many replicas --------------

DEEP = "[" * 3000 + "]" * 3000


@pytest.mark.parametrize("overrides,words", [
    ('{"num_train_steps": 12345678901234567890123}',
     "hparam num_train_steps = 12345678901234567890123; it must be at most 2**63-1"),
    ('{"model_hparam_overrides": {"hidden_size": 99999999999999999999999}}',
     "model_hparam_overrides hidden_size = 99999999999999999999999; it must be at most 2**63-1"),
    ('{"learning_rate": 100000000000000000000000000000}', "learning_rate = 1000"),
    ('{"model_hparam_overrides": %s}' % DEEP, "nests arrays or objects too deeply to read"),
    ('{"num_train_steps": %s}' % ("[" * 900 + "]" * 900),
     "hparam num_train_steps = [[[[[[[[[[[["),
    ('{"num_cpu_replicas": 1000000}', "hparam num_cpu_replicas = 1000000; it must be zero or "
                                      "more and at most 64"),
    ('{"num_gpus": 65}', "hparam num_gpus = 65; it must be at least 1 and at most 64"),
], ids=short_id)
def test_hparams_beyond_any_sane_value_are_one_line(tmp_path, overrides, words):
    shutil.copy(VOCAB_8K, str(tmp_path / "vocab.txt"))
    proc = module("hparams", "--data-dir", str(tmp_path), "--preset", "demo-cpu",
                  "--overrides", overrides, check=False)
    line = assert_one_line_error(proc, words, program="hparams", status=2)
    assert len(line) < 600, line   # a 3000-deep value is not printed whole
    assert not (tmp_path / "hparams.json").exists()


@pytest.mark.slow
def test_the_trainer_refuses_the_same_values_in_one_line(tmp_path):
    proc = run([PY, "run_pretraining.py", "--data-dir", str(tmp_path), "--model-name", "m",
                "--hparams", '{"num_train_steps": 12345678901234567890123}'], check=False,
               cwd=ELECTRA_DIR)
    assert_one_line_error(proc, "num_train_steps = 12345678901234567890123; it must be at "
                          "most 2**63-1", program="run_pretraining.py", status=2)
    proc = run([PY, "run_pretraining.py", "--data-dir", str(tmp_path), "--model-name", "m",
                "--hparams", DEEP], check=False, cwd=ELECTRA_DIR)
    assert_one_line_error(proc, "--hparams nests arrays or objects too deeply",
                          program="run_pretraining.py", status=2)


# ---- CORPUS_ENCODING that is no text encoding -------------------------------------------

@pytest.mark.parametrize("value,words", [
    ("rot13", "CORPUS_ENCODING=rot13 is not a text encoding (Python's rot-13 codec"),
    ("hex", "CORPUS_ENCODING=hex is not a text encoding"),
    ("base64", "CORPUS_ENCODING=base64 is not a text encoding"),
    ("zlib", "CORPUS_ENCODING=zlib is not a text encoding"),
    ("idna", "CORPUS_ENCODING=idna is not a single-byte encoding that keeps ASCII"),
    ("punycode", "CORPUS_ENCODING=punycode is not a single-byte encoding"),
    ("unicode_escape", "CORPUS_ENCODING=unicode_escape is not a single-byte encoding"),
    ("raw_unicode_escape", "CORPUS_ENCODING=raw_unicode_escape is not a single-byte"),
    ("utf-7", "CORPUS_ENCODING=utf-7 is not a single-byte encoding"),
])
def test_corpus_encoding_that_is_no_text_encoding_is_one_line(value, words):
    from wrapper import corpus
    from wrapper.cli import UserError
    with pytest.raises(UserError, match=words.replace("(", r"\(")):
        corpus.check_encoding(value)


def test_corpus_encoding_rot13_through_the_command_line(tmp_path):
    proc = module("corpus", "--data-dir", str(tmp_path / "d"), "--corpus",
                  os.path.join(FORTUNES_SHARED, "refranes.fortunes"), check=False,
                  env={"CORPUS_ENCODING": "rot13"})
    assert_one_line_error(proc, "CORPUS_ENCODING=rot13 is not a text encoding",
                          "use utf-8 (the default), latin1 or cp1252", program="corpus",
                          status=2)
    assert not (tmp_path / "d" / "corpus").exists()


def test_the_encodings_that_read_spanish_still_pass():
    from wrapper import corpus
    assert [corpus.check_encoding(e) for e in ("", "utf8", "latin1", "cp1252", "iso8859-15")] \
        == ["utf-8", "utf-8", "iso8859-1", "cp1252", "iso8859-15"]


# ---- VOCAB=train: advice that fits the numbers ---------------------------------------------

def vocab_train(tmp_path, lines):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "part-00000-of-00001.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return module("vocab", "--data-dir", str(tmp_path), "--vocab", "train", "--vocab-size",
                  "8000", check=False)


def test_a_small_corpus_whose_words_are_all_whole_tokens_is_a_usable_vocab(tmp_path):
    """Every word of the sample is a whole token (no '##' piece used, 0 [UNK]): refused
    before, with "try a larger VOCAB_SIZE"; the vocab has its '##' pieces and suits BERT."""
    proc = vocab_train(tmp_path, ["Los pájaros están hablando", ""] * 20)
    assert proc.returncode == 0, proc.stderr
    assert "0 [UNK], 0 '##' pieces" in proc.stdout
    tokens = (tmp_path / "vocab.txt").read_text(encoding="utf-8").split("\n")
    assert any(t.startswith("##") for t in tokens)


def test_unknown_characters_get_advice_that_fits(tmp_path):
    with open(os.path.join(FORTUNES_SHARED, "refranes.fortunes"), encoding="utf-8") as f:
        spanish = f.read().splitlines()[:300]
    cjk = [chr(0x4e00 + i) for i in range(3000)]   # each once: past the trainer's 1000
    proc = vocab_train(tmp_path, spanish + [" ".join(cjk[i:i + 20])
                                            for i in range(0, 3000, 20)])
    line = assert_one_line_error(proc, "[UNK]", "the WordPiece trainer keeps the 1000 most "
                                 "frequent characters", "a larger VOCAB_SIZE does not help",
                                 program="vocab", status=2)
    assert "try a larger VOCAB_SIZE" not in line
    assert not (tmp_path / "vocab.txt").exists()


def test_words_longer_than_bert_reads_get_advice_that_fits(tmp_path):
    with open(os.path.join(FORTUNES_SHARED, "refranes.fortunes"), encoding="utf-8") as f:
        spanish = f.read().splitlines()[:100]
    proc = vocab_train(tmp_path, spanish + ["https://example.org/" + "a" * 120 + str(i)
                                            for i in range(60)])
    assert_one_line_error(proc, "makes any word longer than 100 characters [UNK]",
                          "clean them out of it", program="vocab", status=2)


# ---- a full disk, a quota -------------------------------------------------------------------

def data_dir_on(small):
    """A run of the tiny checkpoint in `small`, the checkpoint itself linked from the repo."""
    root = os.path.join(small, "d")
    model_dir = os.path.join(root, "models", MODEL_NAME)
    os.makedirs(model_dir)
    shutil.copy(VOCAB_8K, os.path.join(root, "vocab.txt"))
    shutil.copy(TINY_HPARAMS, os.path.join(root, "hparams.json"))
    for name in os.listdir(TINY_CKPT_DIR):
        os.symlink(os.path.join(TINY_CKPT_DIR, name), os.path.join(model_dir, name))
    return root


def test_convert_on_a_full_disk_is_one_line(tmp_path):
    with small_filesystem(tmp_path / "small", "2m") as small:
        root = data_dir_on(small)
        proc = module("hf_export", "--data-dir", root, "--model-name", MODEL_NAME, check=False)
        hf = os.path.join(root, "models", MODEL_NAME, "hf")
        assert_one_line_error(proc, "no space left on the device writing the discriminator's "
                              "Hugging Face model in %s" % hf, "free some space there",
                              "%s/discriminator was left as it was" % hf,
                              program="hf_export", status=2)
        assert os.listdir(hf) == []          # no partial directory left


@pytest.mark.slow
def test_verify_logits_on_a_full_disk_are_one_line_and_not_in_the_model_dir(tmp_path):
    with small_filesystem(tmp_path / "small", "2m") as small:
        root = data_dir_on(small)
        proc = module("tf_logits", "--data-dir", root, "--model-name", MODEL_NAME,
                      check=False)
        scratch = os.path.join(root, ".cache", "verify", MODEL_NAME)
        assert_one_line_error(proc, "no space left on the device writing the TF logits in %s"
                              % scratch, program="tf_logits", status=2)
        assert "Exception ignored" not in proc.stderr
        assert os.listdir(scratch) == []     # no partial file left
        assert not os.path.exists(os.path.join(root, "models", MODEL_NAME, "verify"))


def test_the_trainer_says_a_quota_as_it_says_a_full_disk(tmp_path):
    """EDQUOT (no quota can be set on this tmpfs): the trainer's own classification, on the
    errors a write raises, an OSError and TensorFlow's error carrying the system's text."""
    run_pretraining = electra("run_pretraining")
    configure = electra("configure_pretraining")
    tf = run_pretraining.tf
    config = configure.PretrainingConfig("m", str(tmp_path))
    os.makedirs(config.model_dir)
    path = os.path.join(config.model_dir, "model.ckpt-5.index")
    for number, words in ((errno.EDQUOT, "the disk quota is exceeded in %s ("),
                          (errno.ENOSPC, "no space left on the device in %s (")):
        for error in (OSError(number, os.strerror(number), path),
                      tf.errors.ResourceExhaustedError(
                          None, None, "%s; %s" % (path, os.strerror(number)))):
            assert run_pretraining.disk_full_errno(error) == number
            assert run_pretraining.disk_full_text(config, error).startswith(
                words % config.model_dir)
    assert run_pretraining.disk_full_errno(OSError(errno.EACCES, "Permission denied")) is None
