"""Resumable HTTP download with progress (the corpus stage's OpenSubtitles file).

The bytes go to `DEST.part`; an interrupted run (Ctrl-C, SIGKILL, a dropped connection)
leaves that file behind, and the next run asks the server for the rest with an HTTP Range
request. `DEST` appears only once every byte is there (a rename), so a half-downloaded
file is never taken as complete. Offline, the connection fails within CONNECT_TIMEOUT_S
and the error says how to use a local corpus instead.
"""
import os
import socket
import sys
import time
import urllib.error
import urllib.request
from typing import Optional

from wrapper.cli import UserError
from wrapper.fsutil import disk_full_reason, human_bytes

OPENSUBTITLES_ES_URL = "https://object.pouta.csc.fi/OPUS-OpenSubtitles/v2016/mono/es.txt.gz"
CONNECT_TIMEOUT_S = 10        # also the longest silence tolerated mid-transfer
CHUNK_BYTES = 1 << 20
OFFLINE_HINT = ("offline? give a local corpus instead: CORPUS=path/to/text.txt, .gz or a "
                "directory of them")


def human_seconds(s: float) -> str:
    s = int(s)
    if s >= 3600:
        return "%dh%02dm" % (s // 3600, s % 3600 // 60)
    if s >= 60:
        return "%dm%02ds" % (s // 60, s % 60)
    return "%ds" % s


class Progress(object):
    """Progress of a transfer: done/total, rate and ETA."""

    def __init__(self, label, start_bytes, total_bytes, stream=sys.stderr):
        self.label, self.total, self.stream = label, total_bytes, stream
        self.start_bytes, self.start_time = start_bytes, time.time()
        self.last_print = 0.0

    def update(self, done, final=False):
        now = time.time()
        # A terminal gets one line rewritten in place; a log gets a line every 10 s.
        if not final and now - self.last_print < (0.5 if self.stream.isatty() else 10.0):
            return
        self.last_print = now
        elapsed = max(now - self.start_time, 1e-6)
        rate = (done - self.start_bytes) / elapsed
        line = "%s: %s" % (self.label, human_bytes(done))
        if self.total:
            line += " / %s (%.1f%%)" % (human_bytes(self.total), 100.0 * done / self.total)
        line += ", %s/s" % human_bytes(rate)
        if self.total and rate > 0 and not final:
            line += ", ETA %s" % human_seconds((self.total - done) / rate)
        if final:
            line += ", %s" % human_seconds(elapsed)
        end = "\n" if final or not self.stream.isatty() else ""
        self.stream.write(("\r" if self.stream.isatty() else "") + line + end)
        self.stream.flush()


def _open(url, offset, timeout, max_bytes=None):
    request = urllib.request.Request(url, headers={"User-Agent": "electra-spanish/1.0"})
    if max_bytes:
        request.add_header("Range", "bytes=%d-%d" % (offset, max_bytes - 1))
    elif offset:
        request.add_header("Range", "bytes=%d-" % offset)
    try:
        return urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and offset:   # nothing after `offset`: the .part is already whole
            return None
        raise UserError("cannot download %s: HTTP %d %s" % (url, e.code, e.reason))
    except (urllib.error.URLError, socket.timeout, OSError) as e:
        reason = getattr(e, "reason", e)
        raise UserError("cannot download %s (%s); %s" % (url, reason, OFFLINE_HINT))


def download(url: str, dest: str, timeout: float = CONNECT_TIMEOUT_S,
             label: Optional[str] = None, max_bytes: Optional[int] = None) -> str:
    """Fetches `url` into `dest`, resuming `dest.part`; returns dest. Idempotent.

    max_bytes: fetch only the first max_bytes bytes (a slice of a large file).
    """
    if os.path.isfile(dest):
        return dest
    os.makedirs(os.path.dirname(os.path.abspath(dest)), exist_ok=True)
    part = dest + ".part"
    offset = os.path.getsize(part) if os.path.exists(part) else 0
    if max_bytes and offset >= max_bytes:
        os.replace(part, dest)
        return dest
    response = _open(url, offset, timeout, max_bytes)
    if response is None:
        os.replace(part, dest)
        return dest
    with response:
        status = getattr(response, "status", 200)
        if (offset or max_bytes) and status != 206:
            # The server ignored the Range header: start again from byte 0.
            sys.stderr.write("%s: server does not resume; downloading from the start\n" % url)
            offset = 0
        length = response.headers.get("Content-Length")
        total = offset + int(length) if length is not None else None
        if max_bytes:
            total = min(total or max_bytes, max_bytes)
        progress = Progress(label or os.path.basename(dest), offset, total)
        if offset:
            sys.stderr.write("resuming %s at %s\n" % (os.path.basename(dest), human_bytes(offset)))
        done = offset
        with open(part, "ab" if offset else "wb") as out:
            while True:
                try:
                    chunk = response.read(CHUNK_BYTES)
                except (socket.timeout, OSError) as e:
                    out.flush()
                    raise UserError("download of %s interrupted at %s (%s); run the same "
                                    "command again to resume" % (url, human_bytes(done), e))
                if max_bytes and done + len(chunk) > max_bytes:
                    chunk = chunk[:max_bytes - done]   # a server that ignored Range
                if not chunk:
                    break
                try:
                    out.write(chunk)
                    if total is not None and done + len(chunk) >= total:
                        out.flush()         # the last bytes fail here, not in close()
                except OSError as e:
                    raise _disk_full(e, out, done, total) or e
                done += len(chunk)
                progress.update(done)
            try:
                out.flush()
                os.fsync(out.fileno())
            except OSError as e:
                raise _disk_full(e, out, done, total) or e
        progress.update(done, final=True)
    if total is not None and done != total:
        raise UserError("download of %s ended at %d of %d bytes; run the same command again "
                        "to resume" % (url, done, total))
    os.replace(part, dest)
    return dest


def _disk_full(error, out, done, total):
    """UserError for a download that ran out of space (the .part file is kept to resume)."""
    directory = os.path.dirname(os.path.abspath(out.name))
    reason = disk_full_reason(error, directory)
    if reason is None:
        return None
    try:
        out.close()          # its buffer cannot be written either; closing must not raise again
    except OSError:
        pass
    try:
        done = os.path.getsize(out.name)     # what reached the disk, where a rerun resumes
    except OSError:
        pass
    return UserError("%s: the download stopped at %s%s; free "
                     "some space there (or choose another DATA_DIR) and run the same command "
                     "again to resume" % (reason, human_bytes(done),
                                          " of %s, %s more needed" % (
                                              human_bytes(total), human_bytes(total - done))
                                          if total else ""))
