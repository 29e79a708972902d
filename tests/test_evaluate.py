"""make evaluate: task loaders on small local data, one real fine-tuning run of a converted
tiny model against its random initialisation, and bad input as one line each.

wrapper/evaluate.py runs in .venv-modern (current transformers, datasets, seqeval); these
tests reach it through a subprocess, as `make evaluate` does.
"""
import glob
import hashlib
import json
import os
import re
import textwrap

import pytest

from conftest import FORTUNES_DEBIAN, PY, REPO, run
from convert_support import (MODEL_NAME, assert_one_line_error, exported_tiny, hf_dir,
                             need_modern)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    return exported_tiny(tmp_path_factory)


def modern(script, *args, check=True, env=None):
    return run([need_modern(), "-c", textwrap.dedent(script)] + list(args), check=check,
               cwd=REPO, env=env or {})


def evaluate(*args, check=True, env=None):
    return run([need_modern(), "-m", "wrapper.evaluate"] + list(args), check=check, cwd=REPO,
               env=env or {}, timeout=600)


def load_task_json(*args, env=None):
    """load_task(*args) in .venv-modern, as JSON."""
    out = modern("""
        import dataclasses, json, sys
        from wrapper import eval_tasks
        args = [a or None for a in sys.argv[1:]]
        print(json.dumps(dataclasses.asdict(eval_tasks.load_task(*args))))
        """, *args, env=env).stdout
    return json.loads(out)


def fortunes_of(path):
    with open(path, encoding="utf-8", errors="replace") as f:
        chunks = re.split(r"^%\s*$", f.read(), flags=re.M)
    return [t for t in (" ".join(c.split()) for c in chunks) if t]


def write_jsonl(path, rows):
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def real_classification_data(directory, per_class=30):
    """Two categories of Debian's fortunes-es as TASK_DATA JSONL (train, and every 4th as dev)."""
    os.makedirs(directory, exist_ok=True)
    train, dev = [], []
    for category in ("informatica", "refranes"):
        texts = fortunes_of(os.path.join(FORTUNES_DEBIAN, category + ".fortunes"))[:per_class]
        for i, text in enumerate(texts):
            (dev if i % 4 == 0 else train).append({"text": text, "label": category})
    write_jsonl(os.path.join(directory, "train.jsonl"), train)
    write_jsonl(os.path.join(directory, "dev.jsonl"), dev)
    return directory


CONLL_TRAIN = """-DOCSTART- O

El O
Ayuntamiento B-ORG
de I-ORG
Madrid I-ORG
recibió O
a O
Juan B-PER
Pérez I-PER
en O
Sevilla B-LOC
. O

La O
Comisión B-ORG
Europea I-ORG
visitó O
Lisboa B-LOC
. O
"""
CONLL_DEV = """Juan B-PER
vive O
en O
Madrid B-LOC
. O
"""


# ---- loaders ----------------------------------------------------------------------------

def test_fortunes_task_rule_and_fixed_split(debian_fortunes_dir):
    task = load_task_json("fortunes-es")
    by_category = {os.path.basename(p)[:-len(".fortunes")]: fortunes_of(p)
                   for p in glob.glob(os.path.join(debian_fortunes_dir, "*.fortunes"))}
    owners = {}
    for category, texts in by_category.items():
        for text in texts:
            owners.setdefault(text, set()).add(category)
    counts = {}
    for text, cats in owners.items():
        if len(cats) == 1:
            counts[next(iter(cats))] = counts.get(next(iter(cats)), 0) + 1
    kept = sorted(c for c, n in counts.items() if n >= 100)
    assert task["labels"] == kept and task["metric"] == "macro-f1"
    assert "schopenhauer" not in kept and "refranes" in kept and len(kept) >= 10
    assert "dropped" in task["note"] and "schopenhauer" in task["note"]
    for split, want_dev in (("train", False), ("dev", True)):
        for example in task[split]:
            digest = int(hashlib.sha256(example["text"].encode("utf-8")).hexdigest()[:8], 16)
            assert (digest % 10 == 0) == want_dev
            assert owners[example["text"]] == {example["label"]}
    total = len(task["train"]) + len(task["dev"])
    assert total == sum(counts[c] for c in kept)
    assert 0.07 < len(task["dev"]) / total < 0.13
    assert not {e["text"] for e in task["train"]} & {e["text"] for e in task["dev"]}


