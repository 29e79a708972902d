"""Stage records: an interrupted `make all` resumes at the stage that did not finish.

A stage is up to date when DATA_DIR/.stages/STAGE.done holds the fingerprint of its inputs
as they are now and its outputs are as it wrote them (every output file's size and time, and
a TFRecord file's framing: a truncated shard is seen); then the command is skipped.
Otherwise the command runs, and the record is rewritten only when the command succeeded, so
a killed or failed stage is simply run again. The fingerprint covers:
- every input path (a file, or every file under a directory): its SHA-256 when smaller than
  HASH_LIMIT_BYTES, else its size and modification time (a 5 GB download is not re-read);
- every variable (the Make variables and settings the stage's result depends on).
Inputs of one stage are the outputs of the one before (corpus/, vocab.txt, hparams.json ...)
hashed by content, so changing the corpus, the vocab or the hparams redoes exactly the stages
that depend on them, and regenerating an identical file redoes nothing.

`keeps` names a directory the command continues rather than replaces (the model
directory: pretraining resumes from its checkpoints). The fingerprint it was started with is
kept in STAGE.started; if it already holds files and the inputs changed since, the stage
refuses instead of mixing two trainings in one directory. `may_change` exempts keys of
the JSON inputs from that comparison (num_train_steps: training longer continues the model,
as the reference does when rerun with more steps).

Every Make stage target reaches run_stage through wrapper/pipeline.py (the stage table);
the commands run under wrapper/supervise.py.
"""
import hashlib
import json
import os
import stat
import struct
import time
from typing import Mapping, Optional, Sequence

from wrapper import fsutil, paths, supervise
from wrapper.cli import UserError

HASH_LIMIT_BYTES = 64 << 20


def file_digest(path):
    """The file's digest; for anything but a regular file, what it is, never opened (a FIFO
    or a device would block the read or never end it)."""
    kind = paths.kind_of(path)
    if kind != "regular file":
        return "not read: %s" % kind
    size = os.path.getsize(path)
    if size >= HASH_LIMIT_BYTES:
        return "size=%d mtime_ns=%d" % (size, os.stat(path).st_mtime_ns)
    sha = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            sha.update(block)
    return "sha256=" + sha.hexdigest()


def path_digests(path):
    """{relative file path: digest} for a file or every file under a directory."""
    if os.path.isfile(path):
        return {"": file_digest(path)}
    if os.path.isdir(path):
        found = {}
        for root, dirs, files in os.walk(path):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in sorted(files):
                if name.startswith("."):
                    continue
                full = os.path.join(root, name)
                found[os.path.relpath(full, path)] = file_digest(full)
        return found
    if os.path.lexists(path):
        return {"": file_digest(path)}   # a FIFO, a device, a broken link: said, not read
    return None   # absent


def summarized_digests(path):
    """path_digests, with a directory of many files (1000 shards) folded into one digest."""
    digests = path_digests(path)
    if digests is not None and len(digests) > 20:
        text = json.dumps(digests, sort_keys=True).encode("utf-8")
        return {"files": len(digests), "sha256 of the file digests": hashlib.sha256(
            text).hexdigest()}
    return digests


def input_key(path, data_dir):
    """Inputs inside DATA_DIR are named relative to it, so `./data` and `data` agree."""
    full, base = os.path.abspath(path), os.path.abspath(data_dir)
    return os.path.relpath(full, base) if full.startswith(base + os.sep) else full


