"""The TF side of verify: our graph's logits on real Spanish, saved for the comparers.

    python -m wrapper.tf_logits --data-dir D --model-name N [--output PATH]

Run with .venv's Python (TF 1.15). It tokenizes fixed Spanish sentences (plus the first
lines of D/corpus) with the builder's FullTokenizer, runs third_party/electra's inference
graph (pretraining_model.run_inference_logits) restored from the latest checkpoint, and
writes D/.cache/verify/N/tf-logits.npz (scratch, never in the model directory): the token
ids, the logits of each network, the sizes the graph was actually built with (variable
shapes, attention heads) and the Hugging Face configs the export derives.
`python -m wrapper.verify` then compares the converted models with it, once in each
environment.
"""
import glob
import json
import os
import zipfile
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from wrapper import checkpoint_layout, fsutil, hf_tokenizer, paths, tf_checkpoint
from wrapper.cli import UserError, model_parser, run_main
from wrapper.electra import tokenization

MAX_TOKENS = 128
CORPUS_LINES = 4

# Real sentences with the accents and punctuation a cased Spanish vocab must keep apart.
SENTENCES = [
    "Los pájaros están cantando",
    "Los pájaros están hablando",
    "¿Dónde está el niño? Salió corriendo hacia la estación.",
    "Más vale pájaro en mano que ciento volando.",
    "El camión llegó tarde porque llovía muchísimo en Cádiz.",
    ("Instale el paquete con «apt-get install» y reinicie el ordenador.",
     "Después compruebe que el sistema arrancó sin errores."),
]


def corpus_lines(data_dir: str, count: int = CORPUS_LINES) -> List[str]:
    """The first non-empty lines of the run's corpus (real text the model has seen)."""
    found = []
    for path in sorted(glob.glob(os.path.join(paths.corpus_dir(data_dir), "*"))):
        if not os.path.isfile(path) or path.endswith(".gz"):
            continue
        with open(path, encoding="utf-8", errors="ignore") as f:
            for line in f:
                line = line.strip()
                if line:
                    found.append(line)
                if len(found) >= count:
                    return found
    return found


def builder_rows(tokenizer: tokenization.FullTokenizer,
                 texts: Sequence[Union[str, Tuple[str, str]]], max_tokens: int = MAX_TOKENS
                 ) -> Tuple[List[Union[str, Tuple[str, str]]],
                            List[Tuple[List[int], List[int]]]]:
    """(texts, rows of (ids, segment ids)) as the builder encodes them: [CLS] A [SEP]
    (B [SEP]); texts longer than max_tokens are left out rather than truncated."""
    vocab = tokenizer.vocab
    kept, rows = [], []
    for text in texts:
        first, second = (text, None) if isinstance(text, str) else text
        a = tokenizer.convert_tokens_to_ids(tokenizer.tokenize(first))
        b = tokenizer.convert_tokens_to_ids(tokenizer.tokenize(second)) if second else []
        ids = [vocab["[CLS]"]] + a + [vocab["[SEP]"]]
        segments = [0] * len(ids)
        if b:
            ids += b + [vocab["[SEP]"]]
            segments += [1] * (len(b) + 1)
        if len(ids) <= max_tokens:
            kept.append(text)
            rows.append((ids, segments))
    return kept, rows


