"""Download: SIGKILLed mid-transfer (seeded points), the rerun resumes by HTTP byte range.

A local HTTP server on 127.0.0.1 serves a real .gz of Spanish text slowly, with Range
support (or without, or dropping the connection), and records every request.
"""
import gzip
import hashlib
import os
import random
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from conftest import one_error_line, PY, run
from reliability_support import Running, file_digest, spanish_parts, tree_digest

MB = 1 << 20


class Server(object):
    """Serves `payload` at /es.txt.gz; `mode` is "range", "no-range" or "drop"."""

    def __init__(self, payload, chunk=32 * 1024, pause=0.004):
        self.payload, self.chunk, self.pause = payload, chunk, pause
        self.mode, self.drop_at = "range", None
        self.requests = []          # (Range header or None, bytes sent)
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                if self.path != "/es.txt.gz":
                    self.send_error(404)
                    return
                wanted = self.headers.get("Range")
                start = 0
                match = re.match(r"bytes=(\d+)-$", wanted or "")
                if match and server.mode != "no-range":
                    start = int(match.group(1))
                    if start >= len(server.payload):
                        self.send_response(416)
                        self.send_header("Content-Range", "bytes */%d" % len(server.payload))
                        self.end_headers()
                        server.requests.append((wanted, 0))
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", "bytes %d-%d/%d" % (
                        start, len(server.payload) - 1, len(server.payload)))
                else:
                    self.send_response(200)
                self.send_header("Content-Type", "application/gzip")
                self.send_header("Content-Length", str(len(server.payload) - start))
                self.send_header("Accept-Ranges", "bytes")
                self.end_headers()
                record = [wanted, 0]
                server.requests.append(record)
                position = start
                try:
                    while position < len(server.payload):
                        if server.mode == "drop" and position >= server.drop_at:
                            break      # connection closed early, as a flaky network does
                        block = server.payload[position:position + server.chunk]
                        self.wfile.write(block)
                        position += len(block)
                        record[1] += len(block)
                        time.sleep(server.pause)
                except (BrokenPipeError, ConnectionResetError):
                    pass
                self.close_connection = True

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        self.url = "http://127.0.0.1:%d/es.txt.gz" % self.httpd.server_address[1]

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def payload():
    """About 4 MB of real Spanish text in a valid .gz (stored blocks: size is transfer time)."""
    text = b"".join(spanish_parts())
    data = gzip.compress(text * 2, compresslevel=0)
    assert len(data) > 3 * MB
    return data


@pytest.fixture
def server(payload):
    srv = Server(payload)
    yield srv
    srv.stop()


# The corpus stage's download (wrapper.download.download) alone, in a process of its own.
DOWNLOAD = ("import sys; from wrapper import cli, download; "
            "cli.run_main(lambda: download.download(sys.argv[1], sys.argv[2], timeout=10) "
            "and 0, 'download')")


def download_args(url, dest):
    return [PY, "-c", DOWNLOAD, url, dest]


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.slow
def test_download_killed_mid_transfer_resumes_by_byte_range(tmp_path, server, payload, seed):
    rng = random.Random(seed)
    dest = str(tmp_path / "downloads" / "es.txt.gz")
    part = dest + ".part"
    threshold = rng.randint(1, 2) * MB + rng.randint(0, MB - 1)   # somewhere in 1-3 MB
    proc = Running(download_args(server.url, dest), str(tmp_path / "logs"), "download-1")
    killed = proc.kill_when(lambda: os.path.exists(part) and os.path.getsize(part) >= threshold,
                            timeout=60)
    assert killed, "the download finished before the kill: %s" % proc.output()
    assert not os.path.exists(dest), "a partial download was taken as complete"
    done = os.path.getsize(part)
    assert 0 < done < len(payload)
    assert payload.startswith(open(part, "rb").read())

    requests_before = len(server.requests)
    rerun = run(download_args(server.url, dest), timeout=120)
    assert "resuming es.txt.gz at" in rerun.stderr
    resumed = server.requests[requests_before:]
    assert [r[0] for r in resumed] == ["bytes=%d-" % done]
    assert resumed[0][1] == len(payload) - done, "only the missing bytes are transferred"
    assert file_digest(dest) == hashlib.sha256(payload).hexdigest()
    assert not os.path.exists(part)

    again = run(download_args(server.url, dest))   # complete: nothing asked any more
    assert len(server.requests) == requests_before + 1 and again.returncode == 0


