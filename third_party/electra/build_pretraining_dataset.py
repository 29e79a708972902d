# coding=utf-8
"""Writes ELECTRA pretraining examples (TFRecords) from a directory of text files.

A drop-in replacement for the reference's script of the same name: same command line,
same examples in the same shards (given --seed), but it
  - never deletes anything but its own shards, refuses an output directory holding
    anything else, and swaps the new shards in only when every job has succeeded;
  - rejects bad input (corpus, vocab, flags) with one clear line;
  - drops invalid UTF-8 bytes (and says how many) instead of dying on the first one;
  - warns, with the count of tokens thrown away, about lines longer than an example (the
    reference silently keeps the first max-seq-length tokens of such a line);
  - says which directory is full when the disk fills, and which signal killed a job;
  - tokenizes with fast_tokenization.BulkTokenizer (equal to tokenization.FullTokenizer,
    which `--tokenizer plain` uses) and writes TFRecords without TensorFlow.

Each job j of --num-processes takes every num_processes-th file of the sorted corpus
listing (starting at j), shuffles them, and writes its examples round-robin into the
output shards i with i % num_processes == j.
"""

import argparse
import codecs
import errno
import gc
import multiprocessing
import os
import queue
import random
import re
import signal
import sys
import time

import fast_tokenization
import tfrecord_io
import tokenization

PROG = "build_pretraining_dataset.py"
SHARD_NAME = "pretrain_data.tfrecord-%d-of-%d"
SHARD_NAME_RE = re.compile(r"pretrain_data\.tfrecord-\d+-of-\d+$")
# Words that people pass to --blanks-separate-docs meaning "no" (the reference reads them as True).
FALSE_WORDS = ("false", "f", "no", "n", "0", "off")
READ_CHUNK_BYTES = 1 << 20        # files are read in chunks of whole lines of about this size
FLUSH_EVERY_BYTES = 64 << 20      # record bytes buffered per job before they are written out
PROGRESS_EVERY_SECONDS = 1.0


class UserError(Exception):
  """Bad input: reported as one line, exit status 2."""


# ---------------------------------------------------------------------------------------
# Examples


class ExampleBuilder(object):
  """Packs consecutive lines (sentences of token ids) into examples, as the reference does.

  All randomness is Python's `random`, drawn in the reference's order: per example
  r1 (single-segment example?), then a coin per sentence that could go either way,
  then r2 (short target length next time?) and possibly randint.
  """

  def __init__(self, cls_id, sep_id, max_length):
    self._cls_id = cls_id
    self._sep_id = sep_id
    self._max_length = max_length
    self._current_sentences = []
    self._current_length = 0
    self._target_length = max_length
    # Lines longer than an example: how many, the longest, and the tokens their examples
    # threw away (a warning, since the reference drops them without a word).
    self.overlong_lines = 0
    self.longest_line = 0
    self.thrown_tokens = 0

  def add_line(self, ids):
    """ids: token ids of a non-empty line, or None for an empty line.

    Returns (input_ids, first_part_length) when an example is complete, else None.
    """
    if ids is None:
      if self._current_length != 0:
        return self._create_example()
      return None
    self._current_sentences.append(ids)
    self._current_length += len(ids)
    if self._current_length >= self._target_length:
      return self._create_example()
    return None

  def add_lines(self, lines_ids):
    """add_line for many lines at once; returns the completed examples in order."""
    examples = []
    sentences = self._current_sentences
    length = self._current_length
    target = self._target_length
    for ids in lines_ids:
      if ids is None:
        if length == 0:
          continue
      else:
        sentences.append(ids)
        length += len(ids)
        if length < target:
          continue
      self._current_length = length
      examples.append(self._create_example())
      sentences = self._current_sentences
      length = 0
      target = self._target_length
    self._current_length = length
    return examples

  def _create_example(self):
    if random.random() < 0.1:
      first_target = 100000            # a single-segment example
    else:
      first_target = (self._target_length - 3) // 2
    first = []
    second = []
    for sentence in self._current_sentences:
      if (not first or len(first) + len(sentence) < first_target or
          (not second and len(first) < first_target and random.random() < 0.5)):
        first.extend(sentence)
      else:
        second.extend(sentence)
    max_length = self._max_length
    length = len(first) + len(second)
    first = first[:max_length - 2]
    second = second[:max(0, max_length - len(first) - 3)]
    if length > max_length:
      overlong = [len(s) for s in self._current_sentences if len(s) > max_length]
      if overlong:
        self.overlong_lines += len(overlong)
        self.longest_line = max(self.longest_line, max(overlong))
        self.thrown_tokens += length - len(first) - len(second)

    self._current_sentences = []
    self._current_length = 0
    if random.random() < 0.05:
      self._target_length = random.randint(5, max_length)
    else:
      self._target_length = max_length

    input_ids = [self._cls_id] + first + [self._sep_id]
    first_part_length = len(input_ids)
    if second:
      input_ids += second
      input_ids.append(self._sep_id)
    return input_ids, first_part_length