HUB_COPY = """
    import os, sys
    import datasets
    root = sys.argv[1]
    F, V, L, S = datasets.Features, datasets.Value, datasets.ClassLabel, datasets.Sequence

    def repo(name, config, features, splits):
        # The hub repositories' layout: README.md's configs name CONFIG/SPLIT-*.parquet.
        os.makedirs(os.path.join(root, name, config))
        yaml = ["---", "configs:", "- config_name: " + config, "  data_files:"]
        for split, rows in splits.items():
            datasets.Dataset.from_dict(rows, features=features).to_parquet(
                os.path.join(root, name, config, split + "-00000-of-00001.parquet"))
            yaml += ["  - split: " + split, "    path: %s/%s-*" % (config, split)]
        with open(os.path.join(root, name, "README.md"), "w") as f:
            f.write("\\n".join(yaml + ["---", ""]))

    nli = ["entailment", "neutral", "contradiction"]
    repo("facebook/xnli", "es",
         F({"premise": V("string"), "hypothesis": V("string"), "label": L(names=nli)}),
         {"train": {"premise": ["Hace frío.", "Llueve.", "Es lunes."],
                    "hypothesis": ["Hace calor.", "Está nublado.", "Es un día."],
                    "label": [2, 1, 0]},
          "validation": {"premise": ["Hace sol."], "hypothesis": ["Es de día."], "label": [0]}})
    repo("google-research-datasets/paws-x", "es",
         F({"id": V("int32"), "sentence1": V("string"), "sentence2": V("string"),
            "label": L(names=["0", "1"])}),
         {"train": {"id": [1, 2], "sentence1": ["Juan come.", "Ana lee."],
                    "sentence2": ["Come Juan.", "Ana duerme."], "label": [1, 0]},
          "validation": {"id": [3], "sentence1": ["Luis canta."], "sentence2": ["Canta Luis."],
                         "label": [1]}})
    ner = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC"]
    repo("eriktks/conll2002", "es",
         F({"id": V("string"), "tokens": S(V("string")), "pos_tags": S(L(names=["NC", "VMI"])),
            "ner_tags": S(L(names=ner))}),
         {"train": {"id": ["0"], "tokens": [["Juan", "vive", "en", "Madrid"]],
                    "pos_tags": [[0, 1, 0, 0]], "ner_tags": [[1, 0, 0, 5]]},
          "validation": {"id": ["1"], "tokens": [["Ana", "visita", "Lima"]],
                         "pos_tags": [[0, 1, 0]], "ner_tags": [[1, 0, 5]]}})
    """


@pytest.mark.slow
def test_hub_loaders_read_a_local_copy_in_the_hubs_layout(tmp_path):
    hub = str(tmp_path / "hub")
    modern(HUB_COPY, hub)
    xnli = load_task_json("xnli-es", "", hub)
    assert xnli["labels"] == ["entailment", "neutral", "contradiction"]
    assert xnli["train"][0] == {"text": "Hace frío.", "text_pair": "Hace calor.",
                                "label": "contradiction"}
    assert xnli["dev"] == [{"text": "Hace sol.", "text_pair": "Es de día.",
                            "label": "entailment"}]
    assert xnli["metric"] == "accuracy" and xnli["kind"] == "classification"
    paws = load_task_json("pawsx-es", "", hub)
    assert [e["label"] for e in paws["train"]] == ["1", "0"] and paws["metric"] == "accuracy"
    conll = load_task_json("conll2002-es", "", hub)
    assert conll["kind"] == "tagging" and conll["metric"] == "entity-f1"
    assert conll["train"] == [{"tokens": ["Juan", "vive", "en", "Madrid"],
                               "tags": ["B-PER", "O", "O", "B-LOC"]}]
    assert conll["dev"][0]["tags"] == ["B-PER", "O", "B-LOC"]


def test_task_data_jsonl_and_conll_loaders(tmp_path):
    pairs = tmp_path / "pairs"
    pairs.mkdir()
    write_jsonl(str(pairs / "train.jsonl"), [
        {"text": "Hace frío.", "text_pair": "Hace calor.", "label": "no"},
        {"text": "Llueve.", "text_pair": "Cae agua.", "label": "sí"}])
    write_jsonl(str(pairs / "dev.jsonl"), [{"text": "Es lunes.", "text_pair": "Hoy es lunes.",
                                             "label": "sí"}])
    task = load_task_json("mi-tarea", str(pairs))
    assert task["labels"] == ["no", "sí"] and task["metric"] == "accuracy"
    assert task["dev"][0]["text_pair"] == "Hoy es lunes." and task["dev"][0]["label"] == "sí"
    tags = tmp_path / "tags"
    tags.mkdir()
    (tags / "train.conll").write_text(CONLL_TRAIN, encoding="utf-8")
    (tags / "dev.conll").write_text(CONLL_DEV, encoding="utf-8")
    task = load_task_json("ner", str(tags))
    assert task["kind"] == "tagging" and task["metric"] == "entity-f1"
    assert [len(e["tokens"]) for e in task["train"]] == [11, 6]
    assert task["train"][0]["tags"][1:4] == ["B-ORG", "I-ORG", "I-ORG"]
    assert set(task["labels"]) == {"O", "B-ORG", "I-ORG", "B-PER", "I-PER", "B-LOC"}


# ---- fine-tuning ------------------------------------------------------------------------

