"""Hostile input and a full disk: text that is not UTF-8, lines longer than an example, no
space left, a builder job killed by a signal. Each is refused or reported in one line.

The text is real (Debian's fortunes-es and debian-reference-es, saved in other encodings as
a user's editor would), the binary is a real program (/bin/ls), and the full disk is a real
one: a tmpfs of a few hundred KB mounted for the test (tests run as root; without the right
to mount, those tests are skipped, saying so).
"""
import contextlib
import gzip
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest

from conftest import assert_one_line_error, DEBIAN_REFERENCE_TXT, ELECTRA_DIR, FORTUNES_DEBIAN, PY, REPO, VOCAB_8K, run

BUILDER = os.path.join(ELECTRA_DIR, "build_pretraining_dataset.py")
SENTIMIENTOS = os.path.join(FORTUNES_DEBIAN, "sentimientos.fortunes")   # 35 x "corazón"


def corpus_cli(data_dir, corpus, *flags, env=None):
    return run([PY, "-m", "wrapper.corpus", "--data-dir", str(data_dir), "--corpus", str(corpus),
                "--num-files", "1"] + list(flags), check=False, cwd=REPO, env=env or {})


def build(corpus, out, *flags):
    return run([PY, BUILDER, "--corpus-dir", str(corpus), "--vocab-file", VOCAB_8K,
                "--output-dir", str(out), "--no-lower-case"] + [str(f) for f in flags],
               check=False)


def one_error_line(proc, program):
    """The single `PROGRAM: error: ...` line of a refused run (warnings may come before it)."""
    return assert_one_line_error(proc, program=program, also_ignore=("warning",))


def wait_for_children(pid, count, timeout=60):
    """The sorted PIDs of pid's child processes, once there are `count` (or at the timeout)."""
    children = []
    deadline = time.time() + timeout
    while len(children) < count and time.time() < deadline:
        time.sleep(0.2)
        listed = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)],
                                stdout=subprocess.PIPE, universal_newlines=True).stdout
        children = sorted(int(p) for p in listed.split())
    return children


def kill_a_child(proc, count, sig, settle):
    """Once proc has `count` children: `settle` seconds, then sig to the last of them; proc's
    CompletedProcess and the children's PIDs."""
    try:
        children = wait_for_children(proc.pid, count)
        assert len(children) == count, "the builder's processes did not start"
        time.sleep(settle)
        os.kill(children[-1], sig)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr), children


def normalized_lines(text):
    """What the corpus stage keeps of fortune text: stripped lines, no blanks, no separators."""
    return [" ".join(l.split()) for l in text.splitlines() if l.strip() and l.strip() != "%"]


def corpus_lines(data_dir):
    with open(os.path.join(str(data_dir), "corpus", "part-00000-of-00001.txt"),
              encoding="utf-8") as f:
        return [l for l in f.read().splitlines() if l]


@pytest.fixture(scope="module")
def sentimientos():
    if not os.path.isfile(SENTIMIENTOS):
        pytest.fail("missing %s: apt-get install fortunes-es (.ci/run does)" % SENTIMIENTOS)
    with open(SENTIMIENTOS, encoding="utf-8") as f:
        return f.read()


@contextlib.contextmanager
def small_filesystem(path, size):
    """A real file system of `size` (e.g. "300k") mounted at `path`: writes fail with ENOSPC."""
    os.makedirs(str(path), exist_ok=True)
    mount = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%s" % size, "tmpfs", str(path)],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           universal_newlines=True)
    if mount.returncode != 0:
        pytest.skip("cannot mount a %s tmpfs for a real full disk (needs root): %s"
                    % (size, mount.stdout.strip()))
    try:
        yield str(path)
    finally:
        subprocess.run(["umount", "-l", str(path)])


# ---- text that is not UTF-8 ---------------------------------------------------------------

def test_real_corpora_have_no_invalid_utf8_the_threshold_is_far_above(debian_fortunes_dir):
    """The refusal threshold (0.1% of the bytes) against what real text has: none."""
    from wrapper import corpus
    sources = [os.path.join(debian_fortunes_dir, n) for n in sorted(os.listdir(debian_fortunes_dir))
               if n.endswith(".fortunes")] + [DEBIAN_REFERENCE_TXT]
    stats = {}
    total = sum(len(d) for d in corpus.read_documents(sources, 10 ** 9, stats))
    assert total > 10000 and stats["invalid_bytes_by_file"] == {}
    # The same Spanish text saved as Latin-1: one invalid byte per accented letter.
    with open(SENTIMIENTOS, encoding="utf-8") as f:
        latin1 = f.read().encode("latin-1")
    share = sum(1 for b in latin1 if b >= 0x80) / float(len(latin1))
    assert share > 10 * corpus.MAX_INVALID_SHARE


