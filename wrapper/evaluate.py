"""make evaluate: fine-tune the converted discriminator on a Spanish task, beside baselines.

    python -m wrapper.evaluate --data-dir D --model-name N --task fortunes-es \
        [--model PATH_OR_HUB_ID] [--baseline random|PATH|HUB_ID ...] [--seeds 3] \
        [--task-data DIR] [--hub-dir DIR]

Each model (the converted discriminator D/models/N/hf/discriminator by default, then each
baseline) is fine-tuned once per seed with the same settings: transformers'
ElectraForSequenceClassification (or ElectraForTokenClassification for NER) on top of the
pretrained body, AdamW with linear warmup and decay, the dev score after every epoch.
`random` is the model's own architecture and config with random weights: the line that says
whether pretraining helped at all. Prints task, metric, model, mean ± std over seeds, time
and device (CUDA when torch sees a GPU), then for each baseline the difference of means, its
95% confidence interval and Welch's p-value, and a verdict at alpha 0.05 (none with fewer
than 3 seeds a side). Writes D/models/N/evaluation/TASK.json (every seed's score and dev
curve, the comparisons) and TASK.png (dev score per epoch, one line per model and seed); a
MODEL= that is not D/models/N's own model writes to D/evaluation/NAME instead (results_dir).
Each finished seed is kept in TASK.seeds/ until the pair is written, so a rerun after an
interruption trains only the seeds that did not finish.

Scores: accuracy (xnli-es, pawsx-es, TASK_DATA .jsonl), entity-level F1 with seqeval
(conll2002-es, TASK_DATA .conll), macro-F1 with accuracy beside it (fortunes-es, whose
classes are unbalanced); classification tasks also print the majority class's score, the
floor any model must clear. The loop is a plain one rather than transformers' Trainer: it is
short, gives the per-epoch progress bar and dev curve directly, and needs no accelerate.
"""
import argparse
import glob
import hashlib
import json
import math
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from types import ModuleType
from typing import Any, BinaryIO, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

from wrapper import eval_tasks, fsutil, locking, paths
from wrapper.cli import UserError, fail, model_parser, positive_int, program_name, run_main
from wrapper.settings import default

# Fine-tuning settings per task kind; the command line overrides them. ELECTRA-small's own
# fine-tuning uses 3e-4 for small models; the tiny demo model is tried at the same rate.
DEFAULTS = {
    "fortunes-es": dict(epochs=3, batch_size=32, learning_rate=3e-4, max_seq_length=64),
    "classification": dict(epochs=3, batch_size=32, learning_rate=1e-4, max_seq_length=128),
    "tagging": dict(epochs=3, batch_size=32, learning_rate=1e-4, max_seq_length=128),
}
WARMUP_FRACTION = 0.1
WEIGHT_DECAY = 0.01
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
METRIC_NAMES = {"accuracy": "accuracy", "macro-f1": "macro-F1", "entity-f1": "entity F1"}
RANDOM_LABEL = "random init (same config)"
# The significance of model against baseline: Welch's t-test (unequal variances), two-sided.
ALPHA = 0.05
MIN_SEEDS_FOR_VERDICT = 3
# Shorter sequences leave a sentence pair no room beside [CLS] and two [SEP]s.
MIN_SEQ_LENGTH = 8
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json",
                "pytorch_model.bin.index.json")
TOKENIZER_FILES = ("vocab.txt", "tokenizer.json")


# ---- models -----------------------------------------------------------------------------

@dataclass(frozen=True)
class EvaluatedModel:
    """One model to fine-tune: its label in the report, its directory (config, tokenizer and
    weights), and whether its weights are loaded (False: random init of its config)."""
    label: str
    directory: str
    config: Any               # transformers' ElectraConfig
    tokenizer: Any            # its tokenizer
    pretrained: bool


@dataclass
class Evaluation:
    """TASK.json: the task, the settings, every model's scores (model_entry: the model first,
    then the baselines) and the model against each baseline (comparisons). Its fields in
    this order are the file's keys."""
    task: str
    metric: str
    note: str
    train_examples: int
    dev_examples: int
    labels: List[str]
    settings: Dict[str, Any]
    majority_class: Optional[Dict[str, float]]
    device: str
    run: str                  # a run id, also in TASK.png's metadata
    models: List[Dict[str, Any]] = field(default_factory=list)
    comparisons: List[Dict[str, Any]] = field(default_factory=list)


def quiet_transformers() -> ModuleType:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import transformers
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    return transformers


