"""Spanish prose into sentences, one per line, and the test of which lines are worth keeping.

split_sentences(paragraph) cuts after '.', '?', '!' or '…' (with any closing quote or bracket
after it) when the next word starts a sentence (a capital, a digit, '¿', '¡' or an opening
quote). It does not cut after an abbreviation ("Sr.", "p. ej.", "etc.", "EE. UU.", a single
letter such as an initial), nor at a '.' inside a question or exclamation whose '¿' or '¡' is
still open: "¿Vienes el lunes a las 9 a. m. o no?" stays whole, "¿Qué es? Un gato." is two.

keep_sentence(line) drops what is not Spanish prose: fewer than MIN_WORDS words or MIN_LETTERS
letters, a low share of letters (commands, numbers, paths), no Spanish function word or more
English ones than Spanish ones (the untranslated parts of a translated manual), navigation
("Anterior", "Siguiente", "Inicio" ...) and copyright lines.
"""
import unicodedata
from typing import List

# Lower-case words that end with a '.' they do not end a sentence with.
ABBREVIATIONS = frozenset("""
    sr sra srta sres dr dra dres d dña ud uds vd vds lic ing arq prof gral
    etc ej p pp pág págs núm nº n.º vol vols cap caps art arts fig figs tel aprox av avda
    c cía dpto ed eds máx mín pto sig ss vs ib ibíd id op cit cf vid ap apdo admón ee uu
    ppal tb
""".split())
SENTENCE_ENDS = ".?!…"
CLOSERS = "\"'”’»)]"
OPENERS = "\"'“‘«(["

MIN_WORDS = 3
MIN_LETTERS = 12
MIN_LETTER_SHARE = 0.6      # of the characters other than spaces

# Frequent words of one language that are not words of the other.
SPANISH_WORDS = frozenset("""
    de la que el en y los se del las un por con una su para es al lo como más pero sus le
    ya o este sí porque esta entre cuando muy sin sobre también me hasta hay donde desde
    todo nos durante todos uno les ni contra otros ese eso ante ellos e esto antes algunos
    qué unos otro otras otra él tanto esa estos mucho quienes nada muchos cual poco ella
    estar estas algunas algo puede pueden son está están ser tiene usted cada debe si según
""".split())
ENGLISH_WORDS = frozenset("""
    the of and to is in that for it with as on be by this are from an which you can not if
    will have has was your use when these at all or its they their there would should been
    into than then also may must only such each but more other what how
""".split())
NAVIGATION_WORDS = frozenset("""
    anterior siguiente inicio subir arriba atrás adelante índice contenido contenidos
    principio volver página inicial home prev next up top capítulo sección parte
""".split())


def _core(token):
    """A token without the quotes and brackets around it."""
    return token.strip(CLOSERS + OPENERS)


def _is_abbreviation(word):
    """`word`, the text before a final '.', is an abbreviation (or an initial)."""
    word = word.lower()
    if word in ABBREVIATIONS or (len(word) == 1 and word.isalpha()):
        return True
    pieces = word.split(".")     # "p.ej", "EE.UU": letters in short pieces joined by dots
    return len(pieces) > 1 and all(p.isalpha() and len(p) <= 3 for p in pieces)


def _starts_sentence(token):
    first = token.lstrip(OPENERS)[:1]
    return first.isupper() or first.isdigit() or first in ("¿", "¡")


def _ends_sentence(token, next_token, open_marks):
    bare = token.rstrip(CLOSERS)
    if not bare or bare[-1] not in SENTENCE_ENDS or not _starts_sentence(next_token):
        return False
    if bare[-1] == "." and not bare.endswith(("..", "…")):
        if open_marks > 0:          # inside ¿...? or ¡...!: the '.' of an abbreviation
            return False
        if _is_abbreviation(_core(bare[:-1])):
            return False
    return True


def split_sentences(paragraph: str) -> List[str]:
    """The sentences of one paragraph (whitespace already made single spaces or not)."""
    tokens = paragraph.split()
    sentences, current, open_marks = [], [], 0
    for i, token in enumerate(tokens):
        current.append(token)
        open_marks += token.count("¿") + token.count("¡")
        open_marks = max(0, open_marks - token.count("?") - token.count("!"))
        if i + 1 < len(tokens) and _ends_sentence(token, tokens[i + 1], open_marks):
            sentences.append(" ".join(current))
            current, open_marks = [], 0
    if current:
        sentences.append(" ".join(current))
    return sentences


def _plain_words(line):
    return [w.strip(CLOSERS + OPENERS + ".,;:¿?¡!…-—–").lower() for w in line.split()]


def keep_sentence(line: str) -> bool:
    """True for a line of Spanish prose worth pretraining on (see the top)."""
    words = _plain_words(line)
    if len(words) < MIN_WORDS:
        return False
    letters = sum(1 for ch in line if ch.isalpha())
    visible = sum(1 for ch in line if not ch.isspace())
    if letters < MIN_LETTERS or letters < MIN_LETTER_SHARE * visible:
        return False
    if all(w in NAVIGATION_WORDS or not w.isalpha() for w in words):
        return False
    lowered = line.lower()
    if "copyright" in lowered or "©" in line or "derechos reservados" in lowered:
        return False
    spanish = sum(1 for w in words if w in SPANISH_WORDS)
    english = sum(1 for w in words if w in ENGLISH_WORDS)
    return spanish > 0 and spanish > english


def normalize(text: str) -> str:
    """NFC, and every run of whitespace (tabs, no-break spaces, line separators) one space."""
    return " ".join(unicodedata.normalize("NFC", text).split())
