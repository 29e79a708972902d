"""make evaluate: fine-tune the converted discriminator on a Spanish task, beside baselines.

    python -m wrapper.evaluate --data-dir D --model-name N --task fortunes-es \
        [--model PATH_OR_HUB_ID] [--baseline random|PATH|HUB_ID ...] [--seeds 3] \
        [--task-data DIR] [--hub-dir DIR]

Each model (the converted discriminator D/models/N/hf/discriminator by default, then each
baseline) is fine-tuned once per seed with the same settings: transformers'
ElectraForSequenceClassification (or ElectraForTokenClassification for NER) on top of the
pretrained body, AdamW with linear warmup and decay, the dev score after every epoch.
`random` is the model's own architecture and config with random weights: the line that says
whether pretraining helped at all. Prints task, metric, model, mean ± std over seeds and
time; writes D/models/N/evaluation/TASK.json (every seed's score and dev curve) and TASK.png
(dev score per epoch, one line per model and seed).

Scores: accuracy (xnli-es, pawsx-es, TASK_DATA .jsonl), entity-level F1 with seqeval
(conll2002-es, TASK_DATA .conll), macro-F1 with accuracy beside it (fortunes-es, whose
classes are unbalanced); classification tasks also print the majority class's score, the
floor any model must clear. The loop is a plain one rather than transformers' Trainer: it is
short, gives the per-epoch progress bar and dev curve directly, and needs no accelerate.
"""
import json
import math
import os
import re
import statistics
import sys
import time

from wrapper import eval_tasks, fsutil, paths
from wrapper.cli import UserError, model_parser, run_main

PROGRAM = "wrapper.evaluate"
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


# ---- models -----------------------------------------------------------------------------

def quiet_transformers():
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import transformers
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    return transformers


def resolve_source(source, what):
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


def load_config_and_tokenizer(directory, what):
    transformers = quiet_transformers()
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
    # IndexError deep in torch, or nonsense if the sizes happen to fit in part).
    if len(tokenizer) > config.vocab_size:
        raise UserError("%s %s: its tokenizer has %d tokens but the model's vocab_size is %d; "
                        "the tokenizer files do not belong to this model (convert again, or "
                        "copy the vocab.txt it was trained with)" % (
                            what, directory, len(tokenizer), config.vocab_size))
    return config, tokenizer


def new_model(task, directory, config, pretrained):
    transformers = quiet_transformers()
    cls = (transformers.ElectraForSequenceClassification if task["kind"] == "classification"
           else transformers.ElectraForTokenClassification)
    labels = task["labels"]
    extra = dict(num_labels=len(labels), id2label=dict(enumerate(labels)),
                 label2id={l: i for i, l in enumerate(labels)})
    if pretrained:
        return cls.from_pretrained(directory, **extra)
    import copy
    config = copy.deepcopy(config)
    for key, value in extra.items():
        setattr(config, key, value)
    return cls(config)


# ---- data -------------------------------------------------------------------------------

def encode(task, tokenizer, max_seq_length):
    """Features per split: input ids (truncated) and labels (-100: not scored)."""
    label_id = {l: i for i, l in enumerate(task["labels"])}
    encoded = {}
    for split in ("train", "dev"):
        examples = task[split]
        if task["kind"] == "classification":
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


def device():
    import torch
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def collate(features, pad_id):
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

def scores(task, gold, predicted):
    """{metric: value} for the task's main metric and accuracy beside it."""
    if task["kind"] == "tagging":
        from seqeval.metrics import accuracy_score, f1_score
        return {"entity-f1": float(f1_score(gold, predicted)),
                "accuracy": float(accuracy_score(gold, predicted))}
    from sklearn.metrics import accuracy_score, f1_score
    labels = list(range(len(task["labels"])))
    return {"accuracy": float(accuracy_score(gold, predicted)),
            "macro-f1": float(f1_score(gold, predicted, labels=labels, average="macro",
                                       zero_division=0))}


def majority_floor(task):
    """Scores of always answering train's most frequent label (classification only)."""
    if task["kind"] != "classification":
        return None
    label_id = {l: i for i, l in enumerate(task["labels"])}
    train = [label_id[e["label"]] for e in task["train"]]
    majority = max(set(train), key=train.count)
    gold = [label_id[e["label"]] for e in task["dev"]]
    return scores(task, gold, [majority] * len(gold))


def evaluate_dev(task, model, features, batch_size, pad_id):
    import torch
    model.eval()
    gold, predicted = [], []
    names = task["labels"]
    with torch.no_grad():
        for start in range(0, len(features), batch_size):
            chunk = features[start:start + batch_size]
            batch = collate(chunk, pad_id)
            labels = batch.pop("labels").cpu()
            logits = model(**batch).logits.cpu()
            if task["kind"] == "classification":
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


def fine_tune(task, encoded, directory, config, pretrained, seed, settings, pad_id, label):
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


# ---- results ----------------------------------------------------------------------------

def summary(values):
    return (statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0)


