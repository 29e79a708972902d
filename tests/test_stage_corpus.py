"""make corpus and the download it may need: real Spanish text (Debian's fortunes-es and
debian-reference-es) normalized into the builder's input, and a real local HTTP server for
the resumable download."""
import gzip
import http.server
import json
import os
import socket
import threading

import pytest

from conftest import MAKE, assert_one_line_error, module, read_parts, run


# ---- corpus ---------------------------------------------------------------------------------

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
