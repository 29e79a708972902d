"""DATA_DIR/corpus: the pretraining text in the dataset builder's format.

    python -m wrapper.corpus --data-dir D [--corpus PATH[:PATH...]] [--train-size N] [--num-files K]

Source: by default the tutorial's OpenSubtitles v2016 Spanish monolingual file, downloaded
(resumably) into DATA_DIR/downloads; or local text: a .txt / .gz file, or a directory whose
*.txt, *.gz and *.fortunes files are read in sorted order (not recursively). Several paths
are joined with ':'. The first TRAIN_SIZE input lines are kept, as the tutorial's `head -n`.

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

Invalid UTF-8 bytes are dropped and counted (the reference builder would die on them).
The text is split into K files (K = builder processes, so all of them work), cut at document
boundaries so that the files have about the same size; a document longer than one file's
share (OpenSubtitles) is cut between lines. DATA_DIR/corpus is written aside and renamed into
place when complete; the statistics are printed and saved in DATA_DIR/corpus-stats.json.
"""
import argparse
import codecs
import gzip
import json
import os
import re
import sys
import time
import zlib

from wrapper import download, paths
from wrapper.cli import UserError, run_main
from wrapper.fsutil import atomic_output_dir, atomic_write_text

TEXT_SUFFIXES = (".txt", ".gz", ".fortunes")
PART_NAME = re.compile(r"^part-\d{5}-of-\d{5}\.txt$")
DOCUMENT_SEPARATORS = ("%",)
DEFAULT_TRAIN_SIZE = 1000000
SLICE_MARK = ".first-"    # in the name of a downloaded slice, whose gzip stream is cut short

_dropped = [0]


def _count_and_drop(error):
    _dropped[0] += error.end - error.start
    return "", error.end


codecs.register_error("electra_count_drop", _count_and_drop)


def positive_int(text, name):
    try:
        value = int(str(text).strip())
    except ValueError:
        value = 0
    if value <= 0 or str(text).strip().startswith("+"):
        raise UserError("%s must be a positive integer, got %r" % (name, text))
    return value


def list_sources(corpus):
    """The input files named by `corpus` (paths joined with ':'), in reading order."""
    files = []
    for path in [p for p in corpus.split(os.pathsep) if p]:
        if os.path.isdir(path):
            names = sorted(n for n in os.listdir(path) if n.endswith(TEXT_SUFFIXES))
            found = [os.path.join(path, n) for n in names
                     if os.path.isfile(os.path.join(path, n))]
            if not found:
                raise UserError("CORPUS directory %s holds no %s files" % (
                    path, "/".join("*" + s for s in TEXT_SUFFIXES)))
            files.extend(found)
        elif os.path.isfile(path):
            files.append(path)
        else:
            raise UserError("CORPUS=%s: no such file or directory" % path)
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


def read_documents(sources, train_size, stats, progress=None):
    """Yields lists of normalized lines (documents) from the first `train_size` input lines.

    Counts the input lines read in stats["input_lines"].
    """
    stats["input_lines"] = 0
    for path in sources:
        document = []
        try:
            with _open_binary(path) as f:
                for raw in f:
                    if stats["input_lines"] >= train_size:
                        break
                    stats["input_lines"] += 1
                    if progress and stats["input_lines"] % 20000 == 0:
                        progress(stats["input_lines"])
                    line = raw.decode("utf-8", "electra_count_drop").strip().lstrip("\ufeff")
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
        if document:
            yield document
        if stats["input_lines"] >= train_size:
            break


def write_corpus(sources, out_dir, train_size, num_files, log=sys.stderr):
    """Normalizes `sources` into `out_dir`/part-*.txt; returns the statistics."""
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
        for document in read_documents(sources, train_size, counts, progress):
            text = "\n".join(document) + "\n"
            out.write(text + "\n")
            doc_bytes.append(len(text.encode("utf-8")))
            lines += len(document)
    stats = {
        "sources": sources, "train_size": train_size,
        "input_lines": counts["input_lines"],
        "lines": lines, "documents": len(doc_bytes), "bytes": sum(doc_bytes),
        "dropped_invalid_bytes": _dropped[0],
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


def format_stats(stats):
    return ("corpus: %(lines)d lines in %(documents)d documents, %(bytes)d bytes, "
            "%(dropped_invalid_bytes)d invalid UTF-8 bytes dropped, %(files)d files "
            "(from %(input_lines)d input lines)" % stats)


def build(data_dir, corpus, train_size, num_files, url=download.OPENSUBTITLES_ES_URL,
          download_bytes=None):
    if corpus:
        sources = list_sources(corpus)
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
        stats = write_corpus(sources, out_dir, train_size, num_files)
        # The stats beside corpus/ describe the old corpus until rewritten below: remove them
        # before the new corpus takes its place, so a kill in between leaves none, not wrong ones.
        if os.path.exists(paths.corpus_stats_file(data_dir)):
            os.remove(paths.corpus_stats_file(data_dir))
    stats["corpus_dir"] = paths.corpus_dir(data_dir)
    atomic_write_text(paths.corpus_stats_file(data_dir), json.dumps(stats, indent=2) + "\n")
    print(format_stats(stats))
    print("corpus: wrote %s (stats: %s)" % (paths.corpus_dir(data_dir),
                                             paths.corpus_stats_file(data_dir)))
    return stats


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--corpus", default="",
                        help="local .txt/.gz file or directory (several joined with ':'); "
                             "empty: download OpenSubtitles v2016 es")
    parser.add_argument("--train-size", default=str(DEFAULT_TRAIN_SIZE),
                        help="input lines kept (TRAIN_SIZE)")
    parser.add_argument("--num-files", default="1",
                        help="output files, one per builder process (NUM_PROCESSES)")
    parser.add_argument("--url", default=download.OPENSUBTITLES_ES_URL)
    parser.add_argument("--download-bytes", default="",
                        help="download only the first N bytes (a slice); empty: all")
    args = parser.parse_args(argv)
    train_size = positive_int(args.train_size, "TRAIN_SIZE")
    num_files = positive_int(args.num_files, "NUM_PROCESSES")
    download_bytes = positive_int(args.download_bytes, "DOWNLOAD_BYTES") \
        if args.download_bytes.strip() else None
    os.makedirs(args.data_dir, exist_ok=True)
    build(args.data_dir, args.corpus.strip(), train_size, num_files, url=args.url,
          download_bytes=download_bytes)


if __name__ == "__main__":
    run_main(main, "corpus")
