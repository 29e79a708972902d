# coding=utf-8
"""TensorFlow's checkpoint files (tensor bundle, V2) read and written without TensorFlow.

A checkpoint PREFIX is two files:
- PREFIX.data-00000-of-00001: the tensors' bytes (little-endian), one after another, in
  name order, no padding;
- PREFIX.index: a LevelDB-format table (sorted key -> value) whose key "" holds a
  BundleHeaderProto {num_shards, endianness, version} and whose other keys are tensor
  names, each holding a BundleEntryProto {dtype, shape, shard_id, offset, size,
  crc32c (masked CRC-32C of the tensor's bytes)}.
The table: data blocks of prefix-compressed entries (a restart point every 16 entries),
each block followed by a compression byte and the masked CRC-32C of block and byte; an
empty meta-index block; an index block (one entry per data block: a key >= the block's
last key and < the next block's first key -> the block's offset and size); a 48-byte
footer (the two blocks' offsets and sizes, padding, magic number).

Plus the model directory's `checkpoint` state file (text protobuf CheckpointState), with
TF's rule for keeping the newest keep_checkpoint_max checkpoints.

Damaged files raise CheckpointError (a ValueError) whose message names the file.
"""

import collections
import glob
import os
import random
import re
import struct

import numpy as np

import protobuf_wire as wire
from crc32c import crc32c, masked_crc, unmasked_crc

# DataType enum values of TensorFlow's types.proto -> numpy dtype (little-endian).
DTYPES = collections.OrderedDict([
    (1, np.dtype("<f4")), (2, np.dtype("<f8")), (3, np.dtype("<i4")), (4, np.dtype("u1")),
    (5, np.dtype("<i2")), (6, np.dtype("i1")), (8, np.dtype("<c8")), (9, np.dtype("<i8")),
    (10, np.dtype("?")), (17, np.dtype("<u2")), (18, np.dtype("<c16")), (19, np.dtype("<f2")),
    (22, np.dtype("<u4")), (23, np.dtype("<u8")),
])
_DTYPE_ENUMS = {dtype: enum for enum, dtype in DTYPES.items()}
_TYPE_NAMES = {7: "string", 14: "bfloat16", 20: "resource", 21: "variant"}

TABLE_MAGIC = 0xDB4775248B80FB57
FOOTER_SIZE = 48
BLOCK_TRAILER_SIZE = 5          # compression type byte, masked CRC-32C
NO_COMPRESSION = 0
BLOCK_SIZE = 256 * 1024         # a data block is closed once it reaches this size
RESTART_INTERVAL = 16
BUNDLE_VERSION = 1              # BundleHeaderProto.version.producer
LITTLE_ENDIAN = 0

CHECKPOINT_STATE = "checkpoint"
CHECKPOINT_PREFIX_RE = re.compile(r"^model\.ckpt-(\d+)$")

TensorInfo = collections.namedtuple("TensorInfo", "name shape dtype shard offset size crc")


class CheckpointError(ValueError):
  """A checkpoint file that is missing, truncated or corrupt; the message names it."""


def index_path(prefix):
  return prefix + ".index"


def data_path(prefix, shard=0, num_shards=1):
  return "%s.data-%05d-of-%05d" % (prefix, shard, num_shards)


# ---- reading ------------------------------------------------------------------------------

def _file_bytes(path):
  try:
    with open(path, "rb") as f:
      return f.read()
  except FileNotFoundError:
    raise CheckpointError("%s is missing" % path)
  except OSError as e:
    raise CheckpointError("cannot read %s: %s" % (path, e.strerror or e))


def _block(table, path, offset, size, what):
  """The contents of the table's block at offset (its CRC checked)."""
  end = offset + size + BLOCK_TRAILER_SIZE
  if end > len(table) - FOOTER_SIZE:
    raise CheckpointError("%s is corrupt: its %s block (bytes %d-%d) lies beyond the table "
                          "(%d bytes)" % (path, what, offset, end, len(table)))
  contents = table[offset:offset + size]
  compression, stored = struct.unpack_from("<BI", table, offset + size)
  if masked_crc(crc32c(contents + bytes([compression]))) != stored:
    raise CheckpointError("%s is corrupt: checksum mismatch in its %s block at byte %d"
                          % (path, what, offset))
  if compression != NO_COMPRESSION:
    raise CheckpointError("%s: its %s block is compressed (type %d), which TF checkpoints "
                          "never are" % (path, what, compression))
  return contents