@pytest.mark.slow
def test_fine_tunes_converted_model_against_random_init(tmp_path, tiny_run):
    data = real_classification_data(str(tmp_path / "task"))
    home = tmp_path / "home"
    home.mkdir()
    proc = evaluate("--data-dir", tiny_run, "--model-name", MODEL_NAME, "--task", "two-files",
                    "--task-data", data, "--seeds", "2", "--epochs", "2",
                    "--max-seq-length", "32", "--batch-size", "8", "--learning-rate", "5e-4",
                    env={"HOME": str(home), "MPLCONFIGDIR": ""})
    out_dir = os.path.join(tiny_run, "models", MODEL_NAME, "evaluation")
    with open(os.path.join(out_dir, "two-files.json")) as f:
        result = json.load(f)
    assert os.path.getsize(os.path.join(out_dir, "two-files.png")) > 1000
    # Only the pair is left (the finished seeds kept meanwhile are in it now), and
    # matplotlib's cache went to a temporary directory, not under $HOME.
    assert sorted(os.listdir(out_dir)) == ["two-files.json", "two-files.png"]
    assert not [p for p in glob.glob(str(home / "**"), recursive=True) if "matplotlib" in p]
    assert result["device"] == "cpu" and result["run"]
    # Two seeds: the difference, its interval and p are given, the verdict is withheld.
    (comparison,) = result["comparisons"]
    model, base = result["models"]
    assert comparison["baseline"] == "random init" and comparison["seeds"] == [2, 2]
    assert comparison["difference"] == pytest.approx(model["mean"] - base["mean"])
    if comparison["p_value"] is not None:
        low, high = comparison["ci95"]
        assert low <= comparison["difference"] <= high and 0 <= comparison["p_value"] <= 1
    assert comparison["verdict"] == "no verdict possible with 2 seeds (3 or more needed)"
    assert ("verdict: %s against random init: no verdict possible with 2 seeds (3 or more "
            "needed)" % MODEL_NAME) in proc.stdout
    assert re.search(r"%s +random init +[+-]\d\.\d{4} " % MODEL_NAME, proc.stdout), proc.stdout
    assert result["task"] == "two-files" and result["metric"] == "accuracy"
    assert [m["name"] for m in result["models"]] == [MODEL_NAME, "random init (same config)"]
    for m in result["models"]:
        assert len(m["scores"]) == 2 and len(m["curves"]) == 2
        assert all(len(curve) == 2 for curve in m["curves"])
        assert all(0.0 <= s <= 1.0 for s in m["scores"])
        assert m["scores"] == [curve[-1]["accuracy"] for curve in m["curves"]]
        assert abs(m["mean"] - sum(m["scores"]) / 2) < 1e-9 and m["seconds"] > 0
    # The two seeds are two different runs (head initialisation and batch order), and the
    # pretrained weights are not the random ones.
    losses = [m["train_loss"] for m in result["models"]]
    assert losses[0][0] != losses[0][1] and losses[0] != losses[1]
    assert all(len(l) == 2 for l in losses[0])
    assert result["majority_class"]["accuracy"] == pytest.approx(0.5)   # 8 + 8 dev examples
    header = [l for l in proc.stdout.splitlines() if l.startswith("task ")]
    assert header and "mean ± std" in header[0] and "time" in header[0]
    assert re.search(r"two-files +accuracy +%s +\d\.\d{4} ± \d\.\d{4} +2 +\d+ s +cpu" %
                     MODEL_NAME, proc.stdout), proc.stdout
    assert "majority class (floor)" in proc.stdout
    assert "epoch 2/2" in proc.stderr   # the per-epoch progress bars and dev lines


@pytest.mark.slow
def test_fine_tunes_a_tagging_task_with_entity_f1(tmp_path, tiny_run):
    tags = tmp_path / "tags"
    tags.mkdir()
    (tags / "train.conll").write_text(CONLL_TRAIN, encoding="utf-8")
    (tags / "dev.conll").write_text(CONLL_DEV, encoding="utf-8")
    proc = evaluate("--data-dir", tiny_run, "--model-name", MODEL_NAME, "--task", "ner",
                    "--task-data", str(tags), "--seeds", "1", "--epochs", "1", "--baseline")
    with open(os.path.join(tiny_run, "models", MODEL_NAME, "evaluation", "ner.json")) as f:
        result = json.load(f)
    assert result["metric"] == "entity-f1" and len(result["models"]) == 1
    assert 0.0 <= result["models"][0]["mean"] <= 1.0
    assert "entity F1" in proc.stdout


# ---- bad input --------------------------------------------------------------------------

def test_unknown_task(tiny_run):
    assert_one_line_error(evaluate("--data-dir", tiny_run, "--model-name", MODEL_NAME,
                                   "--task", "sst2", check=False),
                          "unknown TASK 'sst2'", "fortunes-es", "TASK_DATA=")


def test_task_data_missing_files_and_unknown_dev_label(tmp_path, tiny_run):
    data = real_classification_data(str(tmp_path / "task"), per_class=8)
    common = ["--data-dir", tiny_run, "--model-name", MODEL_NAME, "--task", "t",
              "--task-data", data]
    os.rename(os.path.join(data, "dev.jsonl"), os.path.join(data, "held.jsonl"))
    assert_one_line_error(evaluate(*common, check=False), "no dev.jsonl", "add the dev set")
    os.rename(os.path.join(data, "held.jsonl"), os.path.join(data, "dev.jsonl"))
    with open(os.path.join(data, "dev.jsonl"), "a", encoding="utf-8") as f:
        f.write(json.dumps({"text": "Más vale tarde que nunca.", "label": "refran"}) + "\n")
    assert_one_line_error(evaluate(*common, check=False), "dev.jsonl line 5",
                          "'refran' does not occur in train.jsonl")
    empty = str(tmp_path / "empty")
    os.mkdir(empty)
    assert_one_line_error(evaluate(*common[:-1], empty, check=False),
                          "holds no train.jsonl or train.conll")


