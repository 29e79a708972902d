# coding=utf-8
"""Pretraining examples as tf.train.Example bytes in TFRecord files, without TensorFlow.

Importing TensorFlow costs seconds per process and building protobuf objects costs
microseconds per value; the builder writes millions of values, so it writes the wire
format itself. The layout is protobuf's: Example{features: Features{feature: map<string,
Feature{int64_list: Int64List{value (packed)}}>}}; TFRecord framing is
uint64 length, masked CRC-32C of the length, data, masked CRC-32C of the data.
`tf.io.tf_record_iterator` and `tf.train.Example.FromString` read these files (the tests
check both and compare with TensorFlow's own writer).
"""

import struct

import numpy as np

CRC32C_POLY = 0x82F63B78  # Castagnoli, reflected
MASK_DELTA = 0xA282EAD8


def _crc32c_table():
  table = []
  for byte in range(256):
    crc = byte
    for _ in range(8):
      crc = (crc >> 1) ^ CRC32C_POLY if crc & 1 else crc >> 1
    table.append(crc)
  return table


CRC32C_TABLE = _crc32c_table()
_CRC32C_TABLE_NP = np.array(CRC32C_TABLE, dtype=np.uint32)


def crc32c(data):
  """CRC-32C of bytes, one byte at a time (for short inputs)."""
  crc = 0xFFFFFFFF
  table = CRC32C_TABLE
  for byte in data:
    crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
  return crc ^ 0xFFFFFFFF


class _Crc32cByPosition(object):
  """CRC-32C as a sum (XOR) of per-position byte contributions, for many inputs at once.

  The CRC update is linear over GF(2): the CRC of an L-byte input is a constant that
  depends on L alone, XOR the contribution of each byte, which depends only on the
  byte's value and its distance from the end. So inputs right-aligned in a matrix
  (zero bytes on the left contribute nothing) are handled by one gather and one XOR
  reduction instead of a Python step per byte.
  """

  def __init__(self):
    self._by_distance = np.zeros((0, 256), dtype=np.uint32)  # [distance from end, byte]
    self._length_constant = np.zeros(1, dtype=np.uint32)     # [length]

  def _grow(self, width):
    table = _CRC32C_TABLE_NP
    rows = [r for r in self._by_distance]
    if not rows:
      rows.append(table.copy())                    # last byte: one table step from state 0
    while len(rows) < width:
      prev = rows[-1]                              # one more zero byte after it
      rows.append(table[prev & 0xFF] ^ (prev >> 8))
    self._by_distance = np.array(rows, dtype=np.uint32)
    constants = self._length_constant.tolist()
    state = constants[-1] ^ 0xFFFFFFFF
    while len(constants) <= width:
      state = CRC32C_TABLE[state & 0xFF] ^ (state >> 8)
      constants.append(state ^ 0xFFFFFFFF)
    self._length_constant = np.array(constants, dtype=np.uint32)

  def __call__(self, payloads, rows_per_batch=2048):
    result = []
    for begin in range(0, len(payloads), rows_per_batch):
      result.extend(self._batch(payloads[begin:begin + rows_per_batch]))
    return result

  def _batch(self, payloads):
    n = len(payloads)
    lengths = np.fromiter(map(len, payloads), dtype=np.int64, count=n)
    width = max(int(lengths.max()), 1)
    if width > len(self._by_distance):
      self._grow(width)
    data = np.frombuffer(b"".join(payloads), dtype=np.uint8)
    matrix = np.zeros((n, width), dtype=np.uint8)
    if data.size:
      offsets = np.cumsum(lengths) - lengths
      # flat position of each byte in the right-aligned matrix
      shift = np.arange(n, dtype=np.int64) * width + (width - lengths) - offsets
      matrix.reshape(-1)[np.arange(data.size, dtype=np.int64) + np.repeat(shift, lengths)] = data
    column_base = ((width - 1 - np.arange(width)) * 256).astype(np.int32)
    flat_table = self._by_distance[:width].reshape(-1)
    contributions = flat_table[column_base[None, :] + matrix]
    crcs = np.bitwise_xor.reduce(contributions, axis=1) ^ self._length_constant[lengths]
    return crcs.tolist()