def pad_rows(rows: Sequence[Tuple[List[int], List[int]]]
             ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Right-padded int32 (input_ids, input_mask, segment_ids)."""
    width = max(len(ids) for ids, _ in rows)
    input_ids = np.zeros((len(rows), width), np.int32)
    input_mask = np.zeros((len(rows), width), np.int32)
    segment_ids = np.zeros((len(rows), width), np.int32)
    for i, (ids, segments) in enumerate(rows):
        input_ids[i, :len(ids)] = ids
        input_mask[i, :len(ids)] = 1
        segment_ids[i, :len(ids)] = segments
    return input_ids, input_mask, segment_ids


def built_sizes(built: Mapping[str, Any], networks: Sequence[str]) -> Dict[str, Dict[str, int]]:
    """{network: sizes} of the graph as built: shapes, and heads from its attention."""
    shapes = built["variable_shapes"]
    sizes = {}
    for network, scope in checkpoint_layout.network_scopes(list(shapes)).items():
        if network not in networks:
            continue
        found = dict(checkpoint_layout.checkpoint_sizes(shapes, scope))
        found["num_attention_heads"] = built["attention_heads"][scope.rstrip("/")]
        sizes[network] = found
    return sizes


def compute(data_dir: str, model_name: str) -> Dict[str, np.ndarray]:
    """Inputs, TF logits and built sizes of a run's latest checkpoint."""
    # CPU only, on purpose: TF's C++ log would report the absent GPU as an error line.
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    prefix = checkpoint_layout.latest_checkpoint(data_dir, model_name)
    tf_checkpoint.check_whole(prefix)    # TF's restore would stop on a damaged file with a traceback
    shapes = tf_checkpoint.read_shapes(prefix)
    run = checkpoint_layout.load_run_config(data_dir, model_name)
    run_config = run.config
    vocab_path = paths.vocab_file(data_dir)
    hf_configs = checkpoint_layout.derive_hf_configs(
        run_config, shapes, hf_tokenizer.read_vocab(vocab_path)["[PAD]"], run.hparams_file)
    networks = list(hf_configs)
    tokenizer = tokenization.FullTokenizer(vocab_path, do_lower_case=run_config.do_lower_case,
                                           strip_accents=True)
    texts, rows = builder_rows(tokenizer, list(SENTENCES) + corpus_lines(data_dir))
    input_ids, input_mask, segment_ids = pad_rows(rows)

    from wrapper import electra
    pretraining_model = electra.load("pretraining_model")
    logits, built = pretraining_model.run_inference_logits(
        run_config, prefix, input_ids, input_mask, segment_ids)
    arrays = {"%s_logits" % n: logits["%s_logits" % n] for n in networks}
    meta = {"prefix": prefix, "texts": texts, "hf_configs": hf_configs,
            "built_sizes": built_sizes(built, networks)}
    return dict(arrays, input_ids=input_ids, input_mask=input_mask, segment_ids=segment_ids,
                meta=np.array(json.dumps(meta)))


def save(arrays: Mapping[str, Any], path: str) -> None:
    """The npz (np.load reads it), written through fsutil.atomic_file: complete or absent.
    The archive is closed by its `with` even when a write fails, so that no half-closed
    ZipFile is left to complain at exit (np.savez leaves one on a full disk)."""
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with fsutil.atomic_file(path, "wb") as f, zipfile.ZipFile(f, "w") as archive:
            for name, array in arrays.items():
                with archive.open(name + ".npy", "w", force_zip64=True) as member:
                    np.lib.format.write_array(member, np.asanyarray(array), allow_pickle=False)
    except OSError as e:
        full = fsutil.disk_full_error(e, os.path.dirname(path), what="the TF logits")
        raise full or UserError("cannot write %s: %s; give --output a writable path"
                                % (path, e.strerror or e))


def main(argv: Optional[List[str]] = None) -> int:
    parser = model_parser("python -m wrapper.tf_logits", __doc__.split("\n")[0])
    parser.add_argument("--output", help="default: DATA_DIR/.cache/verify/NAME/tf-logits.npz")
    args = parser.parse_args(argv)
    path = args.output or paths.tf_logits_file(args.data_dir, args.model_name)
    arrays = compute(args.data_dir, args.model_name)
    save(arrays, path)
    print("tf_logits: %s: logits of %s on %d sentences"
          % (path, " and ".join(k[:-len("_logits")] for k in sorted(arrays) if
                                k.endswith("_logits")), len(arrays["input_ids"])))
    return 0


if __name__ == "__main__":
    run_main(main)