def test_model_dir_without_converted_model(tmp_path, tiny_run):
    assert_one_line_error(evaluate("--data-dir", str(tmp_path), "--model-name", "none",
                                   "--task", "fortunes-es", check=False),
                          "holds no converted model", "make convert")
    # A baseline directory without a model is refused before the first model trains.
    assert_one_line_error(evaluate("--data-dir", tiny_run, "--model-name", MODEL_NAME,
                                   "--task", "fortunes-es", "--baseline", str(tmp_path),
                                   check=False),
                          "baseline %s holds no converted model" % tmp_path)


@pytest.mark.slow
def test_baseline_whose_tokenizer_does_not_match_its_model(tmp_path, tiny_run):
    mismatched = str(tmp_path / "mismatched")
    modern("""
        import shutil, sys
        from transformers import ElectraConfig, ElectraForPreTraining
        source, target = sys.argv[1:]
        config = ElectraConfig.from_pretrained(source)
        config.vocab_size = 1000          # the saved vocab.txt has 8000 tokens
        ElectraForPreTraining(config).save_pretrained(target)
        for name in ("vocab.txt", "tokenizer_config.json", "special_tokens_map.json"):
            shutil.copy(source + "/" + name, target)
        """, hf_dir(tiny_run, "discriminator"), mismatched)
    assert_one_line_error(evaluate("--data-dir", tiny_run, "--model-name", MODEL_NAME,
                                   "--task", "fortunes-es", "--baseline", "random", mismatched,
                                   check=False),
                          "its tokenizer has 8000 tokens but the model's vocab_size is 1000")


@pytest.mark.slow
def test_offline_hub_ids_fail_fast_in_one_line(tiny_run):
    # No network here (DEVELOPERS.md); a host that cannot resolve stands in for it anywhere.
    offline = {"HF_ENDPOINT": "https://hub.invalid", "HF_HOME": "/nonexistent/hf-home"}
    common = ["--data-dir", tiny_run, "--model-name", MODEL_NAME]
    assert_one_line_error(evaluate(*common, "--task", "xnli-es", check=False, env=offline),
                          "TASK=xnli-es", "facebook/xnli", "TASK_DATA=dir")
    assert_one_line_error(evaluate(*common, "--task", "fortunes-es", "--baseline",
                                   "skimai/electra-small-spanish", check=False, env=offline),
                          "baseline skimai/electra-small-spanish", "cannot fetch",
                          "give its directory")


# ---- significance -----------------------------------------------------------------------

def test_welch_against_a_hand_computed_case_and_scipy():
    out = modern("""
        import json
        from scipy import stats
        from wrapper import evaluate
        cases = [([0.20, 0.22, 0.24], [0.10, 0.12, 0.14]),
                 ([0.61, 0.58, 0.66, 0.60, 0.63], [0.59, 0.62, 0.57]),
                 ([0.3, 0.3, 0.3], [0.5, 0.1, 0.2, 0.4])]
        found = []
        for a, b in cases:
            test = evaluate.welch(a, b)
            reference = stats.ttest_ind(a, b, equal_var=False)
            found.append(dict(test, scipy_p=float(reference.pvalue)))
        print(json.dumps(found))
        """).stdout
    hand, *others = json.loads(out)
    # Means 0.22 and 0.12, variances 0.0004 each: se = sqrt(2 * 0.0004 / 3) = 0.016330,
    # t = 6.1237 with df = 4 (Welch-Satterthwaite, equal variances and sizes: n1 + n2 - 2);
    # t(0.975, 4) = 2.7764: the interval is 0.10 ± 0.04534; p = 0.00360.
    assert hand["difference"] == pytest.approx(0.10)
    assert hand["df"] == pytest.approx(4.0)
    assert hand["ci95"] == pytest.approx([0.10 - 0.045340, 0.10 + 0.045340], abs=2e-6)
    assert hand["p_value"] == pytest.approx(0.003604, abs=2e-6)
    for case in [hand] + others:
        assert case["p_value"] == pytest.approx(case["scipy_p"], rel=1e-9)