class ShardWriter(object):
  """Writes a job's records round-robin into its shards (n-th record -> shard n % k).

  Records are buffered and written shard by shard (opening a file costs more than
  writing a record); every shard file exists after close(), even an empty one.
  """

  def __init__(self, paths):
    self._paths = paths
    self._pending = [[] for _ in paths]
    self._pending_bytes = 0
    self._next = 0
    self._created = False
    self.records = 0
    self.record_bytes = 0           # framed size of every record given to write()

  def write(self, payload):
    self._pending[self._next].append(payload)
    self._next += 1
    if self._next == len(self._paths):
      self._next = 0
    self.records += 1
    self._pending_bytes += len(payload)
    self.record_bytes += len(payload) + 16
    if self._pending_bytes >= FLUSH_EVERY_BYTES:
      self.flush()

  def flush(self):
    flat = [payload for records in self._pending for payload in records]
    crcs = iter(tfrecord_io.crc32c_many(flat))
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if self._created else os.O_TRUNC)
    for path, records in zip(self._paths, self._pending):
      if records or not self._created:
        try:
          fd = os.open(path, flags, 0o666)
          try:
            if records:
              _write_all(fd, tfrecord_io.frame_records(records, [next(crcs) for _ in records]))
          finally:
            os.close(fd)
        except OSError as e:
          raise OSError(e.errno, e.strerror, path)
    self._created = True
    self._pending = [[] for _ in self._paths]
    self._pending_bytes = 0

  def close(self):
    self.flush()


def _write_all(fd, data):
  """os.write may write only part of `data` (a nearly full disk): write the rest, or fail."""
  view = memoryview(data)
  while view:
    view = view[os.write(fd, view):]


# ---------------------------------------------------------------------------------------
# Reading text

_invalid_bytes = [0]


def _drop_invalid_bytes(error):
  _invalid_bytes[0] += error.end - error.start
  return "", error.end


codecs.register_error("electra_drop_and_count", _drop_invalid_bytes)


def decode_utf8(data):
  """(text, number of invalid bytes dropped)."""
  try:
    return data.decode("utf-8"), 0
  except UnicodeDecodeError:
    before = _invalid_bytes[0]
    text = data.decode("utf-8", "electra_drop_and_count")
    return text, _invalid_bytes[0] - before


def read_text_chunks(path, chunk_bytes=READ_CHUNK_BYTES):
  """Yields (text, bytes read, invalid bytes) for chunks of whole lines, without the
  chunk's last "\\n": the lines are text.split("\\n").

  Lines end at "\\n" only, like the reference's reader (a lone "\\r" stays inside the
  line, and strip() removes "\\r" before "\\n"); a last line without "\\n" counts.
  """
  with open(path, "rb") as f:
    rest = b""
    while True:
      block = f.read(chunk_bytes)
      if not block:
        break
      block = rest + block
      cut = block.rfind(b"\n")
      if cut < 0:
        rest = block
        continue
      rest = block[cut + 1:]
      text, invalid = decode_utf8(block[:cut])
      yield text, cut + 1, invalid
    if rest:
      text, invalid = decode_utf8(rest)
      yield text, len(rest), invalid