def _block_entries(block, path, what):
  """(key, value) pairs of a block, keys rebuilt from their shared prefixes."""
  if len(block) < 4:
    raise CheckpointError("%s is corrupt: its %s block is %d bytes" % (path, what, len(block)))
  restarts = struct.unpack_from("<I", block, len(block) - 4)[0]
  end = len(block) - 4 - 4 * restarts
  if end < 0:
    raise CheckpointError("%s is corrupt: its %s block claims %d restart points"
                          % (path, what, restarts))
  entries, key, pos = [], b"", 0
  try:
    while pos < end:
      shared, pos = wire.read_varint(block, pos, end)
      unshared, pos = wire.read_varint(block, pos, end)
      value_length, pos = wire.read_varint(block, pos, end)
      if shared > len(key) or pos + unshared + value_length > end:
        raise wire.WireError("an entry runs past the block")
      key = key[:shared] + block[pos:pos + unshared]
      pos += unshared
      entries.append((key, block[pos:pos + value_length]))
      pos += value_length
  except wire.WireError as e:
    raise CheckpointError("%s is corrupt: in its %s block: %s" % (path, what, e))
  return entries


def _read_handle(data, pos, path):
  try:
    offset, pos = wire.read_varint(data, pos)
    size, pos = wire.read_varint(data, pos)
  except wire.WireError:
    raise CheckpointError("%s is corrupt: a block handle does not parse" % path)
  return offset, size, pos


def read_table(path):
  """All (key, value) pairs of a LevelDB-format table file, in key order."""
  table = _file_bytes(path)
  if len(table) < FOOTER_SIZE:
    raise CheckpointError("%s is truncated: %d bytes, less than a table's %d-byte footer"
                          % (path, len(table), FOOTER_SIZE))
  footer = len(table) - FOOTER_SIZE
  if struct.unpack_from("<Q", table, len(table) - 8)[0] != TABLE_MAGIC:
    raise CheckpointError("%s is not a checkpoint index (truncated or corrupt: its last 8 "
                          "bytes are not the table's magic number)" % path)
  _, _, pos = _read_handle(table, footer, path)             # meta-index: nothing we need
  index_offset, index_size, _ = _read_handle(table, pos, path)
  entries = []
  for _, handle in _block_entries(_block(table, path, index_offset, index_size, "index"),
                                  path, "index"):
    offset, size, _ = _read_handle(handle, 0, path)
    entries.extend(_block_entries(_block(table, path, offset, size, "data"), path, "data"))
  return entries


def _parse_shape(data, begin, end):
  dims = []
  for number, _, value in wire.fields(data, begin, end):
    if number == 2:                                           # dim {size name}
      size = 0
      for dim_number, _, dim_value in wire.fields(data, value[0], value[1]):
        if dim_number == 1:
          size = dim_value
      dims.append(size)
    elif number == 3 and value:
      raise wire.WireError("shape of unknown rank")
  return dims


def _parse_entry(name, value):
  fields = {1: 0, 3: 0, 4: 0, 5: 0, 6: 0}
  shape, sliced = [], False
  for number, _, field in wire.fields(value):
    if number == 2:
      shape = _parse_shape(value, field[0], field[1])
    elif number == 7:
      sliced = True
    else:
      fields[number] = field
  return TensorInfo(name, shape, fields[1], fields[3], fields[4], fields[5], fields[6]), sliced


def _parse_header(value):
  num_shards, endianness, producer = 0, LITTLE_ENDIAN, 0
  for number, _, field in wire.fields(value):
    if number == 1:
      num_shards = field
    elif number == 2:
      endianness = field
    elif number == 3:
      for version_number, _, version_field in wire.fields(value, field[0], field[1]):
        if version_number == 1:
          producer = version_field
  return num_shards, endianness, producer


