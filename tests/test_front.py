"""The front of the pipeline: corpus, download, vocab, hparams and the stage records.

Real Spanish text (Debian's fortunes-es and debian-reference-es), a real local HTTP server
for the download, real `tokenizers` training and the trainer's own hparam checks.
"""
import gzip
import http.server
import json
import os
import re
import shutil
import socket
import threading

import pytest

from conftest import PY, REPO, VOCAB_8K, run

MAKE = ["make", "--no-print-directory", "-C", REPO]
TUTORIAL_AS_PUBLISHED = {
    "do_train": "true", "do_eval": "false", "model_size": "small", "do_lower_case": "false",
    "vocab_size": 119547, "num_train_steps": 100, "save_checkpoints_steps": 100,
    "train_batch_size": 32}


def module(name, *args, **kw):
    return run([PY, "-m", "wrapper." + name] + list(args), cwd=REPO, **kw)


def assert_one_line_error(proc, *words):
    """Non-zero exit, no traceback, and one stderr line from our code naming `words`."""
    assert proc.returncode != 0, proc.stdout
    assert "Traceback" not in proc.stderr, proc.stderr
    ours = [l for l in proc.stderr.splitlines() if ": error: " in l and not l.startswith("make")]
    assert len(ours) == 1, proc.stderr
    for word in words:
        assert word in ours[0], ours[0]
    return ours[0]


def read_parts(corpus_dir):
    names = sorted(os.listdir(corpus_dir))
    return names, [open(os.path.join(corpus_dir, n), encoding="utf-8").read() for n in names]


def test_make_help_documents_the_variables():
    text = run(MAKE + ["help"]).stdout
    for name in ["DATA_DIR", "MODEL_NAME", "PRESET", "HPARAMS_OVERRIDES", "CORPUS", "TRAIN_SIZE",
                 "VOCAB", "VOCAB_SIZE", "NUM_PROCESSES", "ELECTRA_DIR", "SENTENCE"]:
        assert "  %s=" % name in text, name
    for target in ["demo", "corpus", "vocab", "hparams", "pretrain-data", "pretrain", "convert",
                   "verify", "predict", "tensorboard", "all"]:
        assert "  %s " % target in text, target


# ---- corpus ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def spanish_corpus(tmp_path_factory, debian_fortunes_dir, debian_reference_lines):
    """DATA_DIR with the normalized Debian text (fortunes + Debian Reference), 2 files."""
    from conftest import DEBIAN_REFERENCE_TXT
    data = str(tmp_path_factory.mktemp("front") / "data")
    proc = module("corpus", "--data-dir", data, "--corpus",
                  debian_fortunes_dir + ":" + DEBIAN_REFERENCE_TXT, "--num-files", "2")
    return data, proc


def test_corpus_format_documents_and_split(spanish_corpus):
    data, proc = spanish_corpus
    names, texts = read_parts(os.path.join(data, "corpus"))
    assert names == ["part-00000-of-00002.txt", "part-00001-of-00002.txt"]
    sizes = [len(t.encode("utf-8")) for t in texts]
    assert min(sizes) > 0.8 * max(sizes), sizes         # both builder processes get work
    for text in texts:
        lines = text.split("\n")
        assert text.endswith("\n\n")                      # every file ends a document
        assert "%" not in lines                           # fortune separators became breaks
        assert all(l == l.strip() for l in lines)
        assert "\n\n\n" not in text                       # one blank line between documents
    stats = json.load(open(os.path.join(data, "corpus-stats.json")))
    all_lines = [l for t in texts for l in t.split("\n")[:-1]]
    assert stats["lines"] == sum(1 for l in all_lines if l)
    assert stats["documents"] == sum(1 for l in all_lines if not l)
    assert stats["bytes"] == sum(sizes) and stats["dropped_invalid_bytes"] == 0
    assert stats["documents"] > 10000                      # one per fortune and paragraph
    assert "La amistad es una igualdad armónica." in all_lines
    assert "corpus: %d lines in %d documents" % (stats["lines"], stats["documents"]) in proc.stdout