def resolve_source(source: str, what: str) -> str:
    """The local directory of a model path or hub id, failing in one line before training."""
    if os.path.exists(source) or not HUB_ID.match(source):
        if not os.path.isfile(os.path.join(source, "config.json")):
            raise UserError("%s %s holds no converted model (no config.json); run make convert, "
                            "or give a Hugging Face model directory or hub id" % (what, source))
        return source
    from huggingface_hub import snapshot_download
    error = None
    for local_only in (True, False):
        if not local_only and not eval_tasks.hub_reachable():
            break
        try:
            return snapshot_download(source, local_files_only=local_only,
                                     allow_patterns=["*.json", "*.txt", "*.safetensors",
                                                     "*.bin", "*.model"])
        except Exception as e:   # not cached / offline / no such repository: several types
            error = e
    cause = "offline" if error is None else (str(error).strip().splitlines() or [""])[0][:150]
    raise UserError("%s %s: cannot fetch it from the Hugging Face hub (%s); download it where "
                    "there is a network and give its directory instead" % (what, source, cause))


def load_config_and_tokenizer(directory: str, what: str) -> Tuple[Any, Any]:
    transformers = quiet_transformers()
    # Without its vocab, transformers builds a tokenizer of the 5 special tokens: every word
    # [UNK], and a score printed all the same.
    if not any(os.path.isfile(os.path.join(directory, n)) for n in TOKENIZER_FILES):
        raise UserError("%s %s has no vocab.txt (nor tokenizer.json): its tokenizer is missing; "
                        "convert again (make convert writes it), or copy the vocab.txt the "
                        "model was trained with into it" % (what, directory))
    try:
        config = transformers.AutoConfig.from_pretrained(directory)
        tokenizer = transformers.AutoTokenizer.from_pretrained(directory)
    except (OSError, ValueError, KeyError) as e:
        raise UserError("%s %s: cannot load its config and tokenizer (%s)" % (
            what, directory, str(e).splitlines()[0][:200]))
    if config.model_type != "electra":
        raise UserError("%s %s is a %s model; make evaluate fine-tunes ELECTRA models" % (
            what, directory, config.model_type))
    # A tokenizer from another model gives ids the embedding table does not have (a silent
    # IndexError deep in torch), or the wrong rows for every word. The sizes must agree; a
    # table padded to a multiple of 8 (at most 127 rows more, unused) is a layout some
    # published models have.
    size, rows = len(tokenizer), config.vocab_size
    if size != rows and not (size < rows < size + 128 and rows % 8 == 0):
        raise UserError("%s %s: its tokenizer has %d tokens but the model's vocab_size is %d; "
                        "the tokenizer files do not belong to this model (convert again, or "
                        "copy the vocab.txt it was trained with)" % (what, directory, size, rows))
    return config, tokenizer


def check_weights(task: eval_tasks.Task, directory: str, config, what: str) -> None:
    """Loads the weights once before any training: a missing or truncated file, or weights
    of another model, is one line now rather than a traceback after the first runs."""
    if not any(os.path.isfile(os.path.join(directory, n)) for n in WEIGHT_FILES):
        raise UserError("%s %s has no weights (no model.safetensors or pytorch_model.bin); "
                        "convert again (make convert), or copy the whole model directory"
                        % (what, directory))
    try:
        _, info = new_model(task, directory, config, True, loading_info=True)
    except Exception as e:   # safetensors', torch's or transformers' own error: by version
        raise UserError("%s %s: cannot load its weights (%s: %s); the file is damaged or "
                        "incomplete: convert again (make convert), or copy it again" % (
                            what, directory, type(e).__name__,
                            (str(e).strip().splitlines() or [""])[0][:150]))
    body = [k for k in info.get("missing_keys", ()) if not k.startswith("classifier")]
    if body:
        raise UserError("%s %s: its weights lack %d of the model's tensors (%s ...); they are "
                        "not an ELECTRA discriminator's" % (what, directory, len(body), body[0]))


def new_model(task: eval_tasks.Task, directory: str, config, pretrained: bool,
              loading_info: bool = False):
    transformers = quiet_transformers()
    cls = (transformers.ElectraForSequenceClassification if task.kind == "classification"
           else transformers.ElectraForTokenClassification)
    labels = task.labels
    extra = dict(num_labels=len(labels), id2label=dict(enumerate(labels)),
                 label2id={l: i for i, l in enumerate(labels)})
    if pretrained:
        return cls.from_pretrained(directory, output_loading_info=loading_info, **extra)
    import copy
    config = copy.deepcopy(config)
    for key, value in extra.items():
        setattr(config, key, value)
    return cls(config)


# ---- data -------------------------------------------------------------------------------