def results_table(result):
    metric = result["metric"]
    rows = [("task", "metric", "model", "mean ± std", "seeds", "time")]
    for m in result["models"]:
        rows.append((result["task"], METRIC_NAMES[metric], m["name"],
                     "%.4f ± %.4f" % (m["mean"], m["std"]), str(len(m["scores"])),
                     "%.0f s" % m["seconds"]))
        if metric != "accuracy":
            acc = m["accuracy"]
            rows.append(("", "accuracy", "", "%.4f ± %.4f" % (acc["mean"], acc["std"]), "", ""))
    if result.get("majority_class"):
        floor = result["majority_class"]
        rows.append((result["task"], METRIC_NAMES[metric], "majority class (floor)",
                     "%.4f" % floor[metric], "", ""))
        if metric != "accuracy":
            rows.append(("", "accuracy", "", "%.4f" % floor["accuracy"], "", ""))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def plot(result, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    metric = result["metric"]
    figure, axes = plt.subplots(figsize=(7, 4.5))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for color, m in zip(colors, result["models"]):
        for i, curve in enumerate(m["curves"]):
            axes.plot(range(1, len(curve) + 1), [c[metric] for c in curve], marker="o",
                      color=color, alpha=0.8, label=m["name"] if i == 0 else None)
    if result.get("majority_class"):
        axes.axhline(result["majority_class"][metric], color="gray", linestyle="--",
                     label="majority class")
    axes.set_xlabel("epoch")
    axes.set_ylabel("dev %s" % METRIC_NAMES[metric])
    axes.set_title("%s: one line per model and seed" % result["task"])
    axes.xaxis.get_major_locator().set_params(integer=True)
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    tmp = "%s.partial-%d.png" % (path, os.getpid())
    figure.savefig(tmp, dpi=100)
    plt.close(figure)
    os.replace(tmp, path)


# ---- command line -----------------------------------------------------------------------

def parse_args(argv=None):
    parser = model_parser(
        "python -m wrapper.evaluate",
        "Fine-tune the converted discriminator (and baselines) on a Spanish task.")
    parser.add_argument("--task", required=True,
                        help="fortunes-es, xnli-es, pawsx-es, conll2002-es, or any name with "
                             "--task-data")
    parser.add_argument("--model", default="",
                        help="a Hugging Face model directory or hub id (default: "
                             "DATA_DIR/models/MODEL_NAME/hf/discriminator)")
    parser.add_argument("--baseline", nargs="*", default=None,
                        help="random (default) and/or model directories or hub ids")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--task-data", default="",
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


def main(argv=None):
    args = parse_args(argv)
    if args.seeds < 1:
        raise UserError("SEEDS must be at least 1 (got %d)" % args.seeds)
    # BASELINE="random skimai/electra-small-spanish" arrives from make as one argument.
    baselines = [b for arg in (args.baseline if args.baseline is not None else ["random"])
                 for b in arg.split()]
    task = eval_tasks.load_task(args.task, args.task_data or None, args.hub_dir or None,
                                args.fortunes_dir)
    settings = dict(DEFAULTS.get(task["name"], DEFAULTS[task["kind"]]))
    for key in settings:
        if getattr(args, key) is not None:
            settings[key] = getattr(args, key)
    if not re.match(r"^[\w.-]+$", task["name"]):
        raise UserError("TASK %r names the result file; use letters, digits, '.', '-', '_'"
                        % task["name"])

    # Every model is found and checked before the first one trains.
    model_source = args.model or paths.hf_dir(args.data_dir, args.model_name, "discriminator")
    main_dir = resolve_source(model_source, "model")
    main_config, main_tokenizer = load_config_and_tokenizer(main_dir, "model")
    runs = [(args.model or args.model_name, main_dir, main_config, main_tokenizer, True)]
    for baseline in baselines:
        if baseline == "random":
            runs.append(("random init (same config)", main_dir, main_config, main_tokenizer,
                         False))
            continue
        directory = resolve_source(baseline, "baseline")
        config, tokenizer = load_config_and_tokenizer(directory, "baseline")
        runs.append((baseline, directory, config, tokenizer, True))

    import torch
    if args.threads:
        torch.set_num_threads(args.threads)
    out_dir = paths.evaluation_dir(args.data_dir, args.model_name)
    print("%s: %s; %d train / %d dev examples; %s; seeds %d; %s" % (
        task["name"], task["note"], len(task["train"]), len(task["dev"]),
        METRIC_NAMES[task["metric"]], args.seeds,
        ", ".join("%s %s" % (k.replace("_", " "), v) for k, v in sorted(settings.items()))))
    sys.stdout.flush()
    result = dict(task=task["name"], metric=task["metric"], note=task["note"],
                  train_examples=len(task["train"]), dev_examples=len(task["dev"]),
                  labels=task["labels"], settings=settings, majority_class=majority_floor(task),
                  models=[])
    encodings = {}   # by tokenizer: random init shares the model's, encoded once
    for label, directory, config, tokenizer, pretrained in runs:
        if id(tokenizer) not in encodings:
            encodings[id(tokenizer)] = encode(task, tokenizer, settings["max_seq_length"])
        encoded = encodings[id(tokenizer)]
        curves, train_losses, seconds = [], [], []
        for seed in range(1, args.seeds + 1):
            start = time.time()
            curve, losses = fine_tune(task, encoded, directory, config, pretrained, seed,
                                      settings, tokenizer.pad_token_id, label)
            curves.append(curve)
            train_losses.append(losses)
            seconds.append(time.time() - start)
        final = [c[-1] for c in curves]
        entry = dict(name=label, source=directory if pretrained else "random init of " +
                     directory, pretrained=pretrained, seconds=round(sum(seconds), 1),
                     seconds_per_seed=[round(s, 1) for s in seconds], curves=curves,
                     train_loss=train_losses)
        for metric in sorted(final[0]):
            values = [f[metric] for f in final]
            mean, std = summary(values)
            if metric == task["metric"]:
                entry.update(mean=mean, std=std, scores=values)
            else:
                entry[metric] = dict(mean=mean, std=std, scores=values)
        result["models"].append(entry)

    os.makedirs(out_dir, exist_ok=True)
    json_path = os.path.join(out_dir, task["name"] + ".json")
    png_path = os.path.join(out_dir, task["name"] + ".png")
    plot(result, png_path)
    fsutil.atomic_write_text(json_path, json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    print(results_table(result))
    print("results: %s, %s" % (json_path, png_path))
    return 0


if __name__ == "__main__":
    run_main(main, program=PROGRAM)