def read_index(prefix):
  """(number of data shards, [TensorInfo] in name order) of a checkpoint's .index."""
  path = index_path(prefix)
  entries = read_table(path)
  if not entries or entries[0][0] != b"":
    raise CheckpointError("%s is corrupt: it has no bundle header" % path)
  try:
    num_shards, endianness, _ = _parse_header(entries[0][1])
    infos = []
    for key, value in entries[1:]:
      name = key.decode("utf-8")
      info, sliced = _parse_entry(name, value)
      if sliced:
        raise CheckpointError("%s: tensor %s is saved in slices (a partitioned variable), "
                              "which this reader does not support" % (path, name))
      infos.append(info)
  except (wire.WireError, UnicodeDecodeError) as e:
    raise CheckpointError("%s is corrupt: an entry does not parse (%s)" % (path, e))
  if endianness != LITTLE_ENDIAN:
    raise CheckpointError("%s was written on a big-endian machine; this reader reads "
                          "little-endian checkpoints only" % path)
  if num_shards < 1:
    raise CheckpointError("%s is corrupt: it names %d data shards" % (path, num_shards))
  for info in infos:
    dtype = DTYPES.get(info.dtype)
    if dtype is None:
      raise CheckpointError("%s: tensor %s has type %s, which this reader does not support"
                            % (path, info.name, _TYPE_NAMES.get(info.dtype, info.dtype)))
    if info.shard >= num_shards:
      raise CheckpointError("%s is corrupt: tensor %s is in shard %d of %d"
                            % (path, info.name, info.shard, num_shards))
    if info.size != int(np.prod(info.shape, dtype=np.int64)) * dtype.itemsize:
      raise CheckpointError("%s is corrupt: tensor %s of shape %s takes %d bytes, not %d"
                            % (path, info.name, info.shape, info.size,
                               int(np.prod(info.shape, dtype=np.int64)) * dtype.itemsize))
  return num_shards, infos


def list_variables(prefix):
  """[(name, shape as a list of ints, numpy dtype)] of a checkpoint, in name order."""
  return [(info.name, list(info.shape), DTYPES[info.dtype]) for info in read_index(prefix)[1]]


def iter_tensors(prefix, names=None):
  """Yields (name, numpy array) in name order (all tensors when names is None), each
  checked against its CRC. Unknown names raise CheckpointError."""
  num_shards, infos = read_index(prefix)
  if names is not None:
    wanted = set(names)
    missing = sorted(wanted.difference(info.name for info in infos))
    if missing:
      raise CheckpointError("checkpoint %s has no tensor %s" % (prefix, missing[0]))
    infos = [info for info in infos if info.name in wanted]
  files = {}
  try:
    for info in infos:
      path = data_path(prefix, info.shard, num_shards)
      if path not in files:
        files[path] = _open_data(path, infos, info.shard)
      yield info.name, _read_tensor(files[path], path, info)
  finally:
    for f in files.values():
      f.close()


def _open_data(path, infos, shard):
  try:
    f = open(path, "rb")
  except FileNotFoundError:
    raise CheckpointError("%s is missing" % path)
  except OSError as e:
    raise CheckpointError("cannot read %s: %s" % (path, e.strerror or e))
  have = os.fstat(f.fileno()).st_size
  need = max([i.offset + i.size for i in infos if i.shard == shard] + [0])
  if have < need:
    f.close()
    raise CheckpointError("%s is truncated: %d of %d bytes" % (path, have, need))
  return f


def _read_tensor(f, path, info):
  array = np.empty(info.shape, dtype=DTYPES[info.dtype])
  f.seek(info.offset)
  buffer = memoryview(array.reshape(-1).view(np.uint8))
  got = f.readinto(buffer) if info.size else 0
  if got != info.size:
    raise CheckpointError("%s is truncated: tensor %s ends at byte %d"
                          % (path, info.name, info.offset + info.size))
  if crc32c(buffer) != unmasked_crc(info.crc):
    raise CheckpointError("%s is corrupt: checksum mismatch in tensor %s (bytes %d-%d)"
                          % (path, info.name, info.offset, info.offset + info.size))
  return array


