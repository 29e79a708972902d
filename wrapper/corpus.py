"""DATA_DIR/corpus: the pretraining text in the dataset builder's format.

    python -m wrapper.corpus --data-dir D [--corpus PATH[:PATH...]] [--train-size N] [--num-files K]

Source: by default the tutorial's OpenSubtitles v2016 Spanish monolingual file, downloaded
(resumably) into DATA_DIR/downloads; or local text: a .txt / .gz file, or a directory whose
*.txt, *.gz and *.fortunes files are read in sorted order (not recursively); or `debian-es`
(`debian-es=PKG,PKG` for some of them): the Spanish text of Debian's packages, extracted
into DATA_DIR/.cache/debian-es by wrapper/debian_corpus.py, with its held-out sentences
written to DATA_DIR/corpus-heldout.txt. Several sources are joined with ':'. The first
TRAIN_SIZE input lines are kept, as the tutorial's `head -n`.

Output format (what build_pretraining_dataset.py reads with blank lines separating documents):
one line of text per line, surrounding whitespace stripped and inner runs of whitespace
(tabs, carriage returns, Unicode line separators) made one space, and one blank line between
documents. Lines are kept as they are: OpenSubtitles already has one subtitle sentence per
line, and the builder packs consecutive lines into segments anyway. What a document is:
- a run of non-blank lines between blank lines (several blank lines count as one);
- a line holding only "%" is a document break too: the separator of fortune files, so
  every fortune is a document;
- every input file ends a document.
OpenSubtitles' mono file has no blank lines: it is one long stream of subtitles, as it was
for the tutorial (a single document).

Text that is not UTF-8 is refused before it is trained on: a file holding NUL bytes (a
binary file, or UTF-16), or one whose invalid UTF-8 bytes exceed MAX_INVALID_SHARE of what was
read of it (fortunes-es and debian-reference-es, 2 MB, have none; the same Spanish text saved
as Latin-1 or CP1252 has 1.2-2.8%, one byte per accented letter). When those bytes read as
Spanish in Latin-1/CP1252 the error says so and gives the iconv command; CORPUS_ENCODING=latin1
(or cp1252, any single-byte encoding Python knows) reads such text as it is. The odd stray
invalid byte is still dropped and counted (the reference builder would die on it).
The text is split into K files (K = builder processes, so all of them work), cut at document
boundaries so that the files have about the same size; a document longer than one file's
share (OpenSubtitles) is cut between lines. DATA_DIR/corpus is written aside and renamed into
place when complete; the statistics are printed and saved in DATA_DIR/corpus-stats.json.
"""
import codecs
import collections
import gzip
import json
import os
import re
import sys
import time
import zlib
from typing import (Any, Callable, Dict, Iterator, List, Mapping, NoReturn, Optional, Sequence,
                    TextIO)

from wrapper import debian_corpus, download, fsutil, paths
from wrapper.cli import ArgumentParser, UserError, positive_int, run_main
from wrapper.fsutil import atomic_output_dir, atomic_write_text
from wrapper.settings import default, from_environment

TEXT_SUFFIXES = (".txt", ".gz", ".fortunes")
PART_NAME = re.compile(r"^part-\d{5}-of-\d{5}\.txt$")
DOCUMENT_SEPARATORS = ("%",)
SLICE_MARK = ".first-"    # in the name of a downloaded slice, whose gzip stream is cut short

# A file is refused when more than this share of the bytes read from it are invalid in its
# encoding (and at least MIN_INVALID_TO_REFUSE of them): real UTF-8 corpora have none
# (fortunes-es, debian-reference-es: 0 of 2,045,941 bytes), a Latin-1 Spanish text 1.2-2.8%.
MAX_INVALID_SHARE = 0.001
MIN_INVALID_TO_REFUSE = 10
CHECK_EVERY_BYTES = 1 << 20        # a large file is judged on its first MB, then every MB
# What invalid UTF-8 bytes of Spanish text are when the text was saved as Latin-1 / CP1252.
SPANISH_8BIT = set("áéíóúüñÁÉÍÓÚÜÑ¿¡«»ºªçÇàèìòùâêîôûäëïö°·€“”‘’–—…".encode("cp1252"))
CP1252_ONLY = set(range(0x80, 0xa0))   # C1 controls in Latin-1, printable in CP1252
DEFAULT_ENCODING = "utf-8"