def test_binary_file_as_corpus_is_refused_naming_it(tmp_path):
    proc = corpus_cli(tmp_path / "d", "/bin/ls")
    line = one_error_line(proc, "corpus")
    assert "/bin/ls holds NUL bytes" in line and "not text" in line
    assert not os.path.exists(str(tmp_path / "d" / "corpus"))
    assert [n for n in os.listdir(str(tmp_path / "d")) if "partial" in n] == []


def test_utf16_text_is_refused_with_the_conversion(tmp_path, sentimientos):
    source = tmp_path / "sentimientos-utf16.txt"
    source.write_bytes(sentimientos.encode("utf-16"))
    line = one_error_line(corpus_cli(tmp_path / "d", source), "corpus")
    assert "UTF-16" in line and "iconv -f utf-16 -t utf-8 %s" % source in line


@pytest.mark.parametrize("encoding,name", [("latin1", "Latin-1"), ("cp1252", "CP1252")])
def test_spanish_in_a_legacy_encoding_is_refused_with_the_conversion(tmp_path, sentimientos,
                                                                      encoding, name):
    # CP1252 differs from Latin-1 in its 0x80-0x9f punctuation: an editor's "…".
    text = sentimientos.replace("...", "\u2026") if encoding == "cp1252" else sentimientos
    source = tmp_path / ("sentimientos-%s.txt" % encoding)
    source.write_bytes(text.encode(encoding))
    invalid = sum(1 for b in text.encode(encoding) if b >= 0x80)
    line = one_error_line(corpus_cli(tmp_path / "d", source), "corpus")
    assert "%s is not UTF-8 text: %d of the %d bytes read (%.2f%%" % (
        source, invalid, len(text.encode(encoding)),
        100.0 * invalid / len(text.encode(encoding))) in line
    assert "Spanish text saved as %s" % name in line
    assert "iconv -f %s -t utf-8 %s > %s.utf8" % (encoding, source, source) in line
    assert "CORPUS_ENCODING=%s" % encoding in line
    assert not os.path.exists(str(tmp_path / "d" / "corpus"))
    # The conversion the message gives makes a corpus equal to the UTF-8 original's.
    converted = str(source) + ".utf8"
    with open(converted, "wb") as out:
        subprocess.run(["iconv", "-f", encoding, "-t", "utf-8", str(source)], stdout=out,
                       check=True)
    proc = corpus_cli(tmp_path / "ok", converted)
    assert proc.returncode == 0, proc.stderr
    assert corpus_lines(tmp_path / "ok") == normalized_lines(text)


@pytest.mark.parametrize("how", ["environment", "flag"])
def test_corpus_encoding_reads_latin1_spanish_as_it_is(tmp_path, sentimientos, how):
    source = tmp_path / "sentimientos-latin1.txt"
    source.write_bytes(sentimientos.encode("latin-1"))
    if how == "environment":     # how make passes CORPUS_ENCODING=latin1 on
        proc = corpus_cli(tmp_path / "d", source, env={"CORPUS_ENCODING": "latin1"})
    else:
        proc = corpus_cli(tmp_path / "d", source, "--corpus-encoding", "latin1")
    assert proc.returncode == 0, proc.stderr
    lines = corpus_lines(tmp_path / "d")
    assert lines == normalized_lines(sentimientos)
    assert sum(l.count("corazón") for l in lines) == sentimientos.count("corazón") > 30
    stats = json.load(open(str(tmp_path / "d" / "corpus-stats.json")))
    assert stats["dropped_invalid_bytes"] == 0 and stats["encoding"] == "iso8859-1"


def test_corpus_encoding_cp1252_keeps_its_punctuation(tmp_path, sentimientos):
    text = sentimientos.replace("...", "\u2026")
    source = tmp_path / "sentimientos-cp1252.txt"
    source.write_bytes(text.encode("cp1252"))
    proc = corpus_cli(tmp_path / "d", source, "--corpus-encoding", "cp1252")
    assert proc.returncode == 0, proc.stderr
    lines = corpus_lines(tmp_path / "d")
    assert lines == normalized_lines(text) and any("\u2026" in l for l in lines)