def test_dropped_connection_is_one_line_and_the_rerun_resumes(tmp_path, server, payload):
    dest = str(tmp_path / "es.txt.gz")
    server.mode, server.drop_at = "drop", MB + 12345
    first = run(download_args(server.url, dest), check=False, timeout=120)
    assert first.returncode == 2
    line = [l for l in first.stderr.splitlines() if "error" in l]
    assert len(line) == 1 and "Traceback" not in first.stderr, first.stderr
    assert re.search(r"download: error: download of %s ended at %d of %d bytes; run the same "
                     r"command again to resume" % (re.escape(server.url), MB + 12345 + 32 * 1024
                                                   - (MB + 12345) % (32 * 1024), len(payload)),
                     line[0]), line[0]
    assert not os.path.exists(dest)
    server.mode = "range"
    run(download_args(server.url, dest), timeout=120)
    assert file_digest(dest) == hashlib.sha256(payload).hexdigest()
    assert server.requests[-1][0] and server.requests[-1][0].startswith("bytes=")


def test_server_without_range_support_restarts_from_byte_zero(tmp_path, server, payload):
    dest = str(tmp_path / "es.txt.gz")
    proc = Running(download_args(server.url, dest), str(tmp_path / "logs"), "download-1")
    assert proc.kill_when(lambda: os.path.exists(dest + ".part") and
                          os.path.getsize(dest + ".part") >= MB, timeout=60)
    server.mode = "no-range"
    rerun = run(download_args(server.url, dest), timeout=120)
    assert "server does not resume; downloading from the start" in rerun.stderr
    assert file_digest(dest) == hashlib.sha256(payload).hexdigest()


@pytest.mark.parametrize("seed", [1, 2])
@pytest.mark.slow
def test_corpus_stage_killed_while_downloading_resumes_and_completes(tmp_path, server, payload,
                                                                     seed):
    """The corpus stage's download (OpenSubtitles' path, from our local server)."""
    data_dir = tmp_path / "data"
    args = [PY, "-m", "wrapper.corpus", "--data-dir", str(data_dir), "--url", server.url,
            "--train-size", "1000000", "--num-files", "2"]
    part = data_dir / "downloads" / "es.txt.gz.part"
    threshold = random.Random(seed).randint(MB // 2, 3 * MB)
    proc = Running(args, str(tmp_path / "logs"), "corpus-1")
    assert proc.kill_when(lambda: part.exists() and part.stat().st_size >= threshold, timeout=60)
    assert not (data_dir / "corpus").exists()
    assert not (data_dir / "corpus-stats.json").exists()
    assert not (data_dir / "downloads" / "es.txt.gz").exists()
    done = part.stat().st_size
    before = len(server.requests)
    run(args, timeout=180)
    assert server.requests[before][0] == "bytes=%d-" % done
    assert file_digest(str(data_dir / "downloads" / "es.txt.gz")) == \
        hashlib.sha256(payload).hexdigest()
    # The same text read from a local copy gives the same corpus.
    local = tmp_path / "local.txt.gz"
    local.write_bytes(payload)
    reference = tmp_path / "reference"
    run([PY, "-m", "wrapper.corpus", "--data-dir", str(reference), "--corpus", str(local),
         "--train-size", "1000000", "--num-files", "2"])
    assert tree_digest(str(data_dir / "corpus")) == tree_digest(str(reference / "corpus"))
    assert len(tree_digest(str(reference / "corpus"))) == 2


def test_offline_download_fails_fast_with_one_line(tmp_path):
    # A port nobody listens on: connection refused at once.
    dest = str(tmp_path / "es.txt.gz")
    proc = run(download_args("http://127.0.0.1:9/es.txt.gz", dest), check=False, timeout=60)
    assert proc.returncode == 2
    line = one_error_line(proc.stderr)
    assert line.startswith("download: error: cannot download http://127.0.0.1:9/es.txt.gz")
    assert "CORPUS=" in line
    assert not os.path.exists(dest) and not os.path.exists(dest + ".part")
