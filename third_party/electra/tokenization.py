# coding=utf-8
"""BERT tokenization in plain Python: the definition the dataset builder follows.

Text is cleaned (control characters, NUL and U+FFFD removed, whitespace made a plain
space), CJK ideographs are split off, each whitespace-separated word is optionally
lower-cased and stripped of accents, split on punctuation, and finally cut into
WordPiece tokens by greedy longest-match-first with "##" continuation pieces.
Character classes come from Python's own `unicodedata`, so results depend only on the
Python version, as the reference's do.
"""

import collections
import unicodedata

UNK_TOKEN = "[UNK]"
# The special tokens every BERT vocab holds (the builder's [CLS]/[SEP], the trainer's
# [MASK]); the one list that the vocab stage, the builder and the export check against.
SPECIAL_TOKENS = ("[PAD]", UNK_TOKEN, "[CLS]", "[SEP]", "[MASK]")
# Words longer than this many characters become [UNK] without a WordPiece search.
MAX_INPUT_CHARS_PER_WORD = 100


def convert_to_unicode(text):
  """Returns text as str; bytes are decoded as UTF-8, dropping invalid bytes."""
  if isinstance(text, str):
    return text
  if isinstance(text, bytes):
    return text.decode("utf-8", "ignore")
  raise ValueError("unsupported text type: %s" % type(text))


def read_vocab_tokens(vocab_file):
  """Returns the vocab file's tokens in line order (id = position), stripped.

  Lines end at "\\n" only, as the reference's line reader does (a "\\r" or U+2028 inside
  a line does not end it); a last line without a newline still counts, and so does a
  blank line, the last one included. Every stage that counts or reads a vocab uses this.
  Raises UnicodeDecodeError for text that is not UTF-8, OSError when unreadable.
  """
  with open(vocab_file, "rb") as f:
    data = f.read()
  lines = data.split(b"\n")
  if lines and not lines[-1]:
    lines.pop()
  return [line.decode("utf-8").strip() for line in lines]


def vocab_problem(tokens):
  """Why tokens (read_vocab_tokens) make no usable vocab, as a phrase, or None.

  Empty; a token on two lines (ids are line numbers: the reference's reader would keep
  the last id, shifting the other); a special token missing.
  """
  if not any(tokens):
    return "is empty; give a WordPiece vocab, one token per line"
  first_line = {}
  for line_number, token in enumerate(tokens, 1):
    if token in first_line:
      return ("repeats token %r (lines %d and %d); ids are line numbers, so each token must "
              "appear once" % (token, first_line[token], line_number))
    first_line[token] = line_number
  missing = [t for t in SPECIAL_TOKENS if t not in first_line]
  if missing:
    return "lacks %s; a BERT vocab needs all of %s" % (" ".join(missing),
                                                      " ".join(SPECIAL_TOKENS))
  return None


def load_vocab(vocab_file):
  """Loads a vocab file into an OrderedDict token -> id (a repeated token keeps its last id)."""
  vocab = collections.OrderedDict()
  for index, token in enumerate(read_vocab_tokens(vocab_file)):
    vocab[token] = index
  return vocab


def whitespace_tokenize(text):
  """Splits on whitespace (str.split), after stripping."""
  text = text.strip()
  if not text:
    return []
  return text.split()


def is_whitespace(char):
  """Characters that clean-up turns into a plain space."""
  if char in (" ", "\t", "\n", "\r"):
    return True
  return unicodedata.category(char) == "Zs"


def is_control(char):
  """Characters that clean-up removes (tab and newlines count as whitespace instead)."""
  if char in ("\t", "\n", "\r"):
    return False
  return unicodedata.category(char).startswith("C")


def is_punctuation(char):
  """ASCII symbols and punctuation, and every Unicode punctuation (category P*)."""
  cp = ord(char)
  if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
    return True
  return unicodedata.category(char).startswith("P")