def test_corpus_keeps_first_train_size_lines(tmp_path, debian_fortunes_dir):
    data = str(tmp_path / "d")
    module("corpus", "--data-dir", data, "--corpus", debian_fortunes_dir, "--train-size", "100")
    stats = json.load(open(os.path.join(data, "corpus-stats.json")))
    first = sorted(n for n in os.listdir(debian_fortunes_dir) if n.endswith(".fortunes"))[0]
    with open(os.path.join(debian_fortunes_dir, first), encoding="utf-8") as f:
        head = [l.strip() for l in f.read().splitlines()[:100]]
    want = [l for l in head if l and l != "%"]
    got = [l for t in read_parts(os.path.join(data, "corpus"))[1] for l in t.split("\n") if l]
    assert stats["input_lines"] == 100 and got == [" ".join(l.split()) for l in want]


def test_corpus_drops_and_counts_invalid_utf8(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_bytes(b"caf\xe9 con leche\n\nEl ni\xc3\xb1o \xff\xfejuega.\n")
    with gzip.open(str(src / "b.txt.gz"), "wb") as f:
        f.write("Los pájaros están cantando.\n".encode("utf-8") + b"\x80fin\n")
    (src / "ignored.dat").write_bytes(b"\x00\x01")
    data = str(tmp_path / "d")
    module("corpus", "--data-dir", data, "--corpus", str(src), "--num-files", "1")
    text = open(os.path.join(data, "corpus", "part-00000-of-00001.txt"), "rb").read()
    assert text.decode("utf-8") == ("caf con leche\n\nEl niño juega.\n\n"
                                    "Los pájaros están cantando.\nfin\n\n")
    stats = json.load(open(os.path.join(data, "corpus-stats.json")))
    assert stats["dropped_invalid_bytes"] == 4 and stats["documents"] == 3


def test_corpus_splits_one_long_document_between_lines(tmp_path, debian_reference_lines):
    # OpenSubtitles' mono file has no blank lines: one document that must still feed K files.
    lines = [l.strip() for l in debian_reference_lines if l.strip()][:3000]
    source = tmp_path / "subs.txt"
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    data = str(tmp_path / "d")
    module("corpus", "--data-dir", data, "--corpus", str(source), "--num-files", "3")
    names, texts = read_parts(os.path.join(data, "corpus"))
    assert len(names) == 3 and all(t.count("\n") > 800 for t in texts)
    assert [l for t in texts for l in t.split("\n") if l] == [" ".join(l.split()) for l in lines]


def test_corpus_replaces_its_own_output_but_refuses_foreign_files(tmp_path, debian_fortunes_dir):
    data = str(tmp_path / "d")
    module("corpus", "--data-dir", data, "--corpus", debian_fortunes_dir, "--train-size", "50")
    module("corpus", "--data-dir", data, "--corpus", debian_fortunes_dir, "--train-size", "60")
    mine = os.path.join(data, "corpus", "notes.txt")
    open(mine, "w").write("mine")
    proc = module("corpus", "--data-dir", data, "--corpus", debian_fortunes_dir, check=False)
    assert_one_line_error(proc, "notes.txt")
    assert open(mine).read() == "mine"
    assert [n for n in os.listdir(data) if "partial" in n] == []


@pytest.mark.parametrize("value", ["abc", "0", "-5", "1.5", ""])
def test_bad_train_size(tmp_path, value, debian_fortunes_dir):
    proc = module("corpus", "--data-dir", str(tmp_path), "--corpus", debian_fortunes_dir,
                  "--train-size", value, check=False)
    assert_one_line_error(proc, "TRAIN_SIZE must be a positive integer")


def test_bad_train_size_through_make(tmp_path, debian_fortunes_dir):
    proc = run(MAKE + ["corpus", "DATA_DIR=%s" % tmp_path, "CORPUS=" + debian_fortunes_dir,
                       "TRAIN_SIZE=lots"], check=False)
    assert_one_line_error(proc, "TRAIN_SIZE must be a positive integer", "'lots'")
    assert not os.path.exists(os.path.join(str(tmp_path), ".stages", "corpus.done"))


def test_corpus_empty_after_normalization(tmp_path):
    source = tmp_path / "empty.fortunes"
    source.write_text("\n   \n%\n\t\n%\n", encoding="utf-8")
    data = str(tmp_path / "d")
    proc = module("corpus", "--data-dir", data, "--corpus", str(source), check=False)
    assert_one_line_error(proc, "empty after normalization", "CORPUS=")
    assert not os.path.exists(os.path.join(data, "corpus"))
    assert [n for n in os.listdir(data) if n.startswith(".corpus")] == []


# ---- download -------------------------------------------------------------------------------

class RangeHandler(http.server.BaseHTTPRequestHandler):
    """Serves one byte string with HTTP Range support (http.server's own handler has none)."""
    payload = b""
    ranges = []

    def do_GET(self):
        data, status = self.payload, 200
        header = self.headers.get("Range")
        type(self).ranges.append(header)
        if header:
            first, _, last = header[len("bytes="):].partition("-")
            first, last = int(first), int(last) if last else len(data) - 1
            data, status = data[first:last + 1], 206
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def gz_server(debian_reference_lines):
    payload = gzip.compress(("\n".join(debian_reference_lines) + "\n").encode("utf-8"))
    RangeHandler.payload, RangeHandler.ranges = payload, []
    server = http.server.HTTPServer(("127.0.0.1", 0), RangeHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield "http://127.0.0.1:%d/es.txt.gz" % server.server_port, payload
    server.shutdown()
    server.server_close()


def test_download_resumes_part_file_by_range(tmp_path, gz_server):
    url, payload = gz_server
    data = str(tmp_path / "d")
    part = os.path.join(data, "downloads", "es.txt.gz.part")
    os.makedirs(os.path.dirname(part))
    open(part, "wb").write(payload[:len(payload) // 3])      # left by a killed run
    proc = module("corpus", "--data-dir", data, "--url", url, "--train-size", "500")
    assert RangeHandler.ranges == ["bytes=%d-" % (len(payload) // 3)]
    assert "resuming es.txt.gz" in proc.stderr
    assert open(os.path.join(data, "downloads", "es.txt.gz"), "rb").read() == payload
    assert not os.path.exists(part)
    assert json.load(open(os.path.join(data, "corpus-stats.json")))["input_lines"] == 500


def test_download_slice_reads_truncated_gzip(tmp_path, gz_server):
    url, payload = gz_server
    data = str(tmp_path / "d")
    module("corpus", "--data-dir", data, "--url", url, "--download-bytes", "20000")
    assert RangeHandler.ranges == ["bytes=0-19999"]
    sliced = os.path.join(data, "downloads", "es.txt.first-20000.gz")
    assert open(sliced, "rb").read() == payload[:20000]
    stats = json.load(open(os.path.join(data, "corpus-stats.json")))
    assert 500 < stats["lines"] < 5000


def test_download_offline_fails_fast_naming_corpus(tmp_path):
    with socket.socket() as s:            # a port with nobody listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for url in ["http://127.0.0.1:%d/es.txt.gz" % port, "https://opensubtitles.invalid/es.txt.gz"]:
        proc = module("corpus", "--data-dir", str(tmp_path), "--url", url, check=False)
        assert_one_line_error(proc, "cannot download", "CORPUS=")
    assert not os.path.exists(os.path.join(str(tmp_path), "corpus"))


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


def test_vocab_path_is_validated(tmp_path):
    data = str(tmp_path / "d")
    module("vocab", "--data-dir", data, "--vocab", VOCAB_8K)
    assert open(os.path.join(data, "vocab.txt")).read() == open(VOCAB_8K).read()
    tokens = open(VOCAB_8K, encoding="utf-8").read().splitlines()
    bad = {"dup.txt": tokens + [tokens[100]], "nomask.txt": [t for t in tokens if t != "[MASK]"],
           "empty.txt": []}
    words = {"dup.txt": "duplicates", "nomask.txt": "[MASK]", "empty.txt": "empty"}
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


def test_vocab_mbert_offline_or_online(tmp_path):
    proc = module("vocab", "--data-dir", str(tmp_path), "--vocab", "mbert", check=False)
    if proc.returncode == 0:      # a machine with the hub (or its cache): the real thing
        assert sum(1 for _ in open(str(tmp_path / "vocab.txt"), encoding="utf-8")) == 119547
    else:
        assert_one_line_error(proc, "VOCAB=mbert", "VOCAB=train", "VOCAB=path")
        assert not os.path.exists(str(tmp_path / "vocab.txt"))


# ---- hparams --------------------------------------------------------------------------------

@pytest.fixture
def vocab_dir(tmp_path):
    data = tmp_path / "d"
    data.mkdir()
    module("vocab", "--data-dir", str(data), "--vocab", VOCAB_8K)
    return str(data)


def test_tutorial_preset_has_json_types(vocab_dir):
    module("hparams", "--data-dir", vocab_dir, "--preset", "tutorial")
    hp = json.load(open(os.path.join(vocab_dir, "hparams.json")))
    assert hp == {"do_train": True, "do_eval": False, "model_size": "small",
                  "do_lower_case": False, "num_train_steps": 100, "save_checkpoints_steps": 100,
                  "train_batch_size": 32, "vocab_size": 8000}
    flags = module("hparams", "--data-dir", vocab_dir, "--builder-flags").stdout.split()
    assert flags == ["--max-seq-length", "128", "--no-lower-case"]


def test_every_preset_resolves_in_the_trainer_config(vocab_dir):
    import importlib.util
    spec = importlib.util.spec_from_file_location(
        "cp", os.path.join(REPO, "third_party", "electra", "configure_pretraining.py"))
    config = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(config)
    presets = sorted(n[:-5] for n in os.listdir(os.path.join(REPO, "hparams")))
    assert presets == ["demo-cpu", "electra-small-1m", "tutorial"]
    for preset in presets:
        module("hparams", "--data-dir", vocab_dir, "--preset", preset)
        hp = config.load_hparams(os.path.join(vocab_dir, "hparams.json"))
        resolved = config.PretrainingConfig("m", vocab_dir, **hp)
        assert resolved.vocab_size == 8000 and resolved.do_lower_case is False
        if preset == "electra-small-1m":
            assert (resolved.num_train_steps, resolved.train_batch_size, resolved.learning_rate,
                    resolved.num_warmup_steps, resolved.model_size) == (
                        1000000, 128, 5e-4, 10000, "small")
        if preset == "demo-cpu":
            assert resolved.model_hparam_overrides["hidden_size"] < 256


def test_overrides_merge_over_the_preset(vocab_dir):
    module("hparams", "--data-dir", vocab_dir, "--preset", "demo-cpu", "--overrides",
           '{"num_train_steps": 7, "model_hparam_overrides": {"num_hidden_layers": 1}}')
    hp = json.load(open(os.path.join(vocab_dir, "hparams.json")))
    demo = json.load(open(os.path.join(REPO, "hparams", "demo-cpu.json")))
    assert hp["num_train_steps"] == 7 and hp["model_hparam_overrides"] == dict(
        demo["model_hparam_overrides"], num_hidden_layers=1)


def test_tutorial_as_published_is_rejected_naming_do_eval(vocab_dir, tmp_path):
    path = tmp_path / "hparams.json"
    path.write_text(json.dumps(TUTORIAL_AS_PUBLISHED))
    proc = module("hparams", "--data-dir", vocab_dir, "--preset", str(path), check=False)
    line = assert_one_line_error(proc, "do_eval", '"false"', "silently mean true")
    assert "do_lower_case" in line
    assert not os.path.exists(os.path.join(vocab_dir, "hparams.json"))


@pytest.mark.parametrize("args,words", [
    (["--preset", "tutorail"], ["unknown PRESET 'tutorail'", "demo-cpu"]),
    (["--overrides", "{num_train_steps: 5}"], ["HPARAMS_OVERRIDES is not valid JSON"]),
    (["--overrides", "500"], ["HPARAMS_OVERRIDES must be a JSON object"]),
    (["--overrides", '{"num_train_step": 5}'], ["unknown hparam 'num_train_step'"]),
    (["--overrides", '{"model_hparam_overrides": {"hiden_size": 5}}'],
     ["unknown key 'hiden_size'"]),
    (["--overrides", '{"train_batch_size": "32"}'], ["train_batch_size", "without quotes"]),
    (["--overrides", '{"do_eval": true}'], ["exactly one of do_train and do_eval"]),
    (["--overrides", '{"vocab_size": 119547}'], ["disagrees", "8000"]),
])
def test_bad_hparams(vocab_dir, args, words):
    proc = module("hparams", "--data-dir", vocab_dir, *args, check=False)
    assert_one_line_error(proc, *words)
    assert not os.path.exists(os.path.join(vocab_dir, "hparams.json"))


def test_bad_hparams_through_make(vocab_dir):
    for var, words in [("PRESET=nope", ["unknown PRESET 'nope'"]),
                       ("HPARAMS_OVERRIDES={oops", ["HPARAMS_OVERRIDES is not valid JSON"])]:
        proc = run(MAKE + ["hparams", "DATA_DIR=" + vocab_dir, var], check=False)
        assert_one_line_error(proc, *words)


# ---- stage records --------------------------------------------------------------------------

def test_make_stages_skip_redo_and_cascade(tmp_path, debian_fortunes_dir):
    data = str(tmp_path / "d")
    common = ["DATA_DIR=" + data, "CORPUS=" + debian_fortunes_dir, "VOCAB=train",
              "VOCAB_SIZE=2000", "NUM_PROCESSES=2"]

    def make(*targets_and_vars):
        return run(MAKE + list(targets_and_vars) + common).stdout

    first = make("corpus", "vocab", "hparams", "TRAIN_SIZE=3000")
    assert "up to date" not in first
    again = make("corpus", "vocab", "hparams", "TRAIN_SIZE=3000")
    assert again.count("up to date") == 3
    vocab_before = open(os.path.join(data, "vocab.txt")).read()
    # A different TRAIN_SIZE changes the corpus, hence the vocab, hence vocab_size/hparams.
    changed = make("corpus", "vocab", "hparams", "TRAIN_SIZE=6000")
    assert "corpus: redoing (changed: TRAIN_SIZE)" in changed
    assert "vocab: redoing (changed: corpus)" in changed
    assert open(os.path.join(data, "vocab.txt")).read() != vocab_before
    assert "hparams: up to date" not in changed
    # Overrides redo only hparams.
    only = make("corpus", "vocab", "hparams", "TRAIN_SIZE=6000",
                'HPARAMS_OVERRIDES={"num_train_steps": 3}')
    assert only.count("up to date") == 2 and "hparams: redoing (changed: HPARAMS_OVERRIDES)" in only
    # A removed output is made again even though the record exists.
    shutil.rmtree(os.path.join(data, "corpus"))
    assert "corpus: redoing" in make("corpus", "TRAIN_SIZE=6000")


def test_stage_record_only_after_success_and_model_dir_guard(tmp_path):
    data = str(tmp_path / "d")
    os.makedirs(data)
    hparams = tmp_path / "hparams.json"
    hparams.write_text('{"num_train_steps": 10, "learning_rate": 0.001}')
    model = os.path.join(data, "models", "m")
    stage = ["stages", "train", "--data-dir", data, "--input", str(hparams), "--keeps", model,
             "--may-change", "num_train_steps", "--output", os.path.join(model, "ckpt"), "--"]
    proc = module(*(stage + ["bash", "-c", "mkdir -p %s && touch %s/half && exit 3"
                             % (model, model)]), check=False)
    assert proc.returncode == 3
    assert not os.path.exists(os.path.join(data, ".stages", "train.done"))
    # The rerun continues the same directory (a trainer resumes from its checkpoints).
    module(*(stage + ["touch", os.path.join(model, "ckpt")]))
    assert "up to date" in module(*(stage + ["false"])).stdout
    # More steps: the model is continued, not refused.
    hparams.write_text('{"num_train_steps": 20, "learning_rate": 0.001}')
    assert "redoing (changed: %s)" % hparams in module(*(stage + ["true"])).stdout
    # Other inputs for a directory holding a model: refused, nothing deleted.
    hparams.write_text('{"num_train_steps": 20, "learning_rate": 0.002}')
    proc = module(*(stage + ["true"]), check=False)
    assert_one_line_error(proc, "started from other inputs", "MODEL_NAME")
    assert sorted(os.listdir(model)) == ["ckpt", "half"]
    assert not os.path.exists(os.path.join(data, ".stages", "train.done"))


def test_pretrain_data_runs_another_electra_dir_with_reference_flags(tmp_path, debian_fortunes_dir):
    # Another checkout with the same command line (here a copy of ours at another path): it
    # gets only the reference's flags, so an upstream checkout works unchanged.
    other = str(tmp_path / "electra-checkout")
    shutil.copytree(os.path.join(REPO, "third_party", "electra"), other,
                    ignore=shutil.ignore_patterns("__pycache__"))
    data = str(tmp_path / "d")
    common = ["DATA_DIR=" + data, "CORPUS=" + debian_fortunes_dir, "TRAIN_SIZE=2000",
              "VOCAB=" + VOCAB_8K]
    run(MAKE + ["corpus", "vocab", "hparams"] + common)
    dry = run(MAKE + ["-n", "pretrain-data", "ELECTRA_DIR=" + other] + common).stdout
    assert "%s/build_pretraining_dataset.py\" --corpus-dir" % other in dry and "--seed" not in dry
    assert "--seed 1234" in run(MAKE + ["-n", "pretrain-data"] + common).stdout
    out = run(MAKE + ["pretrain-data", "ELECTRA_DIR=" + other] + common).stdout
    shards = os.listdir(os.path.join(data, "pretrain_tfrecords"))
    assert len(shards) == 1000 and "pretrain-data: done" in out
    record = json.load(open(os.path.join(data, ".stages", "pretrain-data.done")))
    assert record["vars"]["ELECTRA_DIR"] == other
    assert record["vars"]["builder_flags"] == "--max-seq-length 128 --no-lower-case"
    again = run(MAKE + ["pretrain-data"] + common).stdout
    assert "pretrain-data: redoing (changed: ELECTRA_DIR)" in again


def test_demo_without_debian_text_falls_back_to_an_opensubtitles_slice(tmp_path):
    # No fortunes-es, no CORPUS=: the demo downloads a slice, which offline fails in one line.
    vars_ = ["DATA_DIR=%s" % tmp_path, "DEBIAN_FORTUNES=/nonexistent", "DEBIAN_REFERENCE=/none"]
    dry = run(MAKE + ["-n", "demo"] + vars_).stdout
    assert 'CORPUS=""' in dry and 'DOWNLOAD_BYTES="4000000"' in dry and "VOCAB=train" in dry
    # The demo's first stage with those settings (the rest is test_demo's).
    proc = run(MAKE + ["corpus", "DATA_DIR=%s/demo" % tmp_path, "CORPUS=",
                       "DOWNLOAD_BYTES=4000000", "TRAIN_SIZE=100000"], check=False)
    if proc.returncode != 0:          # offline, as on CI
        assert_one_line_error(proc, "cannot download", "es.txt.gz", "CORPUS=")
    else:
        stats = json.load(open(str(tmp_path / "demo" / "corpus-stats.json")))
        assert stats["sources"][0].endswith("es.txt.first-4000000.gz")


def test_a_stage_without_its_inputs_says_which_stage_comes_first(tmp_path):
    proc = run(MAKE + ["pretrain", "DATA_DIR=%s" % tmp_path], check=False)
    assert_one_line_error(proc, "pretrain_tfrecords, which is missing", "make all")
    assert not os.path.exists(str(tmp_path / "models"))


def test_a_killed_stage_runner_takes_its_stage_with_it(tmp_path):
    import signal
    import subprocess
    import time
    runner = subprocess.Popen([PY, "-m", "wrapper.stages", "train", "--data-dir", str(tmp_path),
                               "--", "sleep", "120"], cwd=REPO)
    deadline = time.time() + 30
    children = []
    while not children and time.time() < deadline:
        time.sleep(0.2)
        children = run(["pgrep", "-P", str(runner.pid)], check=False).stdout.split()
    assert children, "the stage command did not start"
    os.kill(runner.pid, signal.SIGKILL)
    runner.wait()
    while os.path.exists("/proc/%s" % children[0]) and time.time() < deadline:
        time.sleep(0.2)
    assert not os.path.exists("/proc/%s" % children[0])
    assert not os.path.exists(str(tmp_path / ".stages" / "train.done"))
