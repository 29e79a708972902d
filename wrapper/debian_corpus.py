"""CORPUS=debian-es: Spanish pretraining text from Debian's Spanish packages, offline.

    python -m wrapper.debian_corpus --data-dir D [--packages PKG,PKG] [--processes N]

The packages and where their text lies are wrapper/text_packages.py's DEBIAN_ES. The corpus
stage (wrapper/corpus.py) builds this when CORPUS names `debian-es` (all of them) or
`debian-es=PKG,PKG` (a subset, e.g. for a quick build), then reads the result as any text.

What a document is, and what its lines are:
- a fortune of fortunes-es: its lines as they are (make demo reads them the same way);
- an HTML page or a man page: its prose, one sentence per line (wrapper/html_text.py,
  wrapper/roff_text.py, wrapper/spanish_text.py): no markup, navigation, code blocks,
  copyright lines, fragments with few letters, or lines that are not Spanish.
A line seen before (in any earlier document, or among the held-out sentences) is dropped.
Files are read in DEBIAN_ES's order, each package's files sorted by path: the same packages
give the same bytes.

Held-out sentences: an HTML or man page whose path's SHA-256 is 0 modulo HELDOUT_MODULO is
not in the corpus; its sentences go to DATA_DIR/corpus-heldout.txt (one a line), to test the
model on Spanish it has not read. Its sentences are dropped from every other document too.

The result is cached in DATA_DIR/.cache/debian-es/ under the installed packages' versions
(dpkg), the selection and EXTRACTION_VERSION: a rebuild of the corpus with another TRAIN_SIZE
or NUM_PROCESSES reads it again instead of parsing thousands of pages.
"""
import fnmatch
import gzip
import hashlib
import json
import multiprocessing
import os
import sys
import time
from typing import Any, Dict, List, Sequence, Tuple

from wrapper import download, fsutil, html_text, paths, roff_text, spanish_text, text_packages
from wrapper.cli import ArgumentParser, UserError, positive_int, run_main

NAME = "debian-es"
HELDOUT_MODULO = 50
# Part of the cache key: raise it when a change to the extraction changes its output.
EXTRACTION_VERSION = 1
CORPUS_FILE, HELDOUT_FILE, STATS_FILE = "corpus.txt", "heldout.txt", "stats.json"


def is_debian_es(part: str) -> bool:
    """Whether one ':'-separated part of CORPUS names this corpus (not a path)."""
    return part == NAME or part.startswith(NAME + "=")


def selection(part: str) -> List[text_packages.DebianText]:
    """The DEBIAN_ES entries that `part` (debian-es or debian-es=PKG,PKG) names."""
    if part == NAME:
        return list(text_packages.DEBIAN_ES)
    wanted = [p for p in part[len(NAME) + 1:].split(",") if p]
    known = {entry.package: entry for entry in text_packages.DEBIAN_ES}
    unknown = [p for p in wanted if p not in known]
    if unknown or not wanted:
        raise UserError("CORPUS=%s: %s; choose among %s (or CORPUS=debian-es for all)" % (
            part, "unknown package %s" % ", ".join(unknown) if unknown else "no package named",
            ",".join(e.package for e in text_packages.DEBIAN_ES)))
    return [e for e in text_packages.DEBIAN_ES if e.package in wanted]


def ensure_installed(entries):
    """Installs what is missing as root with apt-get, else one line with the command."""
    text_packages.ensure_installed(
        [(e.package, e.root) for e in entries], user="CORPUS=debian-es", partial_ok=False,
        way_out="or build from the installed ones: CORPUS=debian-es=PACKAGE,PACKAGE "
                "(any of %s)" % ",".join(e.package for e in text_packages.DEBIAN_ES))


def files_of(entry):
    """The text files of one package, sorted by path (links to a file already listed and
    links that lead nowhere are left out)."""
    found = []
    for root, dirs, files in os.walk(entry.root):
        dirs.sort()
        for name in sorted(files):
            full = os.path.join(root, name)
            if fnmatch.fnmatch(os.path.relpath(full, entry.root), entry.pattern) and \
                    os.path.isfile(full):
                found.append(full)
    seen, unique = set(), []
    for path in sorted(found):
        real = os.path.realpath(path)
        if real not in seen:
            seen.add(real)
            unique.append(path)
    return unique


