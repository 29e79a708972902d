"""The fine-tuning tasks of `make evaluate`, each read into one plain shape.

A task is a Task: name, kind ("classification" or "tagging"), metric (the main one), labels
(the label names) and the train and dev examples, each a dict:
  classification  {"text": str, "text_pair": str or None, "label": str}
  tagging         {"tokens": [str], "tags": [str]}   (BIO tags, one per word)

Where the examples come from:
  fortunes-es    Debian's fortunes-es files, labelled with their file's category (offline).
  xnli-es, pawsx-es, conll2002-es
                 the Hugging Face hub through `datasets` (online, or a local copy of the
                 dataset repository in the same layout: --hub-dir).
  TASK_DATA=dir  your own files: train.jsonl + dev.jsonl (one JSON object a line, "text",
                 optional "text_pair", "label"), or train.conll + dev.conll (CoNLL columns:
                 one word a line, its first column the word and its last the BIO tag, a blank
                 line between sentences, -DOCSTART- lines ignored).
"""
import glob
import hashlib
import json
import os
import re
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

from wrapper.cli import UserError
from wrapper.text_packages import FORTUNES_DIR
# fortunes-es: a category (file) with fewer fortunes than this is dropped. The six dropped in
# fortunes-es 1.36 (asimov, deprimente, famosos, lao-tse, nietzsche, schopenhauer: 11 to 84
# fortunes) are too small to learn or to score: a dev set of 10% holds 1 to 8 of them.
FORTUNES_MIN_PER_CATEGORY = 100
# fortunes-es: a fortune goes to dev when the first 8 hex digits of the SHA-256 of its text
# are 0 modulo 10 (about 10%), else to train; fixed by the text alone, so it never changes
# between runs or machines, and a duplicated fortune cannot be on both sides.
FORTUNES_DEV_MODULO = 10

# The hub's datasets: repository, configuration, text columns, label column, dev split.
HUB_TASKS = {
    "xnli-es": dict(repo="facebook/xnli", config="es", kind="classification",
                    metric="accuracy", text="premise", text_pair="hypothesis", label="label",
                    dev="validation"),
    "pawsx-es": dict(repo="google-research-datasets/paws-x", config="es",
                     kind="classification", metric="accuracy", text="sentence1",
                     text_pair="sentence2", label="label", dev="validation"),
    "conll2002-es": dict(repo="eriktks/conll2002", config="es", kind="tagging",
                         metric="entity-f1", tokens="tokens", tags="ner_tags",
                         dev="validation"),
}
TASKS = ["fortunes-es"] + sorted(HUB_TASKS)

Example = Dict[str, Any]


@dataclass(frozen=True)
class Task:
    name: str
    kind: str                 # "classification" or "tagging"
    metric: str               # the main score: accuracy, macro-f1 or entity-f1
    labels: List[str]         # the label (or BIO tag) names; a model's output ids follow them
    train: List[Example]
    dev: List[Example]
    note: str                 # where the examples come from, for the report


def load_task(name: str, task_data: Optional[str] = None, hub_dir: Optional[str] = None,
              fortunes_dir: str = FORTUNES_DIR) -> Task:
    """The task `name`: from TASK_DATA when given, else built in."""
    if task_data:
        return local_task(name, task_data, HUB_TASKS.get(name, {}).get("metric"))
    if name == "fortunes-es":
        return fortunes_task(fortunes_dir)
    if name in HUB_TASKS:
        return hub_task(name, hub_dir)
    raise UserError("unknown TASK %r; choose one of %s, or bring your own data with "
                    "TASK_DATA=dir (train/dev .jsonl or .conll files)" % (name, ", ".join(TASKS)))


# ---- fortunes-es ------------------------------------------------------------------------

def read_fortunes(path):
    """The fortunes of one file: text between lines holding only '%', blanks collapsed."""
    with open(path, encoding="utf-8", errors="replace") as f:
        chunks = re.split(r"^%\s*$", f.read(), flags=re.M)
    return [t for t in (" ".join(c.split()) for c in chunks) if t]