@pytest.mark.parametrize("value,words", [
    ("latin1", ["is UTF-8 text", "'corazÃ³n'", "leave CORPUS_ENCODING empty"]),
    ("klingon", ["CORPUS_ENCODING=klingon: unknown encoding"]),
    ("utf-16", ["not a single-byte encoding", "iconv -f utf-16"]),
])
def test_corpus_encoding_that_would_garble_is_refused(tmp_path, value, words):
    proc = corpus_cli(tmp_path / "d", SENTIMIENTOS, env={"CORPUS_ENCODING": value})
    line = one_error_line(proc, "corpus")
    for word in words:
        assert word in line, line


def test_odd_stray_bytes_are_still_dropped_and_counted(tmp_path):
    """A real corpus with a few broken bytes is read, as before, and says how many."""
    with gzip.open(DEBIAN_REFERENCE_TXT, "rb") as f:
        text = f.read()
    cuts = [text.index(b"\n", n) + 1 for n in (10000, 200000, 500000, 800000)]
    broken = text[:cuts[0]]
    for a, b in zip(cuts, cuts[1:] + [len(text)]):
        broken += b"\xff\xfe\xfd" + text[a:b]          # 12 bytes in 1 MB: far below 0.1%
    source = tmp_path / "reference.txt"
    source.write_bytes(broken)
    proc = corpus_cli(tmp_path / "d", source)
    assert proc.returncode == 0, proc.stderr
    assert "12 invalid UTF-8 bytes dropped" in proc.stdout
    stats = json.load(open(str(tmp_path / "d" / "corpus-stats.json")))
    assert stats["invalid_bytes_by_file"] == {str(source): 12}


# ---- lines longer than an example ---------------------------------------------------------

def test_builder_warns_about_a_line_longer_than_an_example(tmp_path):
    """One long line is one example of max-seq-length tokens, as in the reference; the rest
    of its tokens are thrown away, and now the builder says how many."""
    sys.path.insert(0, ELECTRA_DIR)
    import tokenization
    with open(os.path.join(FORTUNES_DEBIAN, "vida.fortunes"), encoding="utf-8") as f:
        line = " ".join(f.read().split())                     # a whole file as one line
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "long.txt").write_text("Una frase corta.\n\n" + line + "\n", encoding="utf-8")
    tokenizer = tokenization.FullTokenizer(VOCAB_8K, do_lower_case=False)
    tokens = len(tokenizer.tokenize(line))
    proc = build(corpus, tmp_path / "out", "--max-seq-length", 128, "--seed", 3)
    assert proc.returncode == 0, proc.stderr
    thrown = tokens - 126                                    # [CLS] line[:126] [SEP]
    assert thrown > 10000
    assert ("long.txt: 1 line(s) longer than an example of --max-seq-length 128 tokens (the "
            "longest so far %d tokens): %d token(s) thrown away" % (tokens, thrown)) in proc.stderr
    assert "1 line(s) longer than an example: %d token(s) thrown away" % thrown in proc.stdout
    assert "wrote 2 examples" in proc.stdout


def test_builder_says_nothing_about_text_of_ordinary_lines(tmp_path, fortunes_dir):
    proc = build(fortunes_dir, tmp_path / "out", "--max-seq-length", 128, "--seed", 1)
    assert proc.returncode == 0 and "longer than an example" not in proc.stderr + proc.stdout


# ---- a full disk ----------------------------------------------------------------------------

@pytest.mark.slow
def test_corpus_on_a_full_disk_is_one_line_naming_the_directory(tmp_path):
    with gzip.open(DEBIAN_REFERENCE_TXT, "rb") as f:
        (tmp_path / "reference.txt").write_bytes(f.read())     # 1 MB of text
    with small_filesystem(tmp_path / "small", "600k") as small:
        data = os.path.join(small, "data")
        proc = corpus_cli(data, tmp_path / "reference.txt")
        line = one_error_line(proc, "corpus")
        assert "no space left on the device writing the corpus in %s" % data in line
        assert "free of 600.0 KB" in line and "it needs up to 2.0 MB" in line
        assert os.listdir(data) == []                           # no partial directory left


@pytest.mark.parametrize("processes", [1, 2])
@pytest.mark.slow
def test_builder_on_a_full_disk_is_one_line_naming_the_directory(tmp_path, fortunes_dir,
                                                                 processes):
    with small_filesystem(tmp_path / "small", "300k") as small:
        out = os.path.join(small, "out")
        proc = build(fortunes_dir, out, "--num-processes", processes, "--seed", 1234)
        line = one_error_line(proc, "build_pretraining_dataset.py")
        assert "no space left on the device in %s (0.0 MB free of 0.3 MB) while writing the " \
               "shards for --output-dir %s" % (small, out) in line
        # 1000 shards of about 1.2 KB, one 4 KB page each: about 4.1 MB.
        assert re.search(r"they need about 4\.\d MB", line), line
        assert os.listdir(small) == []                          # nothing half-written left