def test_verdict_words_and_seed_counts():
    out = modern("""
        import json
        from wrapper import evaluate
        def say(a, b, name="random init"):
            return evaluate.verdict(evaluate.welch(a, b), name, min(len(a), len(b)))
        print(json.dumps([
            say([0.20, 0.22, 0.24], [0.10, 0.12, 0.14]),
            say([0.10, 0.12, 0.14], [0.20, 0.22, 0.24], "skimai/electra-small-spanish"),
            say([0.20, 0.25, 0.15], [0.19, 0.22, 0.18]),
            say([0.196, 0.174], [0.181, 0.160]),
            say([0.5], [0.4, 0.3, 0.2]),
            say([0.5, 0.5, 0.5], [0.5, 0.5, 0.5]),
            say([0.6, 0.6, 0.6], [0.5, 0.5, 0.5]),
            say([0.9, 0.91, 0.92, 0.93], [0.1, 0.11, 0.12, 0.13]),
            evaluate.welch([0.5], [0.4, 0.3]),
            evaluate.welch([0.5, 0.5, 0.5], [0.5, 0.5, 0.5]),
            evaluate.format_p(0.0496), evaluate.format_p(0.31)]))
        """).stdout
    (better, worse, same, two, one, equal, constant, far, single, zero, near_alpha,
     plain) = json.loads(out)
    assert better == "better than random init (p = 0.0036)"
    assert worse == "worse than skimai/electra-small-spanish (p = 0.0036)"
    assert re.match(r"^no significant difference \(p = 0\.\d+\)$", same), same
    assert two == "no verdict possible with 2 seeds (3 or more needed)"
    assert one == "no verdict possible with 1 seed (3 or more needed)"
    # Identical scores on both sides: nothing to tell them apart; constant but different
    # scores: the difference is certain.
    assert equal == "no significant difference (p = 1)"
    assert constant == "better than random init (p < 0.001)"
    assert far == "better than random init (p < 0.001)"
    assert single == {"difference": pytest.approx(0.15), "ci95": None, "p_value": None,
                      "df": None}
    assert zero["ci95"] == [0.0, 0.0] and zero["p_value"] == 1.0
    assert near_alpha == "0.0496" and plain == "0.31"


# ---- hostile input ----------------------------------------------------------------------

@pytest.mark.parametrize("flags,words", [
    (["--batch-size", "0"], ["--batch-size must be at least 1 (got 0)"]),
    (["--epochs", "0"], ["--epochs must be at least 1 (got 0)"]),
    (["--learning-rate", "nan"], ["--learning-rate must be a positive number (got nan)"]),
    (["--max-seq-length", "-5"], ["--max-seq-length must be at least 8 (got -5)"]),
    (["--max-seq-length", "100000"], ["--max-seq-length 100000 is more than",
                                      "512 positions (max_position_embeddings)"]),
    (["--threads", "-3"], ["--threads must be 0 (torch's default) or more (got -3)"]),
    (["--seeds", "abc"], ["SEEDS must be a positive integer, got 'abc'"]),
    (["--epochs", "two"], ["argument --epochs: invalid int value: 'two' (see --help)"]),
])
def test_bad_numbers_are_one_line_before_any_training(tmp_path, tiny_run, flags, words):
    data = real_classification_data(str(tmp_path / "task"), per_class=8)
    proc = evaluate("--data-dir", tiny_run, "--model-name", MODEL_NAME, "--task", "t",
                    "--task-data", data, *flags, check=False)
    assert_one_line_error(proc, "evaluate: error:", *words)
    assert "epoch 1/" not in proc.stderr


def model_copy(tiny_run, target, drop=(), vocab_lines=None, truncate=None):
    """A copy of the tiny discriminator without the files `drop`, with its vocab cut to
    `vocab_lines` lines, or its model.safetensors cut to `truncate` bytes."""
    import shutil
    shutil.copytree(hf_dir(tiny_run, "discriminator"), target)
    for name in drop:
        os.remove(os.path.join(target, name))
    if vocab_lines:
        with open(os.path.join(target, "vocab.txt"), encoding="utf-8") as f:
            lines = f.readlines()[:vocab_lines]
        with open(os.path.join(target, "vocab.txt"), "w", encoding="utf-8") as f:
            f.writelines(lines)
    if truncate:
        with open(os.path.join(target, "model.safetensors"), "r+b") as f:
            f.truncate(truncate)
    return target


@pytest.mark.parametrize("case,words", [
    (dict(drop=["vocab.txt"]), ["has no vocab.txt", "its tokenizer is missing"]),
    (dict(vocab_lines=5), ["its tokenizer has 5 tokens but the model's vocab_size is 8000"]),
    (dict(drop=["model.safetensors", "pytorch_model.bin"]),
     ["has no weights (no model.safetensors or pytorch_model.bin)"]),
    (dict(drop=["pytorch_model.bin"], truncate=100000),
     ["cannot load its weights", "damaged or incomplete"]),
])
@pytest.mark.slow
def test_model_without_its_tokenizer_or_weights_is_refused(tmp_path, tiny_run, case, words):
    # A 5-token tokenizer used to make every word [UNK] and print a score all the same.
    data = real_classification_data(str(tmp_path / "task"), per_class=8)
    model = model_copy(tiny_run, str(tmp_path / "model"), **case)
    proc = evaluate("--data-dir", str(tmp_path / "data"), "--model-name", MODEL_NAME,
                    "--task", "t", "--task-data", data, "--model", model, check=False)
    assert_one_line_error(proc, "model %s" % model, *words)
    assert not os.path.exists(str(tmp_path / "data"))