def read_checkpoint(prefix, names=None):
  """OrderedDict name -> numpy array, in name order (all tensors when names is None)."""
  return collections.OrderedDict(iter_tensors(prefix, names))


def verify_checkpoint(prefix):
  """Raises CheckpointError unless every file of the checkpoint is whole (all CRCs)."""
  for _ in iter_tensors(prefix):
    pass


# ---- writing ------------------------------------------------------------------------------

class _BlockBuilder(object):
  """One table block: entries with keys prefix-compressed between restart points."""

  def __init__(self, restart_interval):
    self.restart_interval = restart_interval
    self.reset()

  def reset(self):
    self.buffer = bytearray()
    self.restarts = [0]
    self.count = 0
    self.last_key = b""

  def add(self, key, value):
    shared = 0
    if self.count < self.restart_interval:
      limit = min(len(key), len(self.last_key))
      while shared < limit and key[shared] == self.last_key[shared]:
        shared += 1
    else:
      self.restarts.append(len(self.buffer))
      self.count = 0
    self.buffer += (wire.varint(shared) + wire.varint(len(key) - shared)
                    + wire.varint(len(value)) + key[shared:] + value)
    self.last_key = key
    self.count += 1

  def size(self):
    return len(self.buffer) + 4 * len(self.restarts) + 4

  def empty(self):
    return not self.buffer

  def finish(self):
    return bytes(self.buffer) + struct.pack("<%dI" % (len(self.restarts) + 1),
                                            *(self.restarts + [len(self.restarts)]))


def _separator(last, following):
  """A short key k with last <= k < following (LevelDB's bytewise rule)."""
  common = 0
  while common < min(len(last), len(following)) and last[common] == following[common]:
    common += 1
  if common < min(len(last), len(following)):
    byte = last[common]
    if byte < 0xFF and byte + 1 < following[common]:
      return last[:common] + bytes([byte + 1])
  return last


def _successor(key):
  """A short key >= key (LevelDB's bytewise rule)."""
  for i, byte in enumerate(key):
    if byte != 0xFF:
      return key[:i] + bytes([byte + 1])
  return key


def table_bytes(items, block_size=BLOCK_SIZE):
  """A LevelDB-format table of (key bytes, value bytes) pairs given in key order."""
  out = bytearray()
  data = _BlockBuilder(RESTART_INTERVAL)
  index = _BlockBuilder(1)
  pending = None            # the handle of the last data block, until the next key is known

  def write_block(block):
    handle = wire.varint(len(out)) + wire.varint(len(block))
    trailer = bytes([NO_COMPRESSION])
    out.extend(block + trailer + struct.pack("<I", masked_crc(crc32c(block + trailer))))
    return handle

  for key, value in items:
    if pending is not None:
      index.add(_separator(data_last, key), pending)
      pending = None
    data.add(key, value)
    data_last = key
    if data.size() >= block_size:
      pending = write_block(data.finish())
      data.reset()
  if not data.empty():
    pending = write_block(data.finish())
  meta_index = write_block(_BlockBuilder(RESTART_INTERVAL).finish())
  if pending is not None:
    index.add(_successor(data_last), pending)
  index_handle = write_block(index.finish())
  handles = meta_index + index_handle
  out.extend(handles + b"\x00" * (FOOTER_SIZE - 8 - len(handles)) + struct.pack("<Q", TABLE_MAGIC))
  return bytes(out)


def _shape_bytes(shape):
  return b"".join(wire.field_bytes(2, wire.field_varint(1, size) if size else b"")
                  for size in shape)


def _entry_bytes(dtype_enum, shape, offset, size, crc):
  entry = wire.field_varint(1, dtype_enum) + wire.field_bytes(2, _shape_bytes(shape))
  if offset:
    entry += wire.field_varint(4, offset)
  if size:
    entry += wire.field_varint(5, size)
  return entry + wire.varint(6 << 3 | wire.FIXED32) + struct.pack("<I", masked_crc(crc))