class _Scan(object):
    """What was read of one input file: bytes, the invalid ones by value, the first bad line."""

    def __init__(self, path, encoding):
        self.path, self.encoding = path, encoding
        self.bytes = 0
        self.invalid = 0
        self.invalid_values = collections.Counter()
        self.first_bad_line = None      # (line number, raw bytes)
        self.next_check = CHECK_EVERY_BYTES
        self.non_ascii_lines = 0        # under another encoding: lines that are valid UTF-8
        self.utf8_lines = 0             # with non-ASCII bytes / all lines with non-ASCII bytes


_scan = [None]
_dropped = [0]


def _count_and_drop(error):
    bad = error.object[error.start:error.end]
    _dropped[0] += len(bad)
    scan = _scan[0]
    if scan is not None:
        scan.invalid += len(bad)
        scan.invalid_values.update(bad)
    return "", error.end


codecs.register_error("electra_count_drop", _count_and_drop)


def check_encoding(name: str) -> str:
    """The codec name for CORPUS_ENCODING: UTF-8 or a single-byte ASCII-compatible encoding
    (lines are cut at the byte \\n, so UTF-16 and the like cannot be read line by line)."""
    name = (name or "").strip() or DEFAULT_ENCODING
    try:
        codec = codecs.lookup(name)
    except LookupError:
        raise UserError("CORPUS_ENCODING=%s: unknown encoding; use utf-8 (the default), latin1 "
                        "or cp1252" % name)
    if codec.name == "utf-8":
        return codec.name
    if not getattr(codec, "_is_text_encoding", True):
        # rot13, hex, base64, zlib ...: Python's transforms of bytes or text, not encodings.
        raise UserError("CORPUS_ENCODING=%s is not a text encoding (Python's %s codec "
                        "transforms bytes or text); use utf-8 (the default), latin1 or cp1252"
                        % (name, codec.name))
    # ASCII text, escapes included (unicode_escape reads "\\n" as a newline,
    # raw_unicode_escape "\\u0041" and utf-7 "+AGE-" as a letter), must read as itself.
    ascii_text = bytes(range(128)) + b"\\n\\x41\\u0041+AGE-"
    try:
        ascii_kept = ascii_text.decode(codec.name, "replace") == ascii_text.decode("ascii")
        single_byte = len(bytes(range(256)).decode(codec.name, "replace")) == 256
    except UnicodeError:   # idna, punycode, undefined: codecs that read no such bytes
        ascii_kept = single_byte = False
    if not (ascii_kept and single_byte):
        raise UserError("CORPUS_ENCODING=%s is not a single-byte encoding that keeps ASCII; "
                        "convert the text first: iconv -f %s -t utf-8 FILE > FILE.utf8"
                        % (name, name))
    return codec.name


def _share(part, whole):
    return "%.2f%%" % (100.0 * part / max(whole, 1))