def mark_blank_lines(text, ids_list, blanks_separate_docs):
  """Per-line ids of text.split("\\n") -> what the example builder is fed.

  A blank line (nothing left after strip()) becomes None (an empty line) when blank lines
  separate documents and is skipped otherwise; any other line is a sentence, even one
  without tokens. Only lines without tokens can be blank, so only those are looked at.
  """
  empty = [i for i, ids in enumerate(ids_list) if not ids]
  if not empty:
    return ids_list
  lines = text.split("\n")
  blank = [i for i in empty if not lines[i].strip()]
  if not blank:
    return ids_list
  if blanks_separate_docs:
    for i in blank:
      ids_list[i] = None
    return ids_list
  blank = set(blank)
  return [ids for i, ids in enumerate(ids_list) if i not in blank]


# ---------------------------------------------------------------------------------------
# One job


class JobConfig(object):
  """What every job needs; plain attributes so that it crosses a fork unchanged."""

  def __init__(self, args, vocab, file_paths, temp_dir):
    self.vocab_file = args.vocab_file
    self.vocab = vocab
    self.max_seq_length = args.max_seq_length
    self.num_processes = args.num_processes
    self.num_out_files = args.num_out_files
    self.blanks_separate_docs = args.blanks_separate_docs
    self.do_lower_case = args.do_lower_case
    self.strip_accents = args.strip_accents
    self.seed = args.seed
    self.tokenizer = args.tokenizer
    self.file_paths = file_paths
    self.temp_dir = temp_dir
    self.output_dir = args.output_dir
    self.total_bytes = sum(os.path.getsize(p) for p in file_paths)


def run_job(job, config, report):
  """Writes job `job`'s shards; report(kind, payload) carries progress and warnings."""
  if config.seed is not None:
    random.seed(config.seed + job)          # before anything else draws
  # Millions of short-lived lists and no reference cycles: the cyclic garbage collector
  # would only rescan the big caches over and over.
  gc.disable()
  try:
    return _run_job_files(job, config, report)
  finally:
    gc.enable()