@pytest.mark.parametrize("name,content,words", [
    ("train.jsonl", b'{"text": "Hola", "label": "a"}\n{"text": "coraz\xf3n", "label": "b"}\n',
     ["train.jsonl line 2 is not UTF-8 (byte 0xf3)", "iconv -f latin1 -t utf-8"]),
    ("train.jsonl", b'{"text": "Hola", "text_pair": 7, "label": "a"}\n',
     ['train.jsonl line 1: "text_pair" is 7, not a string']),
    ("train.jsonl", b'{"text": "Hola", "label": "a"}\n{"text": "Adi\xc3\xb3s", "label": null}\n',
     ['train.jsonl line 2: "label" is null; a label is a string (or an integer)']),
    ("train.jsonl", b'{"text": "Hola", "label": {"a": 1}}\n',
     ['train.jsonl line 1: "label" is {"a": 1}']),
    ("train.conll", b"Juan B-PER\nvive O\nen O\nMadrid LOC\n",
     ["train.conll line 4: tag 'LOC' is not a BIO tag", "O, B-TYPE or I-TYPE"]),
    ("train.conll", b"Juan B-PER\nen O\nSevilla B-LOC\n\nEl O\nd\xeda O\n",
     ["train.conll line 6 is not UTF-8 (byte 0xed)"]),
])
def test_task_data_that_would_be_misread_is_refused_naming_file_and_line(tmp_path, tiny_run,
                                                                        name, content, words):
    data = tmp_path / "task"
    data.mkdir()
    (data / name).write_bytes(content)
    (data / name.replace("train", "dev")).write_bytes(content)
    proc = evaluate("--data-dir", tiny_run, "--model-name", MODEL_NAME, "--task", "t",
                    "--task-data", str(data), check=False)
    assert_one_line_error(proc, str(data / name), *words)


def test_integer_labels_are_names(tmp_path):
    data = tmp_path / "task"
    data.mkdir()
    write_jsonl(str(data / "train.jsonl"), [{"text": "Hola", "label": 1},
                                            {"text": "Adiós", "label": 0}])
    write_jsonl(str(data / "dev.jsonl"), [{"text": "Buenas", "label": 1}])
    task = load_task_json("t", str(data))
    assert task["labels"] == ["0", "1"] and task["dev"][0]["label"] == "1"


LEAN = {"datasets": "raise ImportError('No module named datasets')\n",
        "seqeval": "raise ImportError('No module named seqeval')\n"}


def lean_image(tmp_path):
    """PYTHONPATH that makes `datasets` and `seqeval` absent, as in the GPU image."""
    stubs = tmp_path / "lean"
    stubs.mkdir(exist_ok=True)
    for name, text in LEAN.items():
        (stubs / (name + ".py")).write_text(text)
    return {"PYTHONPATH": str(stubs)}


def test_lean_image_without_datasets_or_seqeval_names_the_package(tmp_path, tiny_run):
    tags = tmp_path / "tags"
    tags.mkdir()
    (tags / "train.conll").write_text(CONLL_TRAIN, encoding="utf-8")
    (tags / "dev.conll").write_text(CONLL_DEV, encoding="utf-8")
    common = ["--data-dir", tiny_run, "--model-name", MODEL_NAME]
    assert_one_line_error(evaluate(*common, "--task", "ner", "--task-data", str(tags),
                                   check=False, env=lean_image(tmp_path)),
                          "TASK=ner is scored (entity F1) through the Python package seqeval, "
                          "which is not installed here; install it (pip install seqeval)")
    assert_one_line_error(evaluate(*common, "--task", "xnli-es", check=False,
                                   env=lean_image(tmp_path)),
                          "TASK=xnli-es reads the Hugging Face hub through the Python package "
                          "datasets", "TASK_DATA=dir")


# ---- interruptions, concurrent runs, where results go -----------------------------------

def dead_pid():
    import subprocess
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