def encode(task: eval_tasks.Task, tokenizer, max_seq_length: int
           ) -> Dict[str, List[Dict[str, Any]]]:
    """Features per split: input ids (truncated) and labels (-100: not scored)."""
    label_id = {l: i for i, l in enumerate(task.labels)}
    encoded = {}
    for split in ("train", "dev"):
        examples = getattr(task, split)
        if task.kind == "classification":
            has_pair = any(e["text_pair"] for e in examples)
            batch = tokenizer([e["text"] for e in examples],
                              [e["text_pair"] or "" for e in examples] if has_pair else None,
                              truncation=True, max_length=max_seq_length)
            features = [{"input_ids": ids, "token_type_ids": types, "labels": label_id[e["label"]]}
                        for ids, types, e in zip(batch["input_ids"], batch["token_type_ids"],
                                                 examples)]
        else:
            batch = tokenizer([e["tokens"] for e in examples], is_split_into_words=True,
                              truncation=True, max_length=max_seq_length)
            features = []
            for i, e in enumerate(examples):
                word_ids, previous, labels = batch.word_ids(i), None, []
                for word in word_ids:   # the tag on each word's first piece only
                    labels.append(-100 if word is None or word == previous
                                  else label_id[e["tags"][word]])
                    previous = word
                features.append({"input_ids": batch["input_ids"][i],
                                 "token_type_ids": batch["token_type_ids"][i],
                                 "labels": labels})
        encoded[split] = features
    return encoded


_DEVICE = []


def device():
    """CUDA when torch sees a GPU, else the CPU (decided once)."""
    if not _DEVICE:
        import torch
        _DEVICE.append(torch.device("cuda" if torch.cuda.is_available() else "cpu"))
    return _DEVICE[0]


def device_name() -> str:
    import torch
    if device().type == "cuda":
        return "cuda (%s)" % torch.cuda.get_device_name(device())
    return "cpu"


def collate(features: Sequence[Dict[str, Any]], pad_id: int) -> Dict[str, Any]:
    import torch
    width = max(len(f["input_ids"]) for f in features)

    def pad(values, fill):
        return values + [fill] * (width - len(values))
    batch = {
        "input_ids": torch.tensor([pad(f["input_ids"], pad_id) for f in features]),
        "token_type_ids": torch.tensor([pad(f["token_type_ids"], 0) for f in features]),
        "attention_mask": torch.tensor([pad([1] * len(f["input_ids"]), 0) for f in features]),
    }
    labels = [f["labels"] for f in features]
    batch["labels"] = torch.tensor([pad(l, -100) for l in labels] if isinstance(labels[0], list)
                                   else labels)
    return {k: v.to(device()) for k, v in batch.items()}


# ---- scores -----------------------------------------------------------------------------

def scores(task: eval_tasks.Task, gold: Sequence[Any], predicted: Sequence[Any]
           ) -> Dict[str, float]:
    """{metric: value} for the task's main metric and accuracy beside it."""
    if task.kind == "tagging":
        from seqeval.metrics import accuracy_score, f1_score
        return {"entity-f1": float(f1_score(gold, predicted)),
                "accuracy": float(accuracy_score(gold, predicted))}
    from sklearn.metrics import accuracy_score, f1_score
    labels = list(range(len(task.labels)))
    return {"accuracy": float(accuracy_score(gold, predicted)),
            "macro-f1": float(f1_score(gold, predicted, labels=labels, average="macro",
                                       zero_division=0))}


def majority_floor(task: eval_tasks.Task) -> Optional[Dict[str, float]]:
    """Scores of always answering train's most frequent label (classification only)."""
    if task.kind != "classification":
        return None
    label_id = {l: i for i, l in enumerate(task.labels)}
    train = [label_id[e["label"]] for e in task.train]
    majority = max(set(train), key=train.count)
    gold = [label_id[e["label"]] for e in task.dev]
    return scores(task, gold, [majority] * len(gold))


def evaluate_dev(task: eval_tasks.Task, model, features: Sequence[Dict[str, Any]],
                 batch_size: int, pad_id: int) -> Dict[str, float]:
    import torch
    model.eval()
    gold, predicted = [], []
    names = task.labels
    with torch.no_grad():
        for start in range(0, len(features), batch_size):
            chunk = features[start:start + batch_size]
            batch = collate(chunk, pad_id)
            labels = batch.pop("labels").cpu()
            logits = model(**batch).logits.cpu()
            if task.kind == "classification":
                gold += labels.tolist()
                predicted += logits.argmax(-1).tolist()
                continue
            for row_gold, row_pred in zip(labels.tolist(), logits.argmax(-1).tolist()):
                # Words cut off by max_seq_length are not scored (seqeval needs a prediction
                # for every gold tag); the default length keeps nearly every sentence whole.
                words = [(g, p) for g, p in zip(row_gold, row_pred) if g != -100]
                gold.append([names[g] for g, _ in words])
                predicted.append([names[p] for _, p in words])
    model.train()
    return scores(task, gold, predicted)