def fortunes_task(fortunes_dir=FORTUNES_DIR):
    files = sorted(glob.glob(os.path.join(fortunes_dir, "*.fortunes")))
    if not files:
        raise UserError("TASK=fortunes-es needs Debian's fortunes-es: no *.fortunes file in %s; "
                        "install it (apt-get install fortunes-es)" % fortunes_dir)
    categories = {}                       # text -> set of categories it appears under
    for path in files:
        category = os.path.basename(path)[:-len(".fortunes")]
        for text in read_fortunes(path):
            categories.setdefault(text, set()).add(category)
    # A text filed under two categories has no single right answer: left out.
    labelled = sorted((text, cats.pop()) for text, cats in categories.items() if len(cats) == 1)
    counts = {}
    for _, category in labelled:
        counts[category] = counts.get(category, 0) + 1
    kept = sorted(c for c, n in counts.items() if n >= FORTUNES_MIN_PER_CATEGORY)
    train, dev = [], []
    for text, category in labelled:
        if category not in kept:
            continue
        digest = int(hashlib.sha256(text.encode("utf-8")).hexdigest()[:8], 16)
        example = {"text": text, "text_pair": None, "label": category}
        (dev if digest % FORTUNES_DEV_MODULO == 0 else train).append(example)
    dropped = sorted(c for c in counts if c not in kept)
    return Task(name="fortunes-es", kind="classification", metric="macro-f1", labels=kept,
                train=train, dev=dev,
                note="%d categories of %s (dropped, under %d fortunes: %s)" % (
                    len(kept), fortunes_dir, FORTUNES_MIN_PER_CATEGORY,
                    ", ".join(dropped) or "none"))


# ---- TASK_DATA=dir ----------------------------------------------------------------------

def read_lines(path):
    """(line number, text) of a task file, refusing bytes that are not UTF-8 in one line."""
    with open(path, "rb") as f:
        for number, raw in enumerate(f, 1):
            try:
                yield number, raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise UserError("%s line %d is not UTF-8 (byte 0x%02x); save the file as UTF-8, "
                                "e.g. iconv -f latin1 -t utf-8 %s > %s.utf8" % (
                                    path, number, raw[e.start], path, path))


def read_jsonl(path):
    examples = []
    for number, line in read_lines(path):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as e:
            raise UserError("%s line %d is not JSON (%s); write one object a line: "
                            '{"text": ..., "label": ...}' % (path, number, e))
        if not isinstance(row, dict) or not isinstance(row.get("text"), str) \
                or "label" not in row:
            raise UserError('%s line %d: each line needs "text" (a string) and "label"; '
                            'sentence pairs add "text_pair"' % (path, number))
        pair, label = row.get("text_pair"), row["label"]
        if pair is not None and not isinstance(pair, str):
            raise UserError('%s line %d: "text_pair" is %s, not a string; write the second '
                            'sentence as a string, or leave the key out' % (
                                path, number, json.dumps(pair)[:60]))
        # A label is a name (a string) or a class number (an integer); null, a float, a
        # boolean or an object would be trained on as its Python text ('None', "{'a': 1}").
        if not isinstance(label, (str, int)) or isinstance(label, bool):
            raise UserError('%s line %d: "label" is %s; a label is a string (or an integer), '
                            'e.g. "label": "positivo"' % (path, number, json.dumps(label)[:60]))
        examples.append({"text": row["text"], "text_pair": pair, "label": str(label),
                         "line": number})
    return examples


# A BIO tag (IOB2, what seqeval scores by default): O, B-TYPE or I-TYPE.
BIO_TAG = re.compile(r"^(O|[BI]-\S+)$")


def read_conll(path):
    """Sentences of a CoNLL file: first column the word, last column its BIO tag."""
    sentences, tokens, tags = [], [], []
    number = 0
    for number, line in read_lines(path):
        columns = line.split()
        if not columns or columns[0] == "-DOCSTART-":
            if tokens:
                sentences.append({"tokens": tokens, "tags": tags, "line": number})
            tokens, tags = [], []
            continue
        if len(columns) < 2:
            raise UserError("%s line %d holds one column; a CoNLL line is the word, "
                            "(other columns,) its tag" % (path, number))
        if not BIO_TAG.match(columns[-1]):
            raise UserError("%s line %d: tag %r is not a BIO tag; the last column must be O, "
                            "B-TYPE or I-TYPE (e.g. B-PER, I-PER)" % (path, number, columns[-1]))
        tokens.append(columns[0])
        tags.append(columns[-1])
    if tokens:
        sentences.append({"tokens": tokens, "tags": tags, "line": number})
    return sentences