crc32c_many = _Crc32cByPosition()


def masked_crc(crc):
  return (((crc >> 15) | (crc << 17)) + MASK_DELTA) & 0xFFFFFFFF


_length_headers = {}


def _length_header(length):
  header = _length_headers.get(length)
  if header is None:
    length_bytes = struct.pack("<Q", length)
    header = length_bytes + struct.pack("<I", masked_crc(crc32c(length_bytes)))
    _length_headers[length] = header
  return header


def frame_records(payloads, crcs=None):
  """TFRecord bytes for a list of record payloads, in order (crcs: their CRC-32Cs, if known)."""
  if crcs is None:
    crcs = crc32c_many(payloads)
  pack = struct.Struct("<I").pack
  parts = []
  for payload, crc in zip(payloads, crcs):
    parts.append(_length_header(len(payload)))
    parts.append(payload)
    parts.append(pack(masked_crc(crc)))
  return b"".join(parts)


def varint(value):
  """Protobuf base-128 varint of a non-negative int."""
  out = bytearray()
  while True:
    byte = value & 0x7F
    value >>= 7
    if value:
      out.append(byte | 0x80)
    else:
      out.append(byte)
      return bytes(out)


def _length_delimited(tag, payload):
  return tag + varint(len(payload)) + payload


def int64_feature_entry(name, packed_values):
  """One `feature` map entry: name -> Feature{int64_list{value: packed_values}}."""
  int64_list = _length_delimited(b"\x0a", packed_values)
  feature = _length_delimited(b"\x1a", int64_list)
  entry = _length_delimited(b"\x0a", name.encode("utf-8")) + _length_delimited(b"\x12", feature)
  return _length_delimited(b"\x0a", entry)


class ExampleSerializer(object):
  """tf.train.Example bytes of pretraining examples (input_ids, input_mask, segment_ids).

  Token ids are varint-encoded through a per-vocab table; the mask and segment
  features depend only on two lengths and are cached; the input_ids feature's headers
  are put together from precomputed varints.
  """

  def __init__(self, vocab_size, max_length):
    self._max_length = max_length
    self._id_bytes = [varint(i) for i in range(vocab_size)]
    # every length inside one example is below this bound
    self._varints = [varint(i) for i in range(max_length * 12 + 256)]
    self._padding = [b"\x00" * n for n in range(max_length + 1)]
    self._mask_entries = {}
    self._segment_entries = {}

  def serialize(self, input_ids, first_part_length):
    """input_ids: real tokens only ([CLS] first [SEP] (second [SEP])), unpadded;
    first_part_length: how many of them have segment id 0."""
    length = len(input_ids)
    padding = self._max_length - length
    mask_entry = self._mask_entries.get(length)
    if mask_entry is None:
      mask_entry = int64_feature_entry("input_mask", b"\x01" * length + b"\x00" * padding)
      self._mask_entries[length] = mask_entry
    key = (length, first_part_length)
    segment_entry = self._segment_entries.get(key)
    if segment_entry is None:
      segment_entry = int64_feature_entry(
          "segment_ids", b"\x00" * first_part_length + b"\x01" * (length - first_part_length)
          + b"\x00" * padding)
      self._segment_entries[key] = segment_entry
    ids_bytes = b"".join(map(self._id_bytes.__getitem__, input_ids))
    v = self._varints
    values_length = len(ids_bytes) + padding
    v1 = v[values_length]
    list_length = 1 + len(v1) + values_length             # Int64List
    v2 = v[list_length]
    feature_length = 1 + len(v2) + list_length             # Feature
    v3 = v[feature_length]
    entry_length = 11 + 1 + len(v3) + feature_length       # map entry: key, value
    v4 = v[entry_length]
    features_length = 1 + len(v4) + entry_length + len(mask_entry) + len(segment_entry)
    return b"".join((b"\x0a", v[features_length], b"\x0a", v4, b"\x0a\x09input_ids\x12", v3,
                     b"\x1a", v2, b"\x0a", v1, ids_bytes, self._padding[padding],
                     mask_entry, segment_entry))