def fine_tune(task: eval_tasks.Task, encoded: Mapping[str, List[Dict[str, Any]]],
              directory: str, config, pretrained: bool, seed: int,
              settings: Mapping[str, Any], pad_id: int, label: str
              ) -> Tuple[List[Dict[str, float]], List[float]]:
    """Dev scores after each epoch of one fine-tuning run."""
    import torch
    from tqdm import tqdm
    transformers = quiet_transformers()
    torch.manual_seed(seed)
    model = new_model(task, directory, config, pretrained).to(device())
    model.train()
    train = encoded["train"]
    batch_size, epochs = settings["batch_size"], settings["epochs"]
    steps_per_epoch = math.ceil(len(train) / batch_size)
    no_decay = ("bias", "LayerNorm.weight")
    groups = [
        {"params": [p for n, p in model.named_parameters() if not n.endswith(no_decay)],
         "weight_decay": WEIGHT_DECAY},
        {"params": [p for n, p in model.named_parameters() if n.endswith(no_decay)],
         "weight_decay": 0.0},
    ]
    optimizer = torch.optim.AdamW(groups, lr=settings["learning_rate"])
    total = steps_per_epoch * epochs
    schedule = transformers.get_linear_schedule_with_warmup(
        optimizer, int(WARMUP_FRACTION * total), total)
    order = torch.Generator().manual_seed(seed)
    curve, losses = [], []
    for epoch in range(1, epochs + 1):
        total_loss = 0.0
        permutation = torch.randperm(len(train), generator=order).tolist()
        bar = tqdm(range(steps_per_epoch), desc="%s seed %d epoch %d/%d" % (
            label, seed, epoch, epochs), file=sys.stderr, leave=False, dynamic_ncols=True,
            mininterval=1.0)
        for step in bar:
            batch = collate([train[i] for i in
                             permutation[step * batch_size:(step + 1) * batch_size]], pad_id)
            loss = model(**batch).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad()
            total_loss += loss.item()
            if step % 20 == 0:
                bar.set_postfix(loss="%.3f" % loss.item())
        bar.close()
        dev = evaluate_dev(task, model, encoded["dev"], 2 * batch_size, pad_id)
        curve.append(dev)
        losses.append(total_loss / steps_per_epoch)
        sys.stderr.write("%s seed %d epoch %d/%d: dev %s\n" % (
            label, seed, epoch, epochs, ", ".join("%s %.4f" % (METRIC_NAMES[k], v)
                                                  for k, v in sorted(dev.items()))))
    return curve, losses


# ---- significance ------------------------------------------------------------------------

def welch(model_scores: Sequence[float], baseline_scores: Sequence[float]) -> Dict[str, Any]:
    """Welch's t-test of mean(model) - mean(baseline): {difference, ci95 [low, high], p_value
    (two-sided), df}; ci95, p_value and df are None with fewer than 2 scores a side (no
    variance to estimate). Identical scores on both sides (no variance at all): p 1 when the
    means are equal, 0 when they differ, the interval the difference itself."""
    n1, n2 = len(model_scores), len(baseline_scores)
    difference = statistics.mean(model_scores) - statistics.mean(baseline_scores)
    if n1 < 2 or n2 < 2:
        return dict(difference=difference, ci95=None, p_value=None, df=None)
    a, b = statistics.variance(model_scores) / n1, statistics.variance(baseline_scores) / n2
    if a + b == 0:
        return dict(difference=difference, ci95=[difference, difference],
                    p_value=1.0 if difference == 0 else 0.0, df=float(n1 + n2 - 2))
    from scipy.stats import t as student_t
    se = math.sqrt(a + b)
    df = (a + b) ** 2 / (a ** 2 / (n1 - 1) + b ** 2 / (n2 - 1))   # Welch-Satterthwaite
    half = student_t.ppf(0.975, df) * se
    p_value = float(2 * student_t.sf(abs(difference) / se, df))
    return dict(difference=difference, ci95=[difference - half, difference + half],
                p_value=min(1.0, p_value), df=df)


def format_p(p_value: float) -> str:
    """0.003, 0.31; '< 0.001' below; three digits where two would round onto alpha."""
    if p_value < 0.001:
        return "< 0.001"
    text = "%.2g" % p_value
    return "%.3g" % p_value if float(text) == ALPHA else text


def p_text(p_value: float) -> str:
    """'p = 0.31', 'p < 0.001'."""
    text = format_p(p_value)
    return "p " + (text if text.startswith("<") else "= " + text)


def verdict(test: Mapping[str, Any], baseline: str, seeds: int) -> str:
    """The comparison in words: better than / worse than BASELINE, no significant difference,
    or no verdict with too few seeds (`seeds`: the fewer of the two sides)."""
    if seeds < MIN_SEEDS_FOR_VERDICT:
        return "no verdict possible with %d seed%s (%d or more needed)" % (
            seeds, "" if seeds == 1 else "s", MIN_SEEDS_FOR_VERDICT)
    p = p_text(test["p_value"])
    if test["p_value"] >= ALPHA:
        return "no significant difference (%s)" % p
    return "%s than %s (%s)" % ("better" if test["difference"] > 0 else "worse", baseline, p)