def is_cjk_codepoint(cp):
  """The CJK Unified Ideographs blocks (and compatibility ideographs); not kana or hangul."""
  return (0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF or
          0x20000 <= cp <= 0x2A6DF or 0x2A700 <= cp <= 0x2B73F or
          0x2B740 <= cp <= 0x2B81F or 0x2B820 <= cp <= 0x2CEAF or
          0xF900 <= cp <= 0xFAFF or 0x2F800 <= cp <= 0x2FA1F)


def is_removed(char):
  """True for the characters clean-up drops: NUL, U+FFFD and control characters."""
  cp = ord(char)
  return cp == 0 or cp == 0xFFFD or is_control(char)


def split_on_punctuation(text):
  """Splits a word so that every punctuation character is a piece of its own."""
  pieces = []
  start_new_word = True
  for char in text:
    if is_punctuation(char):
      pieces.append([char])
      start_new_word = True
    else:
      if start_new_word:
        pieces.append([])
      start_new_word = False
      pieces[-1].append(char)
  return ["".join(p) for p in pieces]


class BasicTokenizer(object):
  """Cleans text and splits it into words and punctuation."""

  def __init__(self, do_lower_case=True, strip_accents=True):
    self.do_lower_case = do_lower_case
    # Accents are only ever stripped together with lower-casing.
    self.strip_accents = strip_accents

  def tokenize(self, text):
    text = self._clean_text(convert_to_unicode(text))
    text = self._space_cjk_chars(text)
    split_tokens = []
    for token in whitespace_tokenize(text):
      if self.do_lower_case:
        token = token.lower()
        if self.strip_accents:
          token = self._strip_accents(token)
      split_tokens.extend(split_on_punctuation(token))
    return whitespace_tokenize(" ".join(split_tokens))

  def _clean_text(self, text):
    output = []
    for char in text:
      if is_removed(char):
        continue
      output.append(" " if is_whitespace(char) else char)
    return "".join(output)

  def _space_cjk_chars(self, text):
    output = []
    for char in text:
      if is_cjk_codepoint(ord(char)):
        output.append(" " + char + " ")
      else:
        output.append(char)
    return "".join(output)

  def _strip_accents(self, text):
    text = unicodedata.normalize("NFD", text)
    return "".join(c for c in text if unicodedata.category(c) != "Mn")


class WordpieceTokenizer(object):
  """Greedy longest-match-first WordPiece over a vocab."""

  def __init__(self, vocab, unk_token=UNK_TOKEN,
               max_input_chars_per_word=MAX_INPUT_CHARS_PER_WORD):
    self.vocab = vocab
    self.unk_token = unk_token
    self.max_input_chars_per_word = max_input_chars_per_word

  def tokenize(self, text):
    output = []
    for word in whitespace_tokenize(convert_to_unicode(text)):
      output.extend(self.tokenize_word(word))
    return output

  def tokenize_word(self, word):
    """WordPiece tokens of one word (no whitespace inside)."""
    if len(word) > self.max_input_chars_per_word:
      return [self.unk_token]
    pieces = []
    start = 0
    while start < len(word):
      end = len(word)
      piece = None
      while start < end:
        candidate = word[start:end]
        if start > 0:
          candidate = "##" + candidate
        if candidate in self.vocab:
          piece = candidate
          break
        end -= 1
      if piece is None:
        return [self.unk_token]
      pieces.append(piece)
      start = end
    return pieces


class FullTokenizer(object):
  """Basic tokenization followed by WordPiece."""

  def __init__(self, vocab_file, do_lower_case=True, strip_accents=True):
    self.vocab = load_vocab(vocab_file)
    self.inv_vocab = {v: k for k, v in self.vocab.items()}
    self.basic_tokenizer = BasicTokenizer(do_lower_case=do_lower_case,
                                          strip_accents=strip_accents)
    self.wordpiece_tokenizer = WordpieceTokenizer(vocab=self.vocab)

  def tokenize(self, text):
    tokens = []
    for word in self.basic_tokenizer.tokenize(text):
      tokens.extend(self.wordpiece_tokenizer.tokenize(word))
    return tokens

  def convert_tokens_to_ids(self, tokens):
    return [self.vocab[token] for token in tokens]

  def convert_ids_to_tokens(self, ids):
    return [self.inv_vocab[i] for i in ids]
