# coding=utf-8
"""Fast BERT tokenization of many lines at once, equal to tokenization.FullTokenizer.

The plain tokenizer walks every character in Python. This one does the same steps
with whole-string operations that run in C, over many lines joined by "\\n":
  1. clean-up and CJK spacing: only the characters that need it (found from the set of
     distinct characters) are replaced, by one regular-expression substitution;
  2. lower-casing: str.lower() of the whole text. BERT lower-cases each whitespace-
     separated word; the only context-dependent mapping of str.lower() (final sigma)
     never looks across whitespace, so the result is the same;
  3. accent stripping: NFD of the whole text, then the category-Mn characters removed.
     Canonical reordering never crosses a starter such as a space, so again the same;
  4. splitting on whitespace: str.split() of the whole text, BERT's own whitespace split;
  5. punctuation split and WordPiece: per distinct whitespace-separated chunk, computed
     once by the plain tokenizer's functions and cached, then looked up.
Every character class comes from tokenization.py's own predicates, so both paths share
one definition; tests compare the two on real corpora line by line.
"""

import itertools
import re
import unicodedata

import tokenization

# A cache of this many distinct words is dropped and rebuilt (memory bound on huge corpora).
MAX_CACHED_WORDS = 2000000
# Each line end becomes this word (NUL: clean-up removes every NUL from the text itself),
# which maps to this id in the flat stream of ids (real ids are never negative).
LINE_END_MARK = "\x00"
LINE_END_ID = -1
LINE_END = (LINE_END_ID,)


class _WordIds(dict):
  """word (no whitespace, no punctuation) -> tuple of its WordPiece ids, filled on first use."""

  def __init__(self, vocab):
    super(_WordIds, self).__init__()
    self._vocab = vocab
    self._wordpiece = tokenization.WordpieceTokenizer(vocab=vocab)

  def __missing__(self, word):
    if len(self) >= MAX_CACHED_WORDS:
      self.clear()
    vocab = self._vocab
    ids = tuple(vocab[piece] for piece in self._wordpiece.tokenize_word(word))
    self[word] = ids
    return ids


class _ChunkIds(dict):
  """whitespace-separated chunk -> tuple of its WordPiece ids (punctuation split off),
  filled on first use by the plain tokenizer's own functions."""

  def __init__(self, vocab):
    super(_ChunkIds, self).__init__()
    self._word_ids = _WordIds(vocab)

  def __missing__(self, chunk):
    if len(self) >= MAX_CACHED_WORDS:
      self.clear()
    if chunk == LINE_END_MARK:
      ids = LINE_END
    elif chunk.isalnum():       # letters and digits only: no punctuation to split off
      ids = self._word_ids[chunk]
    else:
      word_ids = self._word_ids
      ids = tuple(i for word in tokenization.split_on_punctuation(chunk) for i in word_ids[word])
    self[chunk] = ids
    return ids


def _char_class(chars):
  """A regular-expression class of exactly these characters (each written as an escape)."""
  return "[" + "".join("\\U%08x" % ord(c) for c in sorted(chars)) + "]"


class BulkTokenizer(object):
  """Token ids of many lines at once; `ids_of_lines(lines)` equals
  [convert_tokens_to_ids(tokenize(line)) for line in lines] of tokenization.FullTokenizer
  for lines without "\\n"."""

  def __init__(self, vocab, do_lower_case=True, strip_accents=True):
    self._do_lower_case = do_lower_case
    self._strip_accents = do_lower_case and strip_accents
    self._chunk_ids = _ChunkIds(vocab)
    self._seen = set()           # characters classified so far
    self._cleanup = {}           # char -> replacement ("" removed, " " whitespace, " c " CJK)
    self._cleanup_re = None
    self._mn_seen = set()
    self._mn = set()
    self._mn_re = None

  def _learn(self, text):
    """Classifies characters not seen before; returns the clean-up characters in text."""
    chars = set(text)
    new = chars - self._seen
    if new:
      self._seen.update(new)
      changed = False
      for char in new:
        if char == "\n":
          continue   # the line separator of the joined text; lines hold no "\n" themselves
        if tokenization.is_removed(char):
          self._cleanup[char] = ""
        elif tokenization.is_whitespace(char):
          if char == " ":
            continue
          self._cleanup[char] = " "
        elif tokenization.is_cjk_codepoint(ord(char)):
          self._cleanup[char] = " " + char + " "
        else:
          continue
        changed = True
      if changed:
        self._cleanup_re = re.compile(_char_class(self._cleanup))
    return chars.intersection(self._cleanup)

  def _remove_nonspacing_marks(self, text):
    new = set(text)
    new.difference_update(self._mn_seen)
    if new:
      self._mn_seen.update(new)
      marks = [c for c in new if unicodedata.category(c) == "Mn"]
      if marks:
        self._mn.update(marks)
        self._mn_re = re.compile(_char_class(self._mn))
    if self._mn_re is None:
      return text
    return self._mn_re.sub("", text)

  def normalize(self, text):
    """Steps 1-3 on text whose lines are separated by "\\n"."""
    to_clean = self._learn(text)
    cleanup = self._cleanup
    if len(to_clean) <= 8:       # a few kinds (tabs, NBSP...): one fast pass each
      for char in to_clean:
        text = text.replace(char, cleanup[char])
    else:
      text = self._cleanup_re.sub(lambda m: cleanup[m.group()], text)
    if self._do_lower_case:
      text = text.lower()
      if self._strip_accents:
        text = self._remove_nonspacing_marks(unicodedata.normalize("NFD", text))
    return text

  def ids_of_lines(self, lines):
    """Token ids of each line (lines must not contain "\\n")."""
    if not lines:
      return []
    return self.ids_of_text("\n".join(lines))

  def ids_of_text(self, text):
    """Token ids of each line of text.split("\\n"). Surrounding whitespace of a line never
    changes its tokens (it is either removed or a separator), so lines need no strip()."""
    normalized = self.normalize(text + "\n")
    # One split and one lookup pass over the whole text; a marker word ends each line.
    words = normalized.replace("\n", " " + LINE_END_MARK + " ").split()
    flat = list(itertools.chain.from_iterable(map(self._chunk_ids.__getitem__, words)))
    result = []
    append = result.append
    find_end = flat.index
    start = 0
    for _ in range(text.count("\n") + 1):
      end = find_end(LINE_END_ID, start)
      append(flat[start:end])
      start = end + 1
    if start != len(flat):
      raise AssertionError("line ends lost in normalization")
    return result