@pytest.mark.slow
def test_ctrl_c_keeps_finished_seeds_and_stale_partials_are_settled(tmp_path, tiny_run):
    import signal
    import subprocess
    import time
    data = real_classification_data(str(tmp_path / "task"), per_class=8)
    out_dir = os.path.join(tiny_run, "models", MODEL_NAME, "evaluation")
    seeds_dir = os.path.join(out_dir, "ctrl-c.seeds")
    os.makedirs(seeds_dir, exist_ok=True)
    # What killed runs left: a run killed between its two renames (its PNG in place, its
    # complete JSON still a partial), and partial files of runs killed earlier.
    dead = dead_pid()
    with open(os.path.join(out_dir, "ctrl-c.png"), "w") as f:
        f.write("the PNG of run X")
    with open(os.path.join(out_dir, "ctrl-c.json"), "w") as f:
        f.write("the JSON of run W")
    with open(os.path.join(out_dir, "ctrl-c.json.partial-%d" % dead), "w") as f:
        f.write("the JSON of run X")
    stale = [os.path.join(out_dir, "other.png.partial-%d" % dead),
             os.path.join(out_dir, "other.json.partial-%d" % (dead + 1000000)),
             os.path.join(seeds_dir, "m-seed1.json.partial-%d" % dead)]
    for path in stale:
        open(path, "w").close()
    args = [need_modern(), "-m", "wrapper.evaluate", "--data-dir", tiny_run, "--model-name",
            MODEL_NAME, "--task", "ctrl-c", "--task-data", data, "--seeds", "3", "--epochs",
            "1", "--max-seq-length", "32", "--batch-size", "4", "--baseline"]
    proc = subprocess.Popen(args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            universal_newlines=True)
    deadline = time.time() + 120
    while not [n for n in os.listdir(seeds_dir) if n.endswith("seed1.json")]:
        assert proc.poll() is None and time.time() < deadline, proc.communicate()
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr[-2000:]
    assert "Traceback" not in stderr
    assert stderr.strip().splitlines()[-1] == (
        "evaluate: error: interrupted; 1 finished seed(s) are kept in %s: run the "
        "same command again to go on from them" % seeds_dir)
    # The killed run's pair was completed; every other leftover is gone.
    with open(os.path.join(out_dir, "ctrl-c.json")) as f:
        assert f.read() == "the JSON of run X"
    assert "completed the results of a run killed while writing them" in stdout
    assert not [p for p in stale if os.path.exists(p)]
    assert not glob.glob(os.path.join(out_dir, "ctrl-c.json.partial-*"))

    # The same settings: seed 1 is not trained again.
    again = evaluate(*args[3:])
    assert "%s seed 1: finished in an earlier run with the same settings" % MODEL_NAME \
        in again.stdout
    assert "seed 1 epoch" not in again.stderr and "seed 2 epoch 1/1" in again.stderr
    with open(os.path.join(out_dir, "ctrl-c.json")) as f:
        result = json.load(f)
    assert len(result["models"][0]["scores"]) == 3 and not os.path.exists(seeds_dir)


@pytest.mark.slow
def test_finished_seeds_of_other_settings_are_not_reused(tmp_path, tiny_run):
    data = real_classification_data(str(tmp_path / "task"), per_class=8)
    common = ["--data-dir", tiny_run, "--model-name", MODEL_NAME, "--task", "other",
              "--task-data", data, "--seeds", "1", "--epochs", "1", "--max-seq-length", "32",
              "--baseline"]
    keys = modern("""
        import json, sys
        from wrapper import eval_tasks, evaluate
        task = eval_tasks.load_task("other", sys.argv[1])
        settings = dict(epochs=1, batch_size=32, learning_rate=1e-4, max_seq_length=32)
        print(json.dumps([evaluate.seed_key(task, s, sys.argv[2], True) for s in (
            settings, dict(settings, learning_rate=2e-4))]))
        """, data, hf_dir(tiny_run, "discriminator")).stdout
    same, other = json.loads(keys)
    assert same != other
    out_dir = os.path.join(tiny_run, "models", MODEL_NAME, "evaluation")
    kept = modern("""
        import sys
        from wrapper import evaluate
        print(evaluate.seed_file(sys.argv[1] + "/other.seeds", sys.argv[2], 1))
        """, out_dir, MODEL_NAME).stdout.strip()
    os.makedirs(os.path.dirname(kept), exist_ok=True)
    with open(kept, "w") as f:   # a seed finished with the learning rate 2e-4
        json.dump({"key": other, "curve": [{"accuracy": 1.0, "macro-f1": 1.0}],
                   "train_loss": [0.0], "seconds": 1.0, "device": "cpu"}, f)
    proc = evaluate(*common, "--learning-rate", "1e-4")
    assert "finished in an earlier run" not in proc.stdout
    assert "seed 1 epoch 1/1" in proc.stderr


@pytest.mark.slow
def test_read_only_or_full_data_dir_is_said_before_any_training(tmp_path, tiny_run):
    from test_hostile_input import small_filesystem
    from test_pipeline import read_only
    data = real_classification_data(str(tmp_path / "task"), per_class=8)
    common = ["--task", "t", "--task-data", data, "--epochs", "1", "--seeds", "1",
              "--model", hf_dir(tiny_run, "discriminator")]
    frozen = tmp_path / "frozen"
    frozen.mkdir()
    proc = run(read_only(frozen, [need_modern(), "-m", "wrapper.evaluate", "--data-dir",
                                  str(frozen), "--model-name", MODEL_NAME] + common),
               check=False, cwd=REPO, timeout=300)
    assert_one_line_error(proc, "cannot write the evaluation results in %s" % frozen,
                          "Read-only file system")
    assert "epoch 1/1" not in proc.stderr
    with small_filesystem(tmp_path / "full", "64k") as full:
        fd = os.open(os.path.join(full, "filler"), os.O_WRONLY | os.O_CREAT)
        with pytest.raises(OSError):
            while True:
                os.write(fd, b"x" * 4096)
        os.close(fd)
        proc = evaluate("--data-dir", full, "--model-name", MODEL_NAME, *common, check=False)
        assert_one_line_error(proc, "no space left on the device writing the evaluation "
                                    "results in %s/evaluation/" % full)
        assert "epoch 1/1" not in proc.stderr