def is_heldout(path, kind):
    if kind == "fortunes":
        return False     # the fortunes are read as make demo reads them, all of them
    digest = hashlib.sha256(path.encode("utf-8")).hexdigest()
    return int(digest, 16) % HELDOUT_MODULO == 0


def read_text(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        return f.read().decode("utf-8", "replace")


def fortunes(text):
    """The fortunes of one fortunes file, each a list of lines."""
    found, current = [], []
    for line in text.splitlines():
        line = spanish_text.normalize(line)
        if line == "%" or not line:
            if current:
                found.append(current)
            current = []
        else:
            current.append(line)
    if current:
        found.append(current)
    return found


def extract(item):
    """(path, kind) -> the documents of that file, each a list of lines."""
    path, kind = item
    try:
        text = read_text(path)
    except (OSError, EOFError) as e:
        raise UserError("cannot read %s: %s (reinstall its package)" % (path, e))
    if kind == "fortunes":
        return fortunes(text)
    paragraphs = html_text.paragraphs(text) if kind == "html" else roff_text.paragraphs(text)
    lines = [s for p in paragraphs for s in spanish_text.split_sentences(
        spanish_text.normalize(p)) if spanish_text.keep_sentence(s)]
    return [lines] if lines else []


def cache_key(entries: Sequence[text_packages.DebianText]) -> Dict[str, Any]:
    versions = text_packages.installed_versions([e.package for e in entries])
    return {"packages": [[e.package, versions.get(e.package, "")] for e in entries],
            "extraction_version": EXTRACTION_VERSION, "heldout_modulo": HELDOUT_MODULO}


def cached(data_dir, key):
    """The cache's statistics when it was built for `key` and is complete, else None."""
    directory = paths.debian_cache_dir(data_dir)
    try:
        with open(os.path.join(directory, STATS_FILE), encoding="utf-8") as f:
            stats = json.load(f)
    except (OSError, ValueError):
        return None
    complete = all(os.path.isfile(os.path.join(directory, n)) for n in (CORPUS_FILE,
                                                                          HELDOUT_FILE))
    return stats if complete and stats.get("key") == key else None


def _mapped(items, processes):
    """extract() over `items`, in their order, in `processes` processes."""
    if processes <= 1 or len(items) < 2:
        for item in items:
            yield extract(item)
        return
    pool = multiprocessing.Pool(processes)
    try:
        for result in pool.imap(extract, items, chunksize=4):
            yield result
    finally:
        pool.terminate()
        pool.join()


def build(data_dir, entries, processes=1, log=sys.stderr):
    """Writes the cache for `entries` (unless it is up to date); returns its statistics."""
    key = cache_key(entries)
    stats = cached(data_dir, key)
    if stats is not None:
        log.write("debian-es: reusing %s (same package versions)\n"
                  % paths.debian_cache_dir(data_dir))
        return stats
    started = time.time()
    items = [(path, e.kind, e.package) for e in entries for path in files_of(e)]
    heldout_items = [i for i in items if is_heldout(i[0], i[1])]
    directory = paths.debian_cache_dir(data_dir)
    os.makedirs(directory, exist_ok=True)
    # The statistics say the cache is complete: gone until it is again. A killed run's
    # partial files (fsutil.partial_path) are removed (unless its run is still going).
    if os.path.exists(os.path.join(directory, STATS_FILE)):
        os.remove(os.path.join(directory, STATS_FILE))
    for name in os.listdir(directory):
        written, partial, pid = name.rpartition(".partial-")
        if partial and written in (CORPUS_FILE, HELDOUT_FILE, STATS_FILE) and pid.isdigit() \
                and not fsutil.pid_alive(int(pid)):
            os.remove(os.path.join(directory, name))
    per_package = {e.package: dict(files=0, documents=0, lines=0, bytes=0, heldout_documents=0,
                                   heldout_sentences=0) for e in entries}
    # The held-out pages first: their sentences are kept out of every other document.
    seen, heldout = set(), []
    # (the extraction first in zip: it runs to its end, which closes its processes)
    for documents, (_, _, package) in zip(_mapped([i[:2] for i in heldout_items], processes),
                                          heldout_items):
        per_package[package]["heldout_documents"] += 1
        for line in (l for d in documents for l in d):
            if line not in seen:
                seen.add(line)
                heldout.append(line)
                per_package[package]["heldout_sentences"] += 1
    corpus_items = [i for i in items if not is_heldout(i[0], i[1])]
    # Each file whole or not at all (fsutil.atomic_file); the statistics, written last, say
    # that both belong to this build.
    fsutil.atomic_write_text(os.path.join(directory, HELDOUT_FILE),
                             "".join(line + "\n" for line in heldout))
    with fsutil.atomic_file(os.path.join(directory, CORPUS_FILE)) as out:
        _write_documents(out, corpus_items, processes, seen, per_package, started, log)
    totals = {k: sum(p[k] for p in per_package.values()) for k in (
        "files", "documents", "lines", "bytes", "heldout_documents", "heldout_sentences")}
    stats = dict(key=key, packages=per_package, seconds=round(time.time() - started, 1),
                 **totals)
    fsutil.atomic_write_text(os.path.join(directory, STATS_FILE),
                             json.dumps(stats, indent=1, sort_keys=True) + "\n")
    log.write("debian-es: %(lines)d lines in %(documents)d documents, %(bytes)d bytes, "
              "%(heldout_sentences)d held-out sentences, in %(seconds).1f s\n" % stats)
    log.flush()
    return stats


def _write_documents(out, items, processes, seen, per_package, started, log):
    """The documents of `items` into the file `out`, without the lines in `seen` (which
    grows)."""
    last = [started]
    for n, (documents, (_, _, package)) in enumerate(zip(_mapped(
            [i[:2] for i in items], processes), items)):
        counts = per_package[package]
        counts["files"] += 1
        for document in documents:
            kept = []
            for line in document:
                if line not in seen:
                    seen.add(line)
                    kept.append(line)
            if kept:
                text = "\n".join(kept) + "\n"
                out.write(text + "\n")
                counts["documents"] += 1
                counts["lines"] += len(kept)
                counts["bytes"] += len(text.encode("utf-8"))
        if time.time() - last[0] >= 2.0:
            last[0] = time.time()
            rate = (n + 1) / (time.time() - started)
            log.write("debian-es: %d / %d files (%s), ETA %s\n" % (
                n + 1, len(items), package,
                download.human_seconds((len(items) - n - 1) / rate)))
            log.flush()


def prepare(data_dir: str, part: str, processes: int = 1) -> Tuple[str, str, Dict[str, Any]]:
    """For CORPUS part `part`: the packages installed (or one line saying how), the cache
    built; returns (corpus text file, held-out sentences file, statistics)."""
    entries = selection(part)
    ensure_installed(entries)
    directory = paths.debian_cache_dir(data_dir)
    try:
        stats = build(data_dir, entries, processes)
    except OSError as e:
        full = fsutil.disk_full_error(e, os.path.abspath(data_dir), what="the debian-es text")
        if full is None:
            raise
        raise full
    return os.path.join(directory, CORPUS_FILE), os.path.join(directory, HELDOUT_FILE), stats


def main(argv=None):
    parser = ArgumentParser(prog="python -m wrapper.debian_corpus",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--packages", default="",
                        help="a subset of the packages, joined with ',' (default: all)")
    parser.add_argument("--processes", default="1", help="parallel extraction processes")
    args = parser.parse_args(argv)
    part = NAME + ("=" + args.packages if args.packages else "")
    text, heldout, _ = prepare(args.data_dir, part, positive_int(args.processes, "--processes"))
    print("debian-es: wrote %s and %s" % (text, heldout))
    return 0


if __name__ == "__main__":
    run_main(main)