# ---- a builder job killed by a signal ------------------------------------------------------

@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
@pytest.mark.slow
def test_builder_names_the_signal_that_killed_a_job(tmp_path, sig):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    with gzip.open(DEBIAN_REFERENCE_TXT, "rb") as f:
        text = f.read()
    for i in range(2):
        (corpus / ("reference-%d.txt" % i)).write_bytes(text)
    out = tmp_path / "out"
    # The plain tokenizer is slow enough (seconds) for the job to be found while it works.
    proc = subprocess.Popen([PY, BUILDER, "--corpus-dir", str(corpus), "--vocab-file", VOCAB_8K,
                             "--output-dir", str(out), "--num-processes", "2",
                             "--tokenizer", "plain"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            universal_newlines=True)
    result, jobs = kill_a_child(proc, 2, sig, settle=0.5)
    line = one_error_line(result, "build_pretraining_dataset.py")
    assert "job 1 (PID %d) was killed by %s (signal %d)" % (jobs[1], sig.name, sig) in line
    if sig == signal.SIGKILL:
        assert "OOM killer" in line
    assert result.returncode == 2 and not out.exists()
    assert [n for n in os.listdir(str(tmp_path)) if n.startswith(".out.")] == []


@pytest.mark.slow
def test_download_on_a_full_disk_is_one_line_and_resumes(tmp_path, debian_reference_lines):
    import http.server
    import threading
    payload = gzip.compress(("\n".join(debian_reference_lines) + "\n").encode("utf-8"))

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            first = int(self.headers.get("Range", "bytes=0-")[len("bytes="):].rstrip("-"))
            self.send_response(206 if first else 200)
            self.send_header("Content-Length", str(len(payload) - first))
            self.end_headers()
            self.wfile.write(payload[first:])

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = "http://127.0.0.1:%d/es.txt.gz" % server.server_port
    try:
        with small_filesystem(tmp_path / "small", "100k") as small:
            data = os.path.join(small, "data")
            proc = corpus_cli(data, "", "--url", url, "--train-size", "200")
            line = one_error_line(proc, "corpus")
            assert "no space left on the device in %s" % os.path.join(data, "downloads") in line
            assert "more needed" in line and "run the same command again to resume" in line
            part = os.path.join(data, "downloads", "es.txt.gz.part")
            kept = os.path.getsize(part)
            assert 0 < kept < len(payload)
            # With room again (the .part moved to a larger disk), the rerun resumes.
            bigger = tmp_path / "bigger"
            os.makedirs(str(bigger / "downloads"))
            shutil.move(part, str(bigger / "downloads" / "es.txt.gz.part"))
        proc = corpus_cli(bigger, "", "--url", url, "--train-size", "200")
        assert proc.returncode == 0, proc.stderr
        assert "resuming es.txt.gz" in proc.stderr
        with open(str(bigger / "downloads" / "es.txt.gz"), "rb") as f:
            assert f.read() == payload
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.slow
def test_stage_runner_names_the_signal_that_killed_the_builder(tmp_path):
    """With one process the job runs in the builder itself: the stage runner names the signal
    (make would show only `Error 247` for SIGKILL)."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    with gzip.open(DEBIAN_REFERENCE_TXT, "rb") as f:
        (corpus / "reference.txt").write_bytes(f.read())
    data = tmp_path / "data"
    data.mkdir()
    proc = subprocess.Popen(
        [PY, os.path.join(REPO, "tests", "stage_runner.py"), "pretrain-data", str(data),
         "--output", str(data / "out"), "--",
         PY, BUILDER, "--corpus-dir", str(corpus), "--vocab-file", VOCAB_8K,
         "--output-dir", str(data / "out"), "--num-processes", "1", "--tokenizer", "plain"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, cwd=REPO)
    result, _ = kill_a_child(proc, 1, signal.SIGKILL, settle=1.0)
    line = one_error_line(result, "stages")
    assert "build_pretraining_dataset.py was killed by SIGKILL (signal 9)" in line
    assert "OOM killer" in line and result.returncode == 2
    assert not os.path.exists(str(data / ".stages" / "pretrain-data.done"))