def local_task(name, directory, metric=None):
    """TASK_DATA=dir: train/dev in JSONL (classification) or CoNLL (tagging)."""
    formats = [ext for ext in ("jsonl", "conll")
               if os.path.isfile(os.path.join(directory, "train." + ext))]
    if not os.path.isdir(directory):
        raise UserError("TASK_DATA=%s is not a directory; give one holding train.jsonl and "
                        "dev.jsonl (or train.conll and dev.conll)" % directory)
    if not formats:
        raise UserError("TASK_DATA=%s holds no train.jsonl or train.conll; give train and dev "
                        "files (README: Evaluation)" % directory)
    ext = formats[0]
    paths = {split: os.path.join(directory, "%s.%s" % (split, ext)) for split in ("train", "dev")}
    if not os.path.isfile(paths["dev"]):
        raise UserError("TASK_DATA=%s has train.%s but no dev.%s; add the dev set" % (
            directory, ext, ext))
    read = read_jsonl if ext == "jsonl" else read_conll
    train, dev = read(paths["train"]), read(paths["dev"])
    for split in ("train", "dev"):
        if not (train, dev)[split == "dev"]:
            raise UserError("%s holds no examples" % paths[split])
    if ext == "jsonl":
        labels = sorted({e["label"] for e in train})
        for e in dev:
            if e["label"] not in labels:
                raise UserError("%s line %d: label %r does not occur in train.jsonl (labels: "
                                "%s); every dev label must be a train label" % (
                                    paths["dev"], e["line"], e["label"], ", ".join(labels)))
        kind, metric = "classification", metric or "accuracy"
    else:
        labels = sorted({t for e in train for t in e["tags"]})
        for e in dev:
            for tag in e["tags"]:
                if tag not in labels:
                    raise UserError("%s sentence ending at line %d: tag %r does not occur in "
                                    "train.conll; every dev tag must be a train tag" % (
                                        paths["dev"], e["line"], tag))
        kind, metric = "tagging", "entity-f1"
    return Task(name=name, kind=kind, metric=metric, labels=labels, train=train, dev=dev,
                note="TASK_DATA=%s" % directory)


def require(module: str, who: str, alternative: str = "") -> Any:
    """The module `module`, imported only for the tasks that need it (a lean image, such as
    the GPU one, lacks `datasets` and `seqeval`), or UserError saying who needs it."""
    import importlib
    try:
        return importlib.import_module(module)
    except ImportError:
        raise UserError("%s through the Python package %s, which is not installed here; "
                        "install it (pip install %s)%s" % (who, module, module, alternative))


# ---- the hub ----------------------------------------------------------------------------

def hub_reachable(timeout: float = 5.0) -> bool:
    """Whether the hub's host answers at all: offline, `datasets` and `huggingface_hub` retry
    for half a minute and print a warning per try before failing."""
    import socket
    from urllib.parse import urlparse
    endpoint = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    try:
        socket.create_connection((endpoint.hostname, endpoint.port or 443), timeout).close()
        return True
    except OSError:
        return False


def hub_task(name, hub_dir=None):
    """A hub dataset through `datasets`: the repository online, or hub_dir/REPO offline."""
    spec = HUB_TASKS[name]
    source = os.path.join(hub_dir, spec["repo"]) if hub_dir else spec["repo"]
    if hub_dir and not os.path.isdir(source):
        raise UserError("--hub-dir %s has no %s; copy the dataset repository there" % (
            hub_dir, spec["repo"]))
    offline = "TASK=%s: cannot load %s (config %s) from the Hugging Face hub (%%s); give the " \
              "task's data as files instead: TASK_DATA=dir with train/dev .jsonl or .conll " \
              "(README: Evaluation)" % (name, spec["repo"], spec["config"])
    datasets = require("datasets", "TASK=%s reads the Hugging Face hub" % name,
                       "; or give the task's data as files: TASK_DATA=dir")
    if not hub_dir and not (os.environ.get("HF_HUB_OFFLINE") or os.environ.get("HF_DATASETS_OFFLINE")) \
            and not hub_reachable():   # a cache made online still serves an offline run
        raise UserError(offline % "offline: huggingface.co does not answer")
    datasets.logging.set_verbosity_error()
    datasets.disable_progress_bars()
    try:
        # A local copy is read afresh: `datasets` would serve a cached copy of an older one.
        splits = datasets.load_dataset(source, spec["config"], download_mode=(
            "force_redownload" if hub_dir else None))
    except Exception as e:   # a lost connection shows as one of several types, by version
        raise UserError(offline % ("%s: %s" % (type(e).__name__, str(e).splitlines()[0][:150])))
    return dataset_to_task(name, spec, splits["train"], splits[spec["dev"]])


def dataset_to_task(name, spec, train, dev):
    """`datasets` splits (ClassLabel features name the labels) to the plain shape."""
    if spec["kind"] == "classification":
        names = train.features[spec["label"]].names

        def rows(split):
            return [{"text": r[spec["text"]], "text_pair": r[spec["text_pair"]],
                     "label": names[r[spec["label"]]]}
                    for r in split if r[spec["label"]] >= 0]   # -1: unlabelled
        labels = list(names)
    else:
        names = train.features[spec["tags"]].feature.names

        def rows(split):
            return [{"tokens": r[spec["tokens"]], "tags": [names[t] for t in r[spec["tags"]]]}
                    for r in split if r[spec["tokens"]]]
        labels = list(names)
    return Task(name=name, kind=spec["kind"], metric=spec["metric"], labels=labels,
                train=rows(train), dev=rows(dev), note="%s (%s) from the hub" % (
                    spec["repo"], spec["config"]))