def fingerprint(inputs, variables, data_dir="."):
    """(digest, details): details says what went in, for the record and for messages."""
    details = {"inputs": {input_key(p, data_dir): summarized_digests(p) for p in inputs},
               "vars": dict(variables)}
    text = json.dumps(details, sort_keys=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest(), details


def continuation_fingerprint(inputs, variables, data_dir, may_change):
    """The fingerprint without the JSON keys `may_change` (a longer run continues a model)."""
    details = {"inputs": {}, "vars": dict(variables)}
    for path in inputs:
        key = input_key(path, data_dir)
        if path.endswith(".json") and os.path.isfile(path) and may_change:
            try:
                with open(path, encoding="utf-8") as f:
                    content = json.load(f)
            except ValueError:
                content = None
            if isinstance(content, dict):
                details["inputs"][key] = {k: v for k, v in content.items() if k not in may_change}
                continue
        details["inputs"][key] = summarized_digests(path)
    text = json.dumps(details, sort_keys=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest(), details


def record_path(data_dir: str, stage: str, kind: str = "done") -> str:
    return os.path.join(paths.stages_dir(data_dir), "%s.%s" % (stage, kind))


def read_record(path):
    return fsutil.read_json(path)


def write_record(path, digest, details, outputs=None):
    """outputs: {name: output_state} of what the stage wrote (compared by damaged_outputs)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    record = dict(details, fingerprint=digest, finished=time.strftime("%Y-%m-%dT%H:%M:%S"))
    if outputs is not None:
        record["outputs"] = outputs
    fsutil.atomic_write_text(path, json.dumps(record, indent=1, sort_keys=True) + "\n")


# ---- the outputs as written: a cheap check that they are still whole ----------------------

def output_state(path):
    """{file name: "size=N mtime_ns=M"} of output `path`: a file, or the files directly in a
    directory (every stage's output directory is flat; the model directory's subdirectories
    are later stages' outputs)."""
    if os.path.isdir(path):
        names = sorted(n for n in os.listdir(path) if not n.startswith("."))
        files = [(n, os.path.join(path, n)) for n in names]
    else:
        files = [("", path)]
    state = {}
    for name, full in files:
        try:
            st = os.stat(full)
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode):
            state[name] = "size=%d mtime_ns=%d" % (st.st_size, st.st_mtime_ns)
    return state


def outputs_state(outputs, data_dir):
    return {input_key(p, data_dir): output_state(p) for p in outputs}


def tfrecord_damage(path):
    """Why the TFRecord file `path` is not whole, or None. Its framing is checked: record
    after record (uint64 length, masked CRC-32C of the length, data, masked CRC-32C of the
    data) ending exactly at the end of the file, each length's CRC right. Reading the data's
    own CRCs would read every byte; a truncated or overwritten file fails this already."""
    from wrapper.electra import tfrecord_io
    with open(path, "rb") as f:
        data = f.read()     # one shard of many: a few MB
    size = len(data)
    lengths, stored = [], []
    offset = 0
    while offset + 12 <= size:
        lengths.append(data[offset:offset + 8])
        length, crc = struct.unpack_from("<QI", data, offset)
        stored.append(crc)
        offset += 12 + length + 4
    # The lengths' CRCs first: a damaged length sends the walk past the end as well.
    for i, (crc, expected) in enumerate(zip(tfrecord_io.crc32c_many(lengths), stored)):
        if tfrecord_io.masked_crc(crc) != expected:
            return "the length of its record %d fails its CRC: overwritten" % (i + 1)
    if offset != size:
        return "its record %d runs past the end of the file (%d bytes): truncated" % (
            len(lengths) + (offset < size), size)
    return None


def damaged_outputs(recorded, outputs, data_dir):
    """What of the recorded outputs changed since the stage wrote them (a file missing,
    another size or time, a TFRecord file that is not whole), as texts naming the file."""
    damage = []
    for path in outputs:
        key = input_key(path, data_dir)
        before = (recorded or {}).get(key)
        if before is None:
            continue        # not recorded (a record older than this check)
        now = output_state(path)
        for name in sorted(before):
            full = os.path.join(path, name) if name else path
            if name not in now:
                damage.append("%s is missing" % full)
            elif now[name] != before[name]:
                old_size, new_size = (int(t.split()[0][len("size="):])
                                      for t in (before[name], now[name]))
                damage.append("%s is %d bytes, %d when written" % (full, new_size, old_size)
                              if old_size != new_size else
                              "%s was modified since it was written" % full)
            elif ".tfrecord" in os.path.basename(full):
                why = tfrecord_damage(full)
                if why:
                    damage.append("%s: %s" % (full, why))
    return damage


def out_of_date(stage: str, data_dir: str, variables: Mapping[str, str],
                outputs: Sequence[str]) -> Optional[str]:
    """Why the recorded result of `stage` no longer serves a later stage: it was made with
    other values of `variables`, or its outputs were damaged since; None when it serves or
    was never recorded (files put there by hand are taken as they are)."""
    done = read_record(record_path(data_dir, stage))
    if done is None:
        return None
    before = done.get("vars", {})
    changed = sorted(k for k in set(before) | set(variables) if before.get(k) != variables.get(k))
    if changed:
        return "made with other %s" % ", ".join(changed)
    missing = [p for p in outputs if not os.path.exists(p)]
    damage = ["%s is missing" % p for p in missing] or damaged_outputs(
        done.get("outputs"), outputs, data_dir)
    if damage:
        return "%s%s" % (damage[0], " and %d more" % (len(damage) - 1) if len(damage) > 1
                         else "")
    return None


def changed_inputs(old, new):
    """Names of the inputs and variables that differ between two records' details."""
    names = []
    for key in ("inputs", "vars"):
        a, b = old.get(key, {}), new.get(key, {})
        names += sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    return names


def has_files(directory):
    return os.path.isdir(directory) and any(files for _, _, files in os.walk(directory))


# ---- the runner ---------------------------------------------------------------------------

def check_inputs(stage: str, inputs: Sequence[str]) -> None:
    """UserError naming the first of `inputs` that is missing."""
    for path in inputs:
        if not os.path.exists(path):
            raise UserError("%s needs %s, which is missing; run the stage that writes it first "
                            "(make all runs every stage in order)" % (stage, path))


def run_stage(stage: str, data_dir: str, inputs: Sequence[str], variables: Mapping[str, str],
              outputs: Sequence[str], keeps: Optional[str], commands: Sequence,
              may_change: Sequence[str] = (), writes: bool = True) -> int:
    """Runs `commands` unless the stage's record says it is up to date; records success.

    writes=False: the stage's result is its verdict, not files (verify: the TF logits it
    keeps beside the model are scratch), so on a read-only DATA_DIR it still runs,
    unrecorded, with that scratch elsewhere.
    """
    digest, details = fingerprint(inputs, variables, data_dir)
    done_path = record_path(data_dir, stage)
    done = read_record(done_path)
    missing = [p for p in outputs if not os.path.exists(p)]
    damaged = damaged_outputs(done.get("outputs"), outputs, data_dir) \
        if done and done.get("fingerprint") == digest and not missing else []
    if done and done.get("fingerprint") == digest and not missing and not damaged:
        print("%s: up to date (inputs unchanged since %s; remove %s to redo it)"
              % (stage, done.get("finished", "?"), done_path))
        return 0
    read_only = paths.read_only(data_dir)
    if read_only and writes:
        why = changed_inputs(done, details) if done else ["no record of a finished run"]
        raise UserError("DATA_DIR %s is read-only, and %s must write into it (%s); make it "
                        "writable, or copy it to a writable place"
                        % (data_dir, stage, ", ".join(why) or "missing output"))
    if read_only:
        print("%s: DATA_DIR %s is read-only: running without a record" % (stage, data_dir))
        started_at = time.time()
        status = supervise.run_commands(commands)
        if status == 0:
            print("%s: done in %.1f s (not recorded)" % (stage, time.time() - started_at))
        return status
    if done:
        # The record stays until the stage succeeds: it still describes the outputs as they
        # were written (a failed or killed run changes them only as a whole, or changes their
        # sizes and times, which the next check sees).
        changed = changed_inputs(done, details)
        print("%s: redoing (%s)" % (stage, "changed: " + ", ".join(changed) if changed else
                                    ", ".join(["missing output %s" % m for m in missing] or
                                              ["damaged output: %s" % d for d in damaged])))
    if keeps:
        started_path = record_path(data_dir, stage, "started")
        started = read_record(started_path)
        kept_digest, kept_details = continuation_fingerprint(inputs, variables, data_dir,
                                                             may_change)
        if has_files(keeps):
            if started is None:
                raise UserError("%s holds files that this pipeline did not start; move it "
                                "away or choose another MODEL_NAME" % keeps)
            if started.get("fingerprint") != kept_digest:
                raise UserError(
                    "%s was started from other inputs (changed: %s); to keep it, rerun with "
                    "the inputs it was started with (only %s may change); to start afresh, "
                    "choose another MODEL_NAME or move that directory away"
                    % (keeps, ", ".join(changed_inputs(started, kept_details)),
                       ", ".join(may_change) or "nothing"))
        else:
            write_record(started_path, kept_digest, kept_details)
    if not commands:
        raise UserError("no command given for stage %s" % stage)
    started_at = time.time()
    status = supervise.run_commands(commands)
    if status == 0:
        written = outputs_state(outputs, data_dir)
        damage = damaged_outputs(written, outputs, data_dir)
        if damage:      # a builder that reported success over a broken shard
            raise UserError("%s finished, but %s; it is not recorded as done" % (
                stage, damage[0]))
        write_record(done_path, digest, details, written)
        print("%s: done in %.1f s" % (stage, time.time() - started_at))
    return status