def comparisons(result: Evaluation) -> List[Dict[str, Any]]:
    """The model (first) against each baseline, on the task's main metric."""
    model, found = result.models[0], []
    for base in result.models[1:]:
        name = "random init" if base["name"] == RANDOM_LABEL else base["name"]
        test = welch(model["scores"], base["scores"])
        seeds = min(len(model["scores"]), len(base["scores"]))
        found.append(dict(model=model["name"], baseline=name, metric=result.metric,
                          seeds=[len(model["scores"]), len(base["scores"])],
                          test="Welch's t-test, two-sided", alpha=ALPHA,
                          verdict=verdict(test, name, seeds), **test))
    return found


def describe_comparison(c: Mapping[str, Any]) -> str:
    """'+0.0281 (95% CI -0.0121 to +0.0683), p = 0.12' (what the seeds allow)."""
    text = "%+.4f" % c["difference"]
    if c["ci95"] is not None:
        text += " (95%% CI %+.4f to %+.4f), %s" % (c["ci95"][0], c["ci95"][1],
                                                   p_text(c["p_value"]))
    return text


# ---- results ----------------------------------------------------------------------------

def summary(values: Sequence[float]) -> Tuple[float, float]:
    return (statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0)


def columns(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def results_table(result: Evaluation) -> str:
    metric = result.metric
    rows = [("task", "metric", "model", "mean ± std", "seeds", "time", "device")]
    for model in result.models:
        rows.append((result.task, METRIC_NAMES[metric], model["name"],
                     "%.4f ± %.4f" % (model["mean"], model["std"]), str(len(model["scores"])),
                     "%.0f s" % model["seconds"], result.device))
        if metric != "accuracy":
            accuracy = model["accuracy"]
            rows.append(("", "accuracy", "", "%.4f ± %.4f" % (accuracy["mean"], accuracy["std"]),
                         "", "", ""))
    if result.majority_class:
        floor = result.majority_class
        rows.append((result.task, METRIC_NAMES[metric], "majority class (floor)",
                     "%.4f" % floor[metric], "", "", ""))
        if metric != "accuracy":
            rows.append(("", "accuracy", "", "%.4f" % floor["accuracy"], "", "", ""))
    text = columns(rows)
    if result.comparisons:
        rows = [("model", "against", "difference of means", "95% CI (Welch)",
                 "p (Welch, two-sided)")]
        for c in result.comparisons:
            rows.append((c["model"], c["baseline"], "%+.4f" % c["difference"],
                         "[%+.4f, %+.4f]" % tuple(c["ci95"]) if c["ci95"] else "-",
                         format_p(c["p_value"]) if c["p_value"] is not None else "-"))
        text += "\n\n" + columns(rows) + "\n" + "\n".join(
            "verdict: %s against %s: %s" % (c["model"], c["baseline"], c["verdict"])
            for c in result.comparisons)
    return text


def plot(result: Evaluation, path: Union[str, BinaryIO]) -> None:
    """TASK.png at `path`, which must end in .png; a run id in its metadata."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    metric = result.metric
    figure, axes = plt.subplots(figsize=(7, 4.5))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for color, model in zip(colors, result.models):
        for number, curve in enumerate(model["curves"]):
            axes.plot(range(1, len(curve) + 1), [c[metric] for c in curve], marker="o",
                      color=color, alpha=0.8, label=model["name"] if number == 0 else None)
    if result.majority_class:
        axes.axhline(result.majority_class[metric], color="gray", linestyle="--",
                     label="majority class")
    axes.set_xlabel("epoch")
    axes.set_ylabel("dev %s" % METRIC_NAMES[metric])
    axes.set_title("\n".join(["%s: one line per model and seed" % result.task] + [
        "minus %s: %s; %s" % (c["baseline"], describe_comparison(c),
                                c["verdict"].split(" (p")[0]) for c in result.comparisons]),
        fontsize=9)
    axes.xaxis.get_major_locator().set_params(integer=True)
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100, format="png", metadata={"Description": "run " + result.run})
    plt.close(figure)


def quiet_matplotlib() -> None:
    """matplotlib writes a font cache into MPLCONFIGDIR, by default under $HOME: a
    temporary directory instead, removed at exit, unless the user chose one."""
    if not os.environ.get("MPLCONFIGDIR"):
        import atexit
        directory = tempfile.mkdtemp(prefix="evaluate-matplotlib-")
        atexit.register(shutil.rmtree, directory, True)
        os.environ["MPLCONFIGDIR"] = directory


# ---- where the results go, and the runs that did not finish -------------------------------

def results_dir(data_dir: str, model_name: str, model: str) -> str:
    """D/models/N/evaluation for N's own model; D/evaluation/NAME for any other MODEL=: a
    directory made under models/ before pretraining would make `make pretrain` refuse it as
    a model directory this pipeline did not start (stages.run_stage)."""
    own = paths.hf_dir(data_dir, model_name, "discriminator")
    if not model or (os.path.exists(model) and os.path.exists(own)
                     and os.path.samefile(model, own)):
        return paths.evaluation_dir(data_dir, model_name)
    return paths.external_evaluation_dir(data_dir, model)


def write_error(error: OSError, directory: str) -> UserError:
    """A failed write as one line (a full disk named as such)."""
    return fsutil.disk_full_error(error, directory, what="the evaluation results") or UserError(
        "cannot write the evaluation results in %s (%s); make it writable, or choose another "
        "DATA_DIR" % (directory, error.strerror or error))


def check_writable(out_dir: str) -> None:
    """Writes and removes a probe of a few blocks before any training: a read-only or full
    DATA_DIR is said now, not after the last seed."""
    probe = os.path.join(out_dir, ".write-probe-%d" % os.getpid())
    try:
        os.makedirs(out_dir, exist_ok=True)
        with open(probe, "wb") as f:
            f.write(b"\0" * 16384)
            f.flush()
            os.fsync(f.fileno())
        os.remove(probe)
    except OSError as e:
        if os.path.exists(probe):
            os.remove(probe)
        raise write_error(e, out_dir)


def partial_pid(path: str) -> Optional[int]:
    pid = path.rsplit("-", 1)[-1].split(".")[0]
    return int(pid) if pid.isdigit() else None


def settle_earlier_runs(out_dir: str) -> None:
    """What killed runs left in `out_dir` (under its lock, so no other run writes there).

    The pair is written as TASK.png.partial-PID and TASK.json.partial-PID, both complete,
    then renamed PNG first and JSON last (write_pair). A JSON partial without its PNG partial
    means a run was killed between the two renames: its JSON is complete, and its PNG is
    already in place, so the rename is finished here. Every other partial file and write
    probe is removed."""
    leftovers = [p for p in glob.glob(os.path.join(out_dir, "*.partial-*")) +
                 glob.glob(os.path.join(out_dir, "*.seeds", "*.partial-*")) +
                 glob.glob(os.path.join(out_dir, ".write-probe-*"))
                 if partial_pid(p) is None or not fsutil.pid_alive(partial_pid(p))
                 or partial_pid(p) == os.getpid()]
    for path in leftovers:
        final, _, pid = path.rpartition(".partial-")
        if final.endswith(".json") and os.path.dirname(final) == out_dir.rstrip(os.sep) \
                and not os.path.exists(final[:-len(".json")] + ".png.partial-" + pid) \
                and os.path.exists(final[:-len(".json")] + ".png"):
            os.replace(path, final)
            print("%s: completed the results of a run killed while writing them" % final)
        elif os.path.isdir(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            os.remove(path)


def write_pair(result: Evaluation, json_path: str, png_path: str) -> None:
    """TASK.png and TASK.json, replaced together: both are written complete under partial
    names, then renamed PNG first, JSON last. A reader who reads the JSON and then the PNG
    sees one run's pair (each carries the run id); a kill between the renames is finished by
    the next run (settle_earlier_runs)."""
    try:
        with fsutil.atomic_file(png_path, "wb", rename=False) as f:
            plot(result, f)
        with fsutil.atomic_file(json_path, rename=False) as f:
            f.write(json.dumps(asdict(result), indent=2, ensure_ascii=False) + "\n")
    except OSError as e:
        if os.path.exists(fsutil.partial_path(png_path)):
            os.remove(fsutil.partial_path(png_path))
        raise write_error(e, os.path.dirname(json_path))
    os.replace(fsutil.partial_path(png_path), png_path)
    os.replace(fsutil.partial_path(json_path), json_path)


# ---- finished seeds -------------------------------------------------------------------------

def digest_files(directory: str, names: Iterable[str]) -> str:
    """SHA-256 over the named files of `directory` that exist (name and bytes)."""
    h = hashlib.sha256()
    for name in sorted(names):
        path = os.path.join(directory, name)
        if os.path.isfile(path):
            h.update(name.encode("utf-8") + b"\0")
            with open(path, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
    return h.hexdigest()


def seed_key(task: eval_tasks.Task, settings: Mapping[str, Any], directory: str,
             pretrained: bool) -> str:
    """What a seed's result depends on: the task's examples, the settings, the model's files
    (weights only when pretrained), the device kind. A kept seed is reused only when equal."""
    data = hashlib.sha256(json.dumps([task.labels, task.train, task.dev],
                                     sort_keys=True).encode("utf-8")).hexdigest()
    names = ["config.json", "vocab.txt", "tokenizer.json", "tokenizer_config.json",
             "special_tokens_map.json"] + (list(WEIGHT_FILES) if pretrained else [])
    text = json.dumps(dict(task=task.name, metric=task.metric, data=data,
                           settings=settings, model=digest_files(directory, names),
                           pretrained=pretrained, device=device().type), sort_keys=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def seed_file(seeds_dir: str, label: str, seed: int) -> str:
    slug = re.sub(r"[^\w.-]+", "-", label).strip("-.")[:60] or "model"
    return os.path.join(seeds_dir, "%s-%s-seed%d.json" % (
        slug, hashlib.sha256(label.encode("utf-8")).hexdigest()[:8], seed))


def kept_seed(path: str, key: str) -> Optional[Dict[str, Any]]:
    """A finished seed's record when it was made with the same key, else None."""
    try:
        with open(path, encoding="utf-8") as f:
            record = json.load(f)
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and record.get("key") == key else None


def keep_seed(path: str, record: Mapping[str, Any]) -> None:
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fsutil.atomic_write_text(path, json.dumps(record) + "\n")
    except OSError as e:
        raise write_error(e, os.path.dirname(path))


# ---- command line -----------------------------------------------------------------------

def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = model_parser(
        "python -m wrapper.evaluate",
        "Fine-tune the converted discriminator (and baselines) on a Spanish task.")
    parser.add_argument("--task", required=True,
                        help="fortunes-es, xnli-es, pawsx-es, conll2002-es, or any name with "
                             "--task-data")
    parser.add_argument("--model", default=default("MODEL"),
                        help="a Hugging Face model directory or hub id (default: "
                             "DATA_DIR/models/MODEL_NAME/hf/discriminator)")
    parser.add_argument("--baseline", nargs="*", default=None,
                        help="random (default) and/or model directories or hub ids")
    parser.add_argument("--seeds", default=default("SEEDS"))
    parser.add_argument("--task-data", default=default("TASK_DATA"),
                        help="a directory with train/dev .jsonl or .conll files")
    parser.add_argument("--hub-dir", default="",
                        help="a local copy of the hub's dataset repositories (HUB_DIR/REPO)")
    parser.add_argument("--fortunes-dir", default=eval_tasks.FORTUNES_DIR)
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--learning-rate", type=float)
    parser.add_argument("--max-seq-length", type=int)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: its default)")
    return parser.parse_args(argv)