def _looks_utf16(raw):
    """UTF-16 with a byte-order mark, or ASCII-range text with a NUL in every other byte
    (a binary file has NULs at both parities)."""
    if raw[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return True
    even, odd = raw[0::2], raw[1::2]
    return len(raw) >= 8 and min(even.count(0), odd.count(0)) < 0.05 * len(odd) and \
        max(even.count(0), odd.count(0)) > 0.9 * len(odd)


def refuse_nul(path: str, line_number: int, raw: bytes) -> NoReturn:
    if _looks_utf16(raw):
        raise UserError("%s is UTF-16 text (NUL bytes between the letters), not UTF-8; convert "
                        "it: iconv -f utf-16 -t utf-8 %s > %s.utf8, then CORPUS=%s.utf8"
                        % (path, path, path, path))
    raise UserError("%s holds NUL bytes (first on line %d): it is not text (a binary file?); "
                    "give plain-text files: CORPUS=path/to/text.txt, .gz or a directory of them"
                    % (path, line_number))


def check_invalid_share(scan: _Scan, final: bool) -> None:
    """Refuses `scan`'s file when its invalid bytes are far above a real corpus's share."""
    if scan.invalid < MIN_INVALID_TO_REFUSE or scan.invalid <= MAX_INVALID_SHARE * scan.bytes:
        return
    if not final and scan.bytes < scan.next_check:
        return
    scan.next_check = scan.bytes + CHECK_EVERY_BYTES
    what = "%s is not %s text: %d of the %d bytes read (%s; real corpora have none, the limit " \
           "is %s) are invalid in %s" % (
               scan.path, "UTF-8" if scan.encoding == "utf-8" else scan.encoding, scan.invalid,
               scan.bytes, _share(scan.invalid, scan.bytes), _share(MAX_INVALID_SHARE, 1),
               "UTF-8" if scan.encoding == "utf-8" else scan.encoding)
    spanish = sum(n for value, n in scan.invalid_values.items() if value in SPANISH_8BIT)
    if scan.encoding == "utf-8" and spanish >= 0.9 * scan.invalid:
        legacy = "cp1252" if any(v in CP1252_ONLY for v in scan.invalid_values) else "latin1"
        number, raw = scan.first_bad_line
        example = " ".join(raw.decode("cp1252", "replace").split())[:60]
        raise UserError("%s; they read as Spanish text saved as %s (line %d: %r); convert it: "
                        "iconv -f %s -t utf-8 %s > %s.utf8 and use CORPUS=%s.utf8, or read it as "
                        "it is with CORPUS_ENCODING=%s"
                        % (what, "CP1252" if legacy == "cp1252" else "Latin-1", number,
                           example, legacy, scan.path, scan.path, scan.path, legacy))
    raise UserError("%s; is it a text file? give UTF-8 text (iconv -f ENCODING -t utf-8 converts "
                    "it) or name its encoding with CORPUS_ENCODING=" % what)


def check_not_utf8_read_as_legacy(scan: _Scan) -> None:
    """CORPUS_ENCODING=latin1 on a file that is valid UTF-8 would turn 'ó' into 'Ã³'."""
    if scan.encoding != "utf-8" and scan.non_ascii_lines >= 3 and \
            scan.utf8_lines == scan.non_ascii_lines:
        raise UserError("%s is UTF-8 text (all of its %d lines with accented letters are valid "
                        "UTF-8), but CORPUS_ENCODING=%s would read 'corazón' as 'corazÃ³n'; "
                        "leave CORPUS_ENCODING empty" % (scan.path, scan.non_ascii_lines,
                                                         scan.encoding))


def list_sources(corpus: str, note: Optional[Callable[[str], Any]] = None) -> List[str]:
    """The input files named by `corpus` (paths joined with ':'), in reading order.

    In a directory only the regular *.txt/*.gz files directly inside are read; one of those
    names that is something else (a FIFO, a device, a broken link: reading would block, never
    end or fail) is skipped, and note(text) says so.
    """
    files = []
    for path in [p for p in corpus.split(os.pathsep) if p]:
        if os.path.isdir(path):
            names = sorted(n for n in os.listdir(path) if n.endswith(TEXT_SUFFIXES))
            found = [os.path.join(path, n) for n in names
                     if os.path.isfile(os.path.join(path, n))]
            for name in names:
                kind = paths.kind_of(os.path.join(path, name))
                if note and kind not in ("regular file", "directory"):
                    note("skipping %s: a %s, not a text file" % (os.path.join(path, name), kind))
            if not found:
                raise UserError("CORPUS directory %s holds no %s files" % (
                    path, "/".join("*" + s for s in TEXT_SUFFIXES)))
            files.extend(found)
        elif os.path.isfile(path):
            files.append(path)
        elif paths.kind_of(path) is None:
            raise UserError("CORPUS=%s: no such file or directory" % path)
        else:   # a FIFO would block the read: say what it is
            raise UserError("CORPUS=%s is a %s; give a text file (.txt, .gz) or a directory"
                            % (path, paths.kind_of(path)))
    seen, unique = set(), []
    for f in files:   # fortunes-es ships NAME.u8 links to NAME: read each file once
        real = os.path.realpath(f)
        if real not in seen:
            seen.add(real)
            unique.append(f)
    if not unique:
        raise UserError("CORPUS names no file")
    return unique


def _open_binary(path):
    if path.endswith(".gz"):
        return gzip.open(path, "rb")
    return open(path, "rb")


def read_documents(sources: Sequence[str], train_size: int, stats: Dict[str, Any],
                   progress: Optional[Callable[[int], Any]] = None,
                   encoding: str = DEFAULT_ENCODING) -> Iterator[List[str]]:
    """Yields lists of normalized lines (documents) from the first `train_size` input lines.

    Counts the input lines read in stats["input_lines"], and the invalid bytes dropped per
    file in stats["invalid_bytes_by_file"]; refuses a file that is not text (see the top).
    """
    stats["input_lines"] = 0
    stats["invalid_bytes_by_file"] = {}
    legacy = encoding != "utf-8"
    for path in sources:
        document = []
        scan = _scan[0] = _Scan(path, encoding)
        line_number = 0
        try:
            with _open_binary(path) as f:
                for raw in f:
                    if stats["input_lines"] >= train_size:
                        break
                    stats["input_lines"] += 1
                    line_number += 1
                    if progress and stats["input_lines"] % 20000 == 0:
                        progress(stats["input_lines"])
                    if b"\0" in raw:
                        refuse_nul(path, line_number, raw)
                    scan.bytes += len(raw)
                    before = scan.invalid
                    line = raw.decode(encoding, "electra_count_drop").strip().lstrip("\ufeff")
                    if scan.invalid != before:
                        if scan.first_bad_line is None:
                            scan.first_bad_line = (line_number, raw)
                        check_invalid_share(scan, final=False)
                    if legacy and not raw.isascii():
                        scan.non_ascii_lines += 1
                        try:
                            raw.decode("utf-8")
                            scan.utf8_lines += 1
                        except UnicodeDecodeError:
                            pass
                    if not line or line in DOCUMENT_SEPARATORS:
                        if document:
                            yield document
                            document = []
                    else:
                        document.append(" ".join(line.split()))
        except EOFError as e:
            if SLICE_MARK not in os.path.basename(path):
                raise UserError("cannot read %s: %s (a truncated file? for the download, "
                                "remove it and run again)" % (path, e))
            # A downloaded slice ends mid-stream by design: its last line may be cut.
            if document:
                document.pop()
        except (OSError, zlib.error) as e:
            raise UserError("cannot read %s: %s (a truncated or corrupt file? for the "
                            "download, remove it and run again)" % (path, e))
        finally:
            _scan[0] = None
        check_invalid_share(scan, final=True)
        check_not_utf8_read_as_legacy(scan)
        if scan.invalid:
            stats["invalid_bytes_by_file"][path] = scan.invalid
        if document:
            yield document
        if stats["input_lines"] >= train_size:
            break


def source_bytes(sources: Sequence[str]) -> int:
    """The text size of the sources (a .gz file's by its trailer, which holds it mod 4 GB)."""
    total = 0
    for path in sources:
        size = os.path.getsize(path)
        if path.endswith(".gz") and size >= 18:
            with open(path, "rb") as f:
                f.seek(-4, os.SEEK_END)
                size = max(size, int.from_bytes(f.read(4), "little"))
        total += size
    return total


def write_corpus(sources: Sequence[str], out_dir: str, train_size: int, num_files: int,
                 log: TextIO = sys.stderr, encoding: str = DEFAULT_ENCODING
                 ) -> Dict[str, Any]:
    """Normalizes `sources` into `out_dir`/part-*.txt; returns the statistics."""
    try:
        return _write_corpus(sources, out_dir, train_size, num_files, log, encoding)
    except OSError as e:
        # The text is written twice at the peak (the whole, then its parts), never more.
        full = fsutil.disk_full_error(e, os.path.dirname(os.path.abspath(out_dir)),
                               2 * source_bytes(sources))
        if full is None:
            raise
        raise full


def _write_corpus(sources, out_dir, train_size, num_files, log, encoding):
    _dropped[0] = 0
    started = time.time()

    last = [started]

    def progress(n):
        if time.time() - last[0] < 2.0:
            return
        last[0] = time.time()
        rate = n / max(time.time() - started, 1e-6)
        log.write("corpus: %d / %d lines (%.0f lines/s, ETA %s at most)\n" % (
            n, train_size, rate, download.human_seconds((train_size - n) / rate)))
        log.flush()

    # Pass 1: normalized documents into one file, remembering each document's size.
    whole = os.path.join(out_dir, ".all.txt")
    doc_bytes, lines, counts = [], 0, {}
    with open(whole, "w", encoding="utf-8") as out:
        for document in read_documents(sources, train_size, counts, progress, encoding):
            text = "\n".join(document) + "\n"
            out.write(text + "\n")
            doc_bytes.append(len(text.encode("utf-8")))
            lines += len(document)
    stats = {
        "sources": sources, "train_size": train_size,
        "input_lines": counts["input_lines"],
        "lines": lines, "documents": len(doc_bytes), "bytes": sum(doc_bytes),
        "dropped_invalid_bytes": _dropped[0],
        "invalid_bytes_by_file": counts["invalid_bytes_by_file"],
        "encoding": encoding,
    }
    if not doc_bytes:
        os.remove(whole)
        raise UserError("the corpus is empty after normalization (%d input lines from %s, none "
                        "with text); give a corpus with text: CORPUS=path"
                        % (stats["input_lines"], ", ".join(sources)))

    # Pass 2: K files of about total/K bytes each, cut at document boundaries.
    share = stats["bytes"] / float(num_files)
    names = []
    index, written, out = 0, 0, None

    def open_part(i):
        name = "part-%05d-of-%05d.txt" % (i, num_files)
        names.append(name)
        return open(os.path.join(out_dir, name), "w", encoding="utf-8")

    with open(whole, encoding="utf-8") as f:
        out = open_part(0)
        doc_index, in_doc, doc_is_long = 0, False, doc_bytes[0] > share
        for line in f:
            if line == "\n":                      # end of a document
                out.write("\n")
                in_doc = False
                doc_index += 1
                if doc_index < len(doc_bytes):
                    doc_is_long = doc_bytes[doc_index] > share
                continue
            boundary_reached = written >= share * (index + 1) and index < num_files - 1
            if boundary_reached and (not in_doc or doc_is_long):
                out.close()
                index += 1
                out = open_part(index)
            out.write(line)
            written += len(line.encode("utf-8"))
            in_doc = True
        out.close()
    os.remove(whole)
    stats["files"] = len(names)
    stats["file_bytes"] = {n: os.path.getsize(os.path.join(out_dir, n)) for n in names}
    stats["bytes"] = sum(stats["file_bytes"].values())    # what the builder will read
    stats["seconds"] = round(time.time() - started, 2)
    return stats


def format_stats(stats: Mapping[str, Any]) -> str:
    return ("corpus: %(lines)d lines in %(documents)d documents, %(bytes)d bytes, "
            "%(dropped_invalid_bytes)d invalid %(what)s bytes dropped, %(files)d files "
            "(from %(input_lines)d input lines)"
            % dict(stats, what="UTF-8" if stats.get("encoding", "utf-8") == "utf-8"
                   else stats["encoding"]))


def build(data_dir: str, corpus: str, train_size: int, num_files: int,
          url: str = download.OPENSUBTITLES_ES_URL, download_bytes: Optional[int] = None,
          encoding: str = DEFAULT_ENCODING) -> Dict[str, Any]:
    fsutil.check_replaceable(data_dir, paths.corpus_stats_file(data_dir),
                             "move it away (the corpus stage writes its statistics there)")
    heldout, debian_stats = None, None
    if corpus:
        parts = []
        for part in corpus.split(os.pathsep):
            if debian_corpus.is_debian_es(part):
                if heldout is not None:
                    raise UserError("CORPUS names debian-es twice; name it once (debian-es=PKG,"
                                    "PKG for some of its packages)")
                text, heldout, debian_stats = debian_corpus.prepare(data_dir, part, num_files)
                parts.append(text)
            else:
                parts.append(part)
        sources = list_sources(os.pathsep.join(parts), note=lambda text: sys.stderr.write(
            "corpus: note: %s\n" % text))
    else:
        name = os.path.basename(url)
        if download_bytes:   # a slice: the first bytes of the .gz hold the first lines
            name = "%s%s%d.gz" % (name[:-3], SLICE_MARK, download_bytes) \
                if name.endswith(".gz") else "%s%s%d" % (name, SLICE_MARK, download_bytes)
        dest = os.path.join(paths.downloads_dir(data_dir), name)
        sources = [download.download(url, dest, max_bytes=download_bytes)]
    with atomic_output_dir(paths.corpus_dir(data_dir),
                           lambda rel: PART_NAME.match(rel) is not None,
                           what="corpus directory") as out_dir:
        stats = write_corpus(sources, out_dir, train_size, num_files, encoding=encoding)
        # The stats beside corpus/ describe the old corpus until rewritten below: remove them
        # before the new corpus takes its place, so a kill in between leaves none, not wrong ones.
        for path in (paths.corpus_stats_file(data_dir), paths.corpus_heldout_file(data_dir)):
            if os.path.exists(path):
                os.remove(path)
    stats["corpus_dir"] = paths.corpus_dir(data_dir)
    if debian_stats is not None:
        stats["debian_es"] = dict(debian_stats, heldout_file=paths.corpus_heldout_file(data_dir))
    try:
        if heldout is not None:
            with open(heldout, encoding="utf-8") as f:
                atomic_write_text(paths.corpus_heldout_file(data_dir), f.read())
        fsutil.write_owned_text(data_dir, paths.corpus_stats_file(data_dir),
                                json.dumps(stats, indent=2) + "\n")
    except OSError as e:
        full = fsutil.disk_full_error(e, os.path.abspath(data_dir), what="the corpus statistics")
        if full is None:
            raise
        raise full
    print(format_stats(stats))
    print("corpus: wrote %s (stats: %s)" % (paths.corpus_dir(data_dir),
                                             paths.corpus_stats_file(data_dir)))
    if heldout is not None:
        print("corpus: %d held-out sentences (not in the corpus) in %s" % (
            debian_stats["heldout_sentences"], paths.corpus_heldout_file(data_dir)))
    return stats


def main(argv: Optional[List[str]] = None) -> None:
    parser = ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--corpus", default=default("CORPUS"),
                        help="local .txt/.gz file or directory, or debian-es[=PKG,PKG] "
                             "(several joined with ':'); empty: download OpenSubtitles v2016 es")
    parser.add_argument("--train-size", default=default("TRAIN_SIZE"),
                        help="input lines kept (TRAIN_SIZE)")
    parser.add_argument("--num-files", default=default("NUM_PROCESSES"),
                        help="output files, one per builder process (NUM_PROCESSES)")
    parser.add_argument("--url", default=download.OPENSUBTITLES_ES_URL)
    parser.add_argument("--download-bytes", default=default("DOWNLOAD_BYTES"),
                        help="download only the first N bytes (a slice); empty: all")
    parser.add_argument("--corpus-encoding", default=from_environment("CORPUS_ENCODING"),
                        help="encoding of the CORPUS files: utf-8 (default) or a single-byte "
                             "one such as latin1 or cp1252 (default: $CORPUS_ENCODING)")
    args = parser.parse_args(argv)
    encoding = check_encoding(args.corpus_encoding)
    train_size = positive_int(args.train_size, "TRAIN_SIZE")
    num_files = positive_int(args.num_files, "NUM_PROCESSES")
    download_bytes = positive_int(args.download_bytes, "DOWNLOAD_BYTES") \
        if args.download_bytes.strip() else None
    os.makedirs(args.data_dir, exist_ok=True)
    if encoding != DEFAULT_ENCODING and not args.corpus.strip():
        raise UserError("CORPUS_ENCODING=%s applies to a local CORPUS; OpenSubtitles is UTF-8: "
                        "leave CORPUS_ENCODING empty" % args.corpus_encoding)
    build(args.data_dir, args.corpus.strip(), train_size, num_files, url=args.url,
          download_bytes=download_bytes, encoding=encoding)


if __name__ == "__main__":
    run_main(main)