def _header_bytes(num_shards):
  return wire.field_varint(1, num_shards) + wire.field_bytes(3, wire.field_varint(1, BUNDLE_VERSION))


def _little_endian_array(name, value):
  array = np.asarray(value)
  dtype = array.dtype.newbyteorder("<") if array.dtype.byteorder == ">" else array.dtype
  if dtype.byteorder == "=":
    dtype = dtype.newbyteorder("<")
  if dtype not in _DTYPE_ENUMS:
    raise TypeError("tensor %s has dtype %s, which TF checkpoints cannot hold here"
                    % (name, array.dtype))
  array = array.astype(dtype, copy=False)
  # (np.ascontiguousarray would make a 0-d tensor 1-d)
  return array if array.flags.c_contiguous else array.copy()


def _temporary(path):
  # The name TF's Saver gives its temporary files: the trainer's clean-up knows it.
  return "%s.tempstate%d" % (path, random.getrandbits(63))


def write_checkpoint(prefix, tensors):
  """Writes PREFIX.data-00000-of-00001 and PREFIX.index holding `tensors` (a mapping
  name -> numpy array or scalar). Files are written under temporary names, then renamed,
  the data file first, so an interrupted or failed write (OSError, e.g. disk full) leaves
  no checkpoint that looks complete; its temporary files are removed."""
  names = sorted(tensors, key=lambda name: name.encode("utf-8"))
  arrays = [_little_endian_array(name, tensors[name]) for name in names]
  data_file, index_file = data_path(prefix), index_path(prefix)
  data_temp, index_temp = _temporary(data_file), _temporary(index_file)
  try:
    items, offset = [(b"", _header_bytes(1))], 0
    with open(data_temp, "wb") as f:
      for name, array in zip(names, arrays):
        buffer = memoryview(array.reshape(-1).view(np.uint8))
        f.write(buffer)
        items.append((name.encode("utf-8"), _entry_bytes(
            _DTYPE_ENUMS[array.dtype], array.shape, offset, array.nbytes, crc32c(buffer))))
        offset += array.nbytes
      f.flush()
      os.fsync(f.fileno())
    _write_file(index_temp, table_bytes(items))
    if os.path.exists(index_file):
      os.remove(index_file)     # an older checkpoint of this prefix: never beside new data
    os.replace(data_temp, data_file)
    os.replace(index_temp, index_file)
  except BaseException:
    for path in (data_temp, index_temp):
      if os.path.exists(path):
        os.remove(path)
    raise


def _write_file(path, data):
  with open(path, "wb") as f:
    f.write(data)
    f.flush()
    os.fsync(f.fileno())


# ---- the model directory's `checkpoint` state file -----------------------------------------

def _quoted(text):
  return '"%s"' % text.replace("\\", "\\\\").replace('"', '\\"')


def _unquoted(text):
  return re.sub(r"\\(.)", r"\1", text)


def read_checkpoint_state(model_dir):
  """The `checkpoint` file's fields: dict with model_checkpoint_path (str or None),
  all_model_checkpoint_paths, all_model_checkpoint_timestamps (lists) and
  last_preserved_timestamp (float or None; TF 2's Saver writes the timestamps, 1.15's
  does not); None when the file is absent."""
  path = os.path.join(model_dir, CHECKPOINT_STATE)
  try:
    with open(path, encoding="utf-8") as f:
      text = f.read()
  except FileNotFoundError:
    return None
  state = {"model_checkpoint_path": None, "all_model_checkpoint_paths": [],
           "all_model_checkpoint_timestamps": [], "last_preserved_timestamp": None}
  for line in text.splitlines():
    match = re.match(r'^\s*(\w+)\s*:\s*(?:"((?:[^"\\]|\\.)*)"|(\S+))\s*$', line)
    if not match or match.group(1) not in state:
      continue
    key, value = match.group(1), (_unquoted(match.group(2)) if match.group(2) is not None
                                  else match.group(3))
    try:
      if key == "all_model_checkpoint_timestamps":
        state[key].append(float(value))
      elif key == "last_preserved_timestamp":
        state[key] = float(value)
      elif key == "all_model_checkpoint_paths":
        state[key].append(value)
      else:
        state[key] = value
    except ValueError:
      continue
  return state