def split_baselines(text: str) -> List[str]:
    """BASELINE="random other-model" arrives from make as one argument: its words, except
    that words which together name an existing path ("my models/x") are one baseline."""
    words = [(m.start(), m.end()) for m in re.finditer(r"\S+", text)]
    found, i = [], 0
    while i < len(words):
        end = i + 1
        for j in range(len(words), i, -1):
            if os.path.exists(text[words[i][0]:words[j - 1][1]]):
                end = j
                break
        found.append(text[words[i][0]:words[end - 1][1]])
        i = end
    return found


def check_numbers(args: argparse.Namespace) -> None:
    """The command line's numbers, before any model is loaded."""
    for flag in ("epochs", "batch_size"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            raise UserError("--%s must be at least 1 (got %d)" % (flag.replace("_", "-"), value))
    if args.learning_rate is not None and not (math.isfinite(args.learning_rate)
                                               and args.learning_rate > 0):
        raise UserError("--learning-rate must be a positive number (got %s)" % args.learning_rate)
    if args.max_seq_length is not None and args.max_seq_length < MIN_SEQ_LENGTH:
        raise UserError("--max-seq-length must be at least %d (got %d)" % (
            MIN_SEQ_LENGTH, args.max_seq_length))
    if args.threads < 0:
        raise UserError("--threads must be 0 (torch's default) or more (got %d)" % args.threads)


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    seeds = positive_int(args.seeds, "SEEDS")
    check_numbers(args)
    baselines = [b for arg in (args.baseline if args.baseline is not None else ["random"])
                 for b in split_baselines(arg)]
    task = eval_tasks.load_task(args.task, args.task_data or None, args.hub_dir or None,
                                args.fortunes_dir)
    if task.kind == "tagging":
        eval_tasks.require("seqeval", "TASK=%s is scored (entity F1)" % task.name)
    settings = dict(DEFAULTS.get(task.name, DEFAULTS[task.kind]))
    for key in settings:
        if getattr(args, key) is not None:
            settings[key] = getattr(args, key)
    if not re.match(r"^[\w.-]+$", task.name):
        raise UserError("TASK %r names the result file; use letters, digits, '.', '-', '_'"
                        % task.name)

    # Every model is found and checked before the first one trains.
    model_source = args.model or paths.hf_dir(args.data_dir, args.model_name, "discriminator")
    main_dir = resolve_source(model_source, "model")
    main_config, main_tokenizer = load_config_and_tokenizer(main_dir, "model")
    runs = [EvaluatedModel(args.model or args.model_name, main_dir, main_config, main_tokenizer,
                           True)]
    for baseline in baselines:
        if baseline == "random":
            runs.append(EvaluatedModel(RANDOM_LABEL, main_dir, main_config, main_tokenizer, False))
            continue
        directory = resolve_source(baseline, "baseline")
        config, tokenizer = load_config_and_tokenizer(directory, "baseline")
        runs.append(EvaluatedModel(baseline, directory, config, tokenizer, True))
    for number, run in enumerate(runs):
        positions = run.config.max_position_embeddings
        if settings["max_seq_length"] > positions:
            raise UserError("--max-seq-length %d is more than %s's %d positions "
                            "(max_position_embeddings); give at most %d" % (
                                settings["max_seq_length"], run.directory, positions, positions))
        if run.pretrained:
            check_weights(task, run.directory, run.config, "baseline" if number else "model")

    out_dir = results_dir(args.data_dir, args.model_name, args.model)
    check_writable(out_dir)
    with locking.held(locking.evaluation_lock_file(args.data_dir, out_dir),
                      "evaluation directory %s" % out_dir):
        settle_earlier_runs(out_dir)
        return evaluate(task, settings, runs, seeds, args.threads, out_dir)


def evaluate(task: eval_tasks.Task, settings: Dict[str, Any], runs: Sequence[EvaluatedModel],
             seeds: int, threads: int, out_dir: str) -> int:
    """Fine-tunes every run once per seed (keeping each finished seed), then writes the pair."""
    import torch
    if threads:
        torch.set_num_threads(threads)
    quiet_matplotlib()
    seeds_dir = os.path.join(out_dir, task.name + ".seeds")
    print("%s: %s; %d train / %d dev examples; %s; seeds %d; %s; on %s" % (
        task.name, task.note, len(task.train), len(task.dev),
        METRIC_NAMES[task.metric], seeds,
        ", ".join("%s %s" % (k.replace("_", " "), v) for k, v in sorted(settings.items())),
        device_name()))
    sys.stdout.flush()
    result = Evaluation(task=task.name, metric=task.metric, note=task.note,
                        train_examples=len(task.train), dev_examples=len(task.dev),
                        labels=task.labels, settings=settings,
                        majority_class=majority_floor(task), device=device_name(),
                        run="%s-%d" % (time.strftime("%Y%m%dT%H%M%S"), os.getpid()))
    encodings = {}   # by tokenizer: random init shares the model's, encoded once
    finished = 0
    try:
        for run in runs:
            label, directory, tokenizer = run.label, run.directory, run.tokenizer
            key = seed_key(task, settings, directory, run.pretrained)
            records = []
            for seed in range(1, seeds + 1):
                path = seed_file(seeds_dir, label, seed)
                record = kept_seed(path, key)
                if record:
                    print("%s seed %d: finished in an earlier run with the same settings (%s); "
                          "not trained again" % (label, seed, os.path.relpath(path, out_dir)))
                    sys.stdout.flush()
                else:
                    if id(tokenizer) not in encodings:
                        encodings[id(tokenizer)] = encode(task, tokenizer,
                                                          settings["max_seq_length"])
                    start = time.time()
                    curve, losses = fine_tune(task, encodings[id(tokenizer)], directory,
                                              run.config, run.pretrained, seed, settings,
                                              tokenizer.pad_token_id, label)
                    record = dict(key=key, model=label, seed=seed, curve=curve,
                                  train_loss=losses, seconds=time.time() - start,
                                  device=device_name())
                    keep_seed(path, record)
                    finished += 1
                records.append(record)
            result.models.append(model_entry(task, label, directory, run.pretrained, records))
    except KeyboardInterrupt:
        kept = len(glob.glob(os.path.join(seeds_dir, "*-seed*.json")))
        fail(program_name(), "interrupted; %s: run the same command again to go on from them" % (
            "%d finished seed(s) are kept in %s" % (kept, seeds_dir) if kept
            else "no seed had finished"), 130)
    result.comparisons = comparisons(result)
    json_path = os.path.join(out_dir, task.name + ".json")
    png_path = os.path.join(out_dir, task.name + ".png")
    write_pair(result, json_path, png_path)
    shutil.rmtree(seeds_dir, ignore_errors=True)   # the pair now holds every seed
    print(results_table(result))
    print("results: %s, %s" % (json_path, png_path))
    return 0


def model_entry(task: eval_tasks.Task, label: str, directory: str, pretrained: bool,
                records: Sequence[Mapping[str, Any]]) -> Dict[str, Any]:
    """One model's line of TASK.json: every seed's curve and loss, mean ± std per metric."""
    curves = [r["curve"] for r in records]
    seconds = [r["seconds"] for r in records]
    entry = dict(name=label, source=directory if pretrained else "random init of " + directory,
                 pretrained=pretrained, seconds=round(sum(seconds), 1),
                 seconds_per_seed=[round(s, 1) for s in seconds], curves=curves,
                 train_loss=[r["train_loss"] for r in records])
    final = [c[-1] for c in curves]
    for metric in sorted(final[0]):
        values = [f[metric] for f in final]
        mean, std = summary(values)
        if metric == task.metric:
            entry.update(mean=mean, std=std, scores=values)
        else:
            entry[metric] = dict(mean=mean, std=std, scores=values)
    return entry


if __name__ == "__main__":
    run_main(main)