def disk_full_message(error, output_dir, shard_bytes=None, num_shards=1):
  """One line for a write that failed for lack of space; None for any other error.

  shard_bytes: the estimated size of all shards; on disk each shard takes whole blocks.
  """
  if not isinstance(error, OSError) or error.errno not in (errno.ENOSPC, errno.EDQUOT):
    return None
  parent = os.path.dirname(os.path.realpath(output_dir))
  needed_bytes = None
  try:
    fs = os.statvfs(parent)
    free = " (%.1f MB free of %.1f MB)" % (fs.f_bavail * fs.f_frsize / 1e6,
                                          fs.f_blocks * fs.f_frsize / 1e6)
    if shard_bytes:
      blocks_per_shard = -(-int(shard_bytes / num_shards) // fs.f_bsize) or 1
      needed_bytes = num_shards * blocks_per_shard * fs.f_bsize
  except OSError:
    free = ""
  return ("%s in %s%s while writing the shards for --output-dir %s%s; free some space there "
          "or choose another --output-dir (the previous output, if any, is left as it was)"
          % ("disk quota exceeded" if error.errno == errno.EDQUOT else
             "no space left on the device", parent, free, output_dir,
             "; they need about %.1f MB" % (needed_bytes / 1e6) if needed_bytes else ""))


def _run_job_files(job, config, report):
  files = [path for position, path in enumerate(config.file_paths)
           if position % config.num_processes == job]
  state = {}
  try:
    return _run_job_files_into(job, config, report, files, state)
  except OSError as e:
    # What the shards need in all: this job's bytes per text byte so far, times the corpus.
    writer, stats = state.get("writer"), state.get("stats")
    needed = None
    if writer is not None and stats and stats["bytes"]:
      needed = writer.record_bytes / float(stats["bytes"]) * config.total_bytes
    message = disk_full_message(e, config.output_dir, needed, config.num_out_files)
    if message is None:
      raise
    raise UserError(message)


def _run_job_files_into(job, config, report, files, state):
  random.shuffle(files)

  shard_indices = [i for i in range(config.num_out_files) if i % config.num_processes == job]
  writer = state["writer"] = ShardWriter(
      [os.path.join(config.temp_dir, SHARD_NAME % (i, config.num_out_files))
       for i in shard_indices])
  vocab = config.vocab
  blanks_separate_docs = config.blanks_separate_docs
  builder = ExampleBuilder(vocab["[CLS]"], vocab["[SEP]"], config.max_seq_length)
  serializer = tfrecord_io.ExampleSerializer(len(vocab), config.max_seq_length)
  if config.tokenizer == "plain":
    plain = tokenization.FullTokenizer(config.vocab_file, do_lower_case=config.do_lower_case,
                                       strip_accents=config.strip_accents)

    def lines_to_feed(text):
      """The definition: strip each line; feed the non-empty ones, and the empty ones as
      None when blank lines separate documents."""
      feed = []
      for line in text.split("\n"):
        line = line.strip()
        if line:
          feed.append(plain.convert_tokens_to_ids(plain.tokenize(line)))
        elif blanks_separate_docs:
          feed.append(None)
      return feed
  else:
    bulk = fast_tokenization.BulkTokenizer(vocab, do_lower_case=config.do_lower_case,
                                           strip_accents=config.strip_accents)

    def lines_to_feed(text):
      return mark_blank_lines(text, bulk.ids_of_text(text), blanks_separate_docs)

  add_line = builder.add_line
  add_lines = builder.add_lines
  serialize = serializer.serialize
  write = writer.write
  stats = state["stats"] = {"files": 0, "bytes": 0, "examples": 0, "tokens": 0,
                            "invalid_bytes": 0, "overlong_lines": 0, "thrown_tokens": 0}
  last_report = time.time()
  for path in files:
    overlong_before, thrown_before = builder.overlong_lines, builder.thrown_tokens
    for text, size, invalid in read_text_chunks(path):
      if invalid:
        stats["invalid_bytes"] += invalid
        report("warning", "%s: dropped %d invalid UTF-8 byte(s)" % (path, invalid))
      for input_ids, first_part_length in add_lines(lines_to_feed(text)):
        stats["tokens"] += len(input_ids)
        write(serialize(input_ids, first_part_length))
      stats["bytes"] += size
      now = time.time()
      if now - last_report >= PROGRESS_EVERY_SECONDS:
        last_report = now
        stats["examples"] = writer.records
        report("progress", dict(stats))
    example = add_line(None)                # end of file ends the document
    if example is not None:
      stats["tokens"] += len(example[0])
      write(serialize(*example))
    if builder.overlong_lines != overlong_before:
      lines = builder.overlong_lines - overlong_before
      thrown = builder.thrown_tokens - thrown_before
      report("warning", "%s: %d line(s) longer than an example of --max-seq-length %d tokens "
             "(the longest so far %d tokens): %d token(s) thrown away, as the reference does; "
             "to keep them, put one sentence per line"
             % (path, lines, config.max_seq_length, builder.longest_line, thrown))
      stats["overlong_lines"] = builder.overlong_lines
      stats["thrown_tokens"] = builder.thrown_tokens
    stats["files"] += 1
    stats["examples"] = writer.records
    report("progress", dict(stats))
  writer.close()
  stats["examples"] = writer.records
  return stats


# ---------------------------------------------------------------------------------------
# Checking the inputs


def check_corpus(corpus_dir):
  """Sorted paths of the corpus files (every entry is read as a text file)."""
  if not os.path.exists(corpus_dir):
    raise UserError("--corpus-dir %s does not exist; give a directory of plain-text files"
                    % corpus_dir)
  if not os.path.isdir(corpus_dir):
    raise UserError("--corpus-dir %s is not a directory; put the text file(s) in a directory"
                    % corpus_dir)
  names = sorted(os.listdir(corpus_dir))
  if not names:
    raise UserError("--corpus-dir %s is empty; put plain-text files in it" % corpus_dir)
  paths = [os.path.join(corpus_dir, name) for name in names]
  total = 0
  for path in paths:
    if not os.path.isfile(path):
      raise UserError("--corpus-dir %s holds %s, which is not a file (every entry is read as "
                      "text); move it out" % (corpus_dir, os.path.basename(path)))
    if not os.access(path, os.R_OK):
      raise UserError("corpus file %s is not readable (permissions)" % path)
    total += os.path.getsize(path)
  if total == 0:
    raise UserError("--corpus-dir %s holds no readable text (all %d file(s) are empty)"
                    % (corpus_dir, len(paths)))
  return paths


def check_vocab(vocab_file):
  """The vocab as an OrderedDict token -> id, after checking it is usable."""
  if not os.path.isfile(vocab_file):
    raise UserError("--vocab-file %s does not exist; give a WordPiece vocab, one token per line"
                    % vocab_file)
  try:
    tokens = tokenization.read_vocab_tokens(vocab_file)
  except UnicodeDecodeError as e:
    raise UserError("--vocab-file %s is not UTF-8 text (%s)" % (vocab_file, e.reason))
  except OSError as e:
    raise UserError("cannot read --vocab-file %s: %s" % (vocab_file, e.strerror))
  problem = tokenization.vocab_problem(tokens)
  if problem:
    raise UserError("--vocab-file %s %s" % (vocab_file, problem))
  return tokenization.load_vocab(vocab_file)


def check_output_dir(output_dir):
  """The real path of the output directory; refuses one holding anything but shards."""
  real = os.path.realpath(output_dir)
  if os.path.exists(real):
    if not os.path.isdir(real):
      raise UserError("--output-dir %s exists and is not a directory" % output_dir)
    foreign = sorted(name for name in os.listdir(real)
                     if not (SHARD_NAME_RE.match(name) and
                             os.path.isfile(os.path.join(real, name))))
    if foreign:
      raise UserError(
          "--output-dir %s holds %d entr%s that are not pretraining shards (%s); the builder "
          "only replaces its own shards: choose an empty or new directory"
          % (output_dir, len(foreign), "y" if len(foreign) == 1 else "ies",
             ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")))
  return real


# ---------------------------------------------------------------------------------------
# Output directory: written aside, swapped in when complete


def _pid_alive(pid):
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True
  return True


def _holds_only_shards(directory):
  return all(SHARD_NAME_RE.match(name) for name in os.listdir(directory))


def _remove_shard_dir(directory):
  """Removes a directory of our own shards (anything else in it is left, with the directory)."""
  for name in os.listdir(directory):
    if SHARD_NAME_RE.match(name):
      os.remove(os.path.join(directory, name))
  try:
    os.rmdir(directory)
  except OSError:
    pass


def _aside_name(output_real, kind, pid):
  parent, base = os.path.split(output_real)
  return os.path.join(parent, ".%s.%s-%d" % (base, kind, pid))


def remove_stale_aside_dirs(output_real):
  """Removes shard directories that killed runs of this builder left beside the output."""
  parent, base = os.path.split(output_real)
  pattern = re.compile(r"\.%s\.(partial|old)-(\d+)$" % re.escape(base))
  if not os.path.lexists(output_real):
    # Killed between its two renames, a run left the previous complete set as .old-PID:
    # that set is the output directory as it was; put it back.
    olds = [os.path.join(parent, name) for name in os.listdir(parent)
            if pattern.match(name) and pattern.match(name).group(1) == "old" and
            not _pid_alive(int(pattern.match(name).group(2))) and
            os.path.isdir(os.path.join(parent, name)) and
            _holds_only_shards(os.path.join(parent, name))]
    if olds:
      os.rename(max(olds, key=os.path.getmtime), output_real)
  for name in os.listdir(parent):
    match = pattern.match(name)
    path = os.path.join(parent, name)
    if (match and not _pid_alive(int(match.group(2))) and os.path.isdir(path) and
        _holds_only_shards(path)):
      _remove_shard_dir(path)


def swap_in(temp_dir, output_real):
  """Makes temp_dir the output directory; the old shards go only after the new are in place."""
  if not os.path.exists(output_real):
    os.rename(temp_dir, output_real)
    return
  old = _aside_name(output_real, "old", os.getpid())
  os.rename(output_real, old)
  try:
    os.rename(temp_dir, output_real)
  except OSError:
    os.rename(old, output_real)             # put the previous set back
    raise
  _remove_shard_dir(old)


# ---------------------------------------------------------------------------------------
# Progress


class Progress(object):
  """Prints the reference's kind of progress line: files done, ETA, examples written."""

  def __init__(self, num_files, total_bytes, num_jobs):
    self._num_files = num_files
    self._total_bytes = max(total_bytes, 1)
    self._jobs = [{"files": 0, "bytes": 0, "examples": 0, "tokens": 0, "invalid_bytes": 0,
                   "overlong_lines": 0, "thrown_tokens": 0} for _ in range(num_jobs)]
    self._start = time.time()
    self._last_print = 0.0
    self._last_state = None

  def update(self, job, stats, final=False):
    self._jobs[job] = stats
    now = time.time()
    if final or now - self._last_print >= PROGRESS_EVERY_SECONDS:
      self._last_print = now
      self.print_line()

  def total(self, key):
    return sum(stats[key] for stats in self._jobs)

  def elapsed(self):
    return time.time() - self._start

  def print_line(self):
    files, done_bytes = self.total("files"), self.total("bytes")
    state = (files, done_bytes, self.total("examples"))
    if state == self._last_state:
      return
    self._last_state = state
    elapsed = self.elapsed()
    fraction = min(done_bytes / float(self._total_bytes), 1.0)
    eta = elapsed / fraction - elapsed if fraction > 0 else float("nan")
    print("processed %d/%d files (%.1f%% of the text), ELAPSED: %ds, ETA: %ss, "
          "%d examples written" % (files, self._num_files, 100.0 * fraction, elapsed,
                                   "%d" % eta if eta == eta else "?", self.total("examples")))
    sys.stdout.flush()


def _job_process_main(job, config, messages):
  # The parent stops its jobs with SIGTERM and handles Ctrl-C itself: a job just ends, and a
  # job killed from outside ends by the signal, which the parent then names.
  signal.signal(signal.SIGTERM, signal.SIG_DFL)
  signal.signal(signal.SIGINT, signal.SIG_IGN)

  def report(kind, payload):
    messages.put((kind, job, payload))
  try:
    stats = run_job(job, config, report)
  except (OSError, UserError) as e:
    messages.put(("error", job, _describe_error(e)))
    sys.exit(1)
  except KeyboardInterrupt:         # the parent reports the interruption
    sys.exit(130)
  messages.put(("done", job, stats))


def _describe_error(error):
  if isinstance(error, OSError) and error.filename:
    return "%s: %s" % (error.filename, error.strerror)
  return str(error)


def describe_job_end(job, process):
  """Why a job ended without a word: the signal that killed it, or its exit status."""
  code = process.exitcode
  if code is not None and code < 0:
    try:
      name = signal.Signals(-code).name
    except ValueError:
      name = "signal %d" % -code
    why = ""
    if -code == signal.SIGKILL:
      why = (" (out of memory? the kernel's OOM killer sends SIGKILL: see `dmesg`; with less "
             "memory, use fewer --num-processes)")
    return ("job %d (PID %d) was killed by %s (signal %d)%s; the output directory was left "
            "as it was" % (job, process.pid, name, -code, why))
  return "job %d (PID %d) ended with exit status %s and no message" % (job, process.pid, code)


def run_jobs(config, progress):
  """Runs every job (in this process when there is one); raises UserError on a failure."""
  num_jobs = config.num_processes

  def show_warning(job, message):
    print("warning: %s" % message, file=sys.stderr)

  if num_jobs == 1:
    def report(kind, payload):
      if kind == "progress":
        progress.update(0, payload)
      else:
        show_warning(0, payload)
    try:
      stats = run_job(0, config, report)
    except OSError as e:
      raise UserError(_describe_error(e))
    progress.update(0, stats, final=True)
    return

  context = multiprocessing.get_context("fork")
  messages = context.Queue()
  processes = [context.Process(target=_job_process_main, args=(job, config, messages))
               for job in range(num_jobs)]
  for process in processes:
    process.start()
  done = set()
  failure = None
  try:
    while len(done) < num_jobs:
      try:
        message = messages.get(timeout=0.2)
      except queue.Empty:
        ended = [job for job, process in enumerate(processes)
                 if job not in done and process.exitcode is not None]
        if not ended:
          continue
        try:                     # what an ended job said last may still be on its way
          message = messages.get(timeout=2.0)
        except queue.Empty:
          failure = describe_job_end(ended[0], processes[ended[0]])
          break
      kind, job, payload = message
      if kind == "error":
        failure = "job %d: %s" % (job, payload)
        break
      elif kind == "progress":
        progress.update(job, payload)
      elif kind == "done":
        done.add(job)
        progress.update(job, payload)
      else:
        show_warning(job, payload)
  finally:
    if failure is not None or len(done) < num_jobs:
      for process in processes:
        if process.is_alive():
          process.terminate()
    for process in processes:
      process.join()
  if failure is not None:
    raise UserError(failure)
  progress.print_line()


# ---------------------------------------------------------------------------------------
# Command line


class _ArgumentParser(argparse.ArgumentParser):
  def error(self, message):
    self.exit(2, "%s: error: %s (see --help)\n" % (PROG, message))


def parse_args(argv):
  parser = _ArgumentParser(prog=PROG, description=__doc__.split("\n")[0])
  parser.add_argument("--corpus-dir", required=True,
                      help="Directory of plain-text files (UTF-8), one sentence per line.")
  parser.add_argument("--vocab-file", required=True,
                      help="WordPiece vocab, one token per line (id = line number).")
  parser.add_argument("--output-dir", required=True,
                      help="Directory for the pretrain_data.tfrecord-I-of-N shards.")
  parser.add_argument("--max-seq-length", default=128, type=int,
                      help="Tokens per example, [CLS] and [SEP] included (default 128).")
  parser.add_argument("--num-processes", default=1, type=int,
                      help="Worker processes; each takes whole files (default 1).")
  parser.add_argument("--blanks-separate-docs", default=True, type=str,
                      help="Blank lines end documents (default True). Parsed like the "
                           "reference: any non-empty value (even 'False') is True; pass '' "
                           "for False.")
  parser.add_argument("--do-lower-case", dest="do_lower_case", action="store_true",
                      help="Lower-case the text (default).")
  parser.add_argument("--no-lower-case", dest="do_lower_case", action="store_false",
                      help="Keep the case of the text.")
  parser.add_argument("--do-strip-accents", dest="strip_accents", action="store_true",
                      help="Remove accents when lower-casing (default).")
  parser.add_argument("--no-strip-accents", dest="strip_accents", action="store_false",
                      help="Keep accents when lower-casing.")
  parser.set_defaults(do_lower_case=True, strip_accents=True)
  parser.add_argument("--seed", default=None, type=int,
                      help="Job j seeds Python's random with SEED + j (reproducible output).")
  parser.add_argument("--num-out-files", default=1000, type=int,
                      help="Number of output shards (default 1000).")
  parser.add_argument("--tokenizer", default="fast", choices=("fast", "plain"),
                      help="fast (default) or plain: the plain-Python definition (slow, "
                           "same output).")
  args = parser.parse_args(argv)

  raw = args.blanks_separate_docs
  if isinstance(raw, str):
    args.blanks_separate_docs = bool(raw)
    if raw.strip().lower() in FALSE_WORDS:
      print("warning: --blanks-separate-docs %r means True (the reference parses the flag with "
            "bool(), so any non-empty value is True); pass --blanks-separate-docs '' to get "
            "False" % raw, file=sys.stderr)
  if args.max_seq_length < 5:
    raise UserError("--max-seq-length must be at least 5 (got %d): the reference draws short "
                    "lengths from randint(5, max-seq-length)" % args.max_seq_length)
  if args.num_processes < 1:
    raise UserError("--num-processes must be at least 1 (got %d)" % args.num_processes)
  if args.num_out_files < 1:
    raise UserError("--num-out-files must be at least 1 (got %d)" % args.num_out_files)
  if args.num_processes > args.num_out_files:
    raise UserError("--num-processes (%d) must not exceed --num-out-files (%d): each process "
                    "writes its own shards" % (args.num_processes, args.num_out_files))
  return args


def _interrupt(signum, frame):
  raise KeyboardInterrupt()


def main(argv):
  # A terminated run cleans up like an interrupted one (jobs stopped, output untouched).
  signal.signal(signal.SIGTERM, _interrupt)
  args = parse_args(argv)
  file_paths = check_corpus(args.corpus_dir)
  vocab = check_vocab(args.vocab_file)
  output_real = check_output_dir(args.output_dir)
  parent = os.path.dirname(output_real)
  try:
    os.makedirs(parent, exist_ok=True)
    remove_stale_aside_dirs(output_real)
    temp_dir = _aside_name(output_real, "partial", os.getpid())
    os.mkdir(temp_dir)
  except OSError as e:
    raise UserError("cannot create the output beside %s: %s" % (args.output_dir, e.strerror))

  total_bytes = sum(os.path.getsize(p) for p in file_paths)
  print("building pretraining data: %d file(s), %.1f MB, %d process(es), %d shards -> %s"
        % (len(file_paths), total_bytes / 1e6, args.num_processes, args.num_out_files,
           args.output_dir))
  sys.stdout.flush()
  progress = Progress(len(file_paths), total_bytes, args.num_processes)
  config = JobConfig(args, vocab, file_paths, temp_dir)
  swapped = False
  try:
    run_jobs(config, progress)
    examples = progress.total("examples")
    if examples == 0:
      raise UserError("--corpus-dir %s holds no readable text: no examples were produced "
                      "(the previous output, if any, is left as it was)" % args.corpus_dir)
    check_output_dir(args.output_dir)        # nothing foreign appeared meanwhile
    try:
      swap_in(temp_dir, output_real)
    except OSError as e:
      raise UserError("cannot move the new shards into %s: %s (a mount point cannot be "
                      "replaced; give a directory inside it)" % (args.output_dir, e.strerror))
    swapped = True
  finally:
    if not swapped and os.path.isdir(temp_dir):
      _remove_shard_dir(temp_dir)
  seconds = progress.elapsed()
  invalid = progress.total("invalid_bytes")
  overlong = progress.total("overlong_lines")
  print("wrote %d examples (%d tokens) to %d shards in %s: %.1f s, %.2f MB/s%s%s"
        % (examples, progress.total("tokens"), args.num_out_files, args.output_dir, seconds,
           total_bytes / 1e6 / max(seconds, 1e-9),
           ", %d invalid UTF-8 byte(s) dropped" % invalid if invalid else "",
           ", %d line(s) longer than an example: %d token(s) thrown away"
           % (overlong, progress.total("thrown_tokens")) if overlong else ""))
  return 0


if __name__ == "__main__":
  try:
    sys.exit(main(sys.argv[1:]))
  except UserError as e:
    print("%s: error: %s" % (PROG, e), file=sys.stderr)
    sys.exit(2)
  except KeyboardInterrupt:
    print("%s: interrupted; the output directory was left as it was" % PROG, file=sys.stderr)
    sys.exit(130)
