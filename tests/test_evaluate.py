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

from conftest import FORTUNES_DEBIAN, REPO, run
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
        import json, sys
        from wrapper import eval_tasks
        args = [a or None for a in sys.argv[1:]]
        print(json.dumps(eval_tasks.load_task(*args)))
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

def test_fine_tunes_converted_model_against_random_init(tmp_path, tiny_run):
    data = real_classification_data(str(tmp_path / "task"))
    proc = evaluate("--data-dir", tiny_run, "--model-name", MODEL_NAME, "--task", "two-files",
                    "--task-data", data, "--seeds", "2", "--epochs", "2",
                    "--max-seq-length", "32", "--batch-size", "8", "--learning-rate", "5e-4")
    out_dir = os.path.join(tiny_run, "models", MODEL_NAME, "evaluation")
    with open(os.path.join(out_dir, "two-files.json")) as f:
        result = json.load(f)
    assert os.path.getsize(os.path.join(out_dir, "two-files.png")) > 1000
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
    assert re.search(r"two-files +accuracy +%s +\d\.\d{4} ± \d\.\d{4} +2 +\d+ s" % MODEL_NAME,
                     proc.stdout), proc.stdout
    assert "majority class (floor)" in proc.stdout
    assert "epoch 2/2" in proc.stderr   # the per-epoch progress bars and dev lines


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