def write_checkpoint_state(model_dir, model_checkpoint_path, all_model_checkpoint_paths):
  """The `checkpoint` file, as TF 1.15's Saver writes it (text protobuf), atomically."""
  lines = ["model_checkpoint_path: %s" % _quoted(model_checkpoint_path)]
  lines += ["all_model_checkpoint_paths: %s" % _quoted(p) for p in all_model_checkpoint_paths]
  path = os.path.join(model_dir, CHECKPOINT_STATE)
  temp = _temporary(path)
  try:
    _write_file(temp, ("\n".join(lines) + "\n").encode("utf-8"))
    os.replace(temp, path)
  except BaseException:
    if os.path.exists(temp):
      os.remove(temp)
    raise


def _recorded(model_dir, prefix):
  """How the state file names a checkpoint: relative when it lies in model_dir."""
  if os.path.dirname(os.path.abspath(prefix)) == os.path.abspath(model_dir):
    return os.path.basename(prefix)
  return prefix


def _on_disk(model_dir, recorded):
  return recorded if os.path.isabs(recorded) else os.path.join(model_dir, recorded)


def checkpoint_files(prefix):
  """The files of a checkpoint that exist: .index, .data-*, .meta."""
  found = [p for p in (index_path(prefix), prefix + ".meta") if os.path.exists(p)]
  return sorted(found + glob.glob(glob.escape(prefix) + ".data-?????-of-?????"))


def update_checkpoint_state(model_dir, prefix, keep_checkpoint_max):
  """Records the just-written checkpoint `prefix` as the latest, as TF's Saver does after
  a save: the state file lists the newest keep_checkpoint_max checkpoints (all when it is
  0 or None), then the files of the older ones are deleted, oldest first."""
  state = read_checkpoint_state(model_dir) or {}
  recorded = _recorded(model_dir, prefix)
  kept = [p for p in state.get("all_model_checkpoint_paths", []) if p != recorded]
  kept.append(recorded)
  dropped = []
  if keep_checkpoint_max:
    dropped, kept = kept[:-keep_checkpoint_max], kept[-keep_checkpoint_max:]
  write_checkpoint_state(model_dir, recorded, kept)
  for old in dropped:
    for path in checkpoint_files(_on_disk(model_dir, old)):
      os.remove(path)


def is_complete(prefix):
  """Its .index and every data shard it names exist (contents not checked)."""
  if not os.path.isfile(index_path(prefix)):
    return False
  shards = glob.glob(glob.escape(prefix) + ".data-?????-of-?????")
  if not shards:
    return False
  total = int(shards[0][-5:])
  return all(os.path.isfile(data_path(prefix, i, total)) for i in range(total))


def step_checkpoints(model_dir):
  """Prefixes of the complete model.ckpt-N checkpoints in model_dir, oldest step first."""
  found = []
  for path in glob.glob(os.path.join(glob.escape(model_dir), "model.ckpt-*.index")):
    prefix = path[:-len(".index")]
    match = CHECKPOINT_PREFIX_RE.match(os.path.basename(prefix))
    if match and is_complete(prefix):
      found.append((int(match.group(1)), prefix))
  return [prefix for _, prefix in sorted(found)]


def latest_checkpoint(model_dir):
  """The prefix the state file names as latest (one recorded under another directory is
  looked for beside it), else the newest complete model.ckpt-N; None when there is none."""
  state = read_checkpoint_state(model_dir)
  if state and state["model_checkpoint_path"]:
    prefix = _on_disk(model_dir, state["model_checkpoint_path"])
    if os.path.isfile(index_path(prefix)):
      return prefix
    beside = os.path.join(model_dir, os.path.basename(prefix))
    if os.path.isfile(index_path(beside)):
      return beside
  found = step_checkpoints(model_dir)
  return found[-1] if found else None