def error_after_training(proc, *words):
    """A run that failed after its progress lines: its last line is the one error line."""
    assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    errors = [l for l in proc.stderr.splitlines() if "error" in l]
    assert len(errors) == 1 and proc.stderr.strip().splitlines()[-1] == errors[0], errors
    assert errors[0].startswith("evaluate: error: ")
    for word in words:
        assert word in errors[0], errors[0]


@pytest.mark.slow
def test_disk_full_at_the_final_write_keeps_the_seeds_for_the_rerun(tmp_path, tiny_run):
    from test_hostile_input import small_filesystem
    data = real_classification_data(str(tmp_path / "task"), per_class=8)
    args = ["--model-name", MODEL_NAME, "--task", "t", "--task-data", data, "--epochs", "1",
            "--seeds", "2", "--max-seq-length", "32", "--model",
            hf_dir(tiny_run, "discriminator")]
    with small_filesystem(tmp_path / "small", "256k") as small:
        # Room for the write probe and the seeds' records, not for the PNG beside them.
        with open(os.path.join(small, "filler"), "wb") as f:
            f.write(b"x" * (256 - 40) * 1024)
        proc = evaluate("--data-dir", small, *args, check=False)
        error_after_training(proc, "no space left on the device writing the evaluation "
                                    "results in %s/evaluation/" % small)
        assert "random init (same config) seed 2 epoch 1/1" in proc.stderr
        out_dir = glob.glob(os.path.join(small, "evaluation", "*"))[0]
        assert not glob.glob(os.path.join(out_dir, "**", "*partial*"), recursive=True)
        assert not glob.glob(os.path.join(out_dir, "t.json"))
        os.remove(os.path.join(small, "filler"))
        again = evaluate("--data-dir", small, *args)
        assert again.stdout.count("finished in an earlier run with the same settings") == 4
        assert "epoch 1/1" not in again.stderr
        assert sorted(os.listdir(out_dir)) == ["t.json", "t.png"]


@pytest.mark.slow
def test_second_evaluation_of_the_same_model_says_who_holds_it(tmp_path, tiny_run):
    import subprocess
    import time
    from wrapper import locking
    data = real_classification_data(str(tmp_path / "task"), per_class=8)
    out_dir = os.path.join(tiny_run, "models", MODEL_NAME, "evaluation")
    lock_file = locking.evaluation_lock_file(tiny_run, out_dir)
    # Another evaluation holding the lock (not an ancestor of the second one: a nested stage
    # would go on under its parent's lock).
    holder = subprocess.Popen([PY, os.path.join(REPO, "tests", "lock_holder.py"), "--lock",
                               lock_file, "--label", "make evaluate", "--", "sleep", "60"],
                              cwd=REPO)
    try:
        deadline = time.time() + 30
        while "pid=%d" % holder.pid not in (open(lock_file).read()
                                            if os.path.exists(lock_file) else ""):
            assert time.time() < deadline
            time.sleep(0.05)
        proc = evaluate("--data-dir", tiny_run, "--model-name", MODEL_NAME, "--task", "t",
                        "--task-data", data, check=False)
    finally:
        holder.kill()
        holder.wait()
    assert_one_line_error(proc, "evaluation directory %s is in use by PID %d (make evaluate)"
                          % (out_dir, holder.pid), "kill %d" % holder.pid)
    assert "epoch" not in proc.stderr


@pytest.mark.slow
def test_external_model_in_a_fresh_data_dir_and_a_baseline_path_with_a_space(tmp_path,
                                                                           tiny_run):
    # Through the pipeline as make runs it (BASELINE arrives as one argument), in an image
    # without datasets or seqeval.
    data = real_classification_data(str(tmp_path / "task"), per_class=8)
    spaced = tmp_path / "mis modelos" / "base line"
    spaced.parent.mkdir()
    os.symlink(hf_dir(tiny_run, "discriminator"), str(spaced))
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    env = dict(lean_image(tmp_path), DATA_DIR=str(fresh), MODEL_NAME="electra-spanish",
               TASK="t", TASK_DATA=data, SEEDS="1", MODEL=hf_dir(tiny_run, "discriminator"),
               BASELINE="random %s" % spaced)
    proc = run([need_modern(), "-m", "wrapper.pipeline", "evaluate"], cwd=REPO, env=env,
               timeout=600)
    (out_dir,) = glob.glob(str(fresh / "evaluation" / "*"))
    assert os.path.basename(out_dir).startswith("tiny_hf_discriminator-")
    with open(os.path.join(out_dir, "t.json")) as f:
        result = json.load(f)
    assert [m["name"] for m in result["models"]] == [
        hf_dir(tiny_run, "discriminator"), "random init (same config)", str(spaced)]
    assert "verdict: %s against %s: no verdict possible with 1 seed" % (
        hf_dir(tiny_run, "discriminator"), spaced) in proc.stdout
    # Nothing under models/: `make pretrain` would take MODEL_NAME's directory for one it
    # did not start.
    assert sorted(os.listdir(str(fresh))) == [".locks", "evaluation"]
