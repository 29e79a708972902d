# coding=utf-8
"""Pretraining examples as tf.train.Example bytes in TFRecord files, without TensorFlow.

Importing TensorFlow costs seconds per process and building protobuf objects costs
microseconds per value; the builder writes millions of values, so it writes the wire
format itself. The layout is protobuf's: Example{features: Features{feature: map<string,
Feature{int64_list: Int64List{value (packed)}}>}}; TFRecord framing is
uint64 length, masked CRC-32C of the length, data, masked CRC-32C of the data.
`tf.io.tf_record_iterator` and `tf.train.Example.FromString` read these files (the tests
check both and compare with TensorFlow's own writer).

`read_examples` reads such files back without TensorFlow (for a trainer without it): the
framing and its CRCs are checked for all records at once, each record's few protobuf
fields are walked in Python, and the int64 values, the bulk, are decoded as varints by
numpy across the whole file.
"""

import struct

import numpy as np

from crc32c import crc32c, crc32c_many, masked_crc
from protobuf_wire import WireError, fields, next_field, read_varint, varint


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


# ---- reading ------------------------------------------------------------------------------

class TFRecordError(ValueError):
  """A TFRecord file that is truncated, corrupt or not of pretraining examples; the
  message names the file and the record."""


def read_records(path):
  """The record payloads (bytes) of a TFRecord file, every length and data CRC checked."""
  with open(path, "rb") as f:
    data = f.read()
  return [data[begin:end] for begin, end in _record_spans(path, data)]


def _record_spans(path, data):
  """(begin, end) of each record's payload in data, after checking the framing."""
  spans, heads, pos, size = [], [], 0, len(data)
  unpack = struct.Struct("<QI").unpack_from
  while pos < size:
    if pos + 12 > size:
      raise TFRecordError("%s is truncated: record %d (at byte %d) ends inside its length "
                          "header" % (path, len(spans) + 1, pos))
    length, _ = unpack(data, pos)
    end = pos + 12 + length
    if end + 4 > size:
      # A corrupt length reads as a huge one: tell the two apart by its CRC.
      if masked_crc(crc32c(data[pos:pos + 8])) != unpack(data, pos)[1]:
        raise TFRecordError("%s is corrupt: record %d (at byte %d) has a bad length checksum"
                            % (path, len(spans) + 1, pos))
      raise TFRecordError("%s is truncated: record %d (at byte %d) needs %d bytes, the file "
                          "ends at %d" % (path, len(spans) + 1, pos, end + 4 - pos, size))
    heads.append(pos)
    spans.append((pos + 12, end))
    pos = end + 4
  if spans:
    stored = np.frombuffer(data, dtype=np.uint8)
    heads = np.array(heads, dtype=np.int64)
    ends = np.array([end for _, end in spans], dtype=np.int64)
    length_crcs = np.array(crc32c_many([data[h:h + 8] for h in heads.tolist()]), np.uint32)
    data_crcs = np.array(crc32c_many([data[b:e] for b, e in spans]), np.uint32)
    want_length = _uint32_at(stored, heads + 8)
    want_data = _uint32_at(stored, ends)
    for got, want, what in ((length_crcs, want_length, "length"), (data_crcs, want_data, "data")):
      bad = np.flatnonzero(masked_crc(got) != want)
      if bad.size:
        raise TFRecordError("%s is corrupt: record %d (at byte %d) has a bad %s checksum"
                            % (path, bad[0] + 1, heads[bad[0]], what))
  return spans


def _uint32_at(stored, offsets):
  b = stored[offsets[:, None] + np.arange(4)].astype(np.uint32)
  return b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16) | (b[:, 3] << 24)


def _feature_segments(data, begin, end, wanted, found):
  """Fills found[name] with the byte spans of feature `name`'s int64 values in the
  Features message data[begin:end] (packed: one span; unpacked: a span per value)."""
  pos = begin
  while pos < end:
    number, _, entry, pos = next_field(data, pos, end)
    if number != 1:
      continue
    name, value, entry_pos = None, None, entry[0]
    while entry_pos < entry[1]:
      entry_number, _, span, entry_pos = next_field(data, entry_pos, entry[1])
      if entry_number == 1:
        name = data[span[0]:span[1]].decode("utf-8", "replace")
      elif entry_number == 2:
        value = span
    if name not in wanted:
      continue
    segments = []
    list_pos = value[0] if value is not None else 0
    while value is not None and list_pos < value[1]:
      kind, _, list_span, list_pos = next_field(data, list_pos, value[1])
      if kind != 3:                                          # not int64_list
        raise WireError("feature %s is not an int64 list" % name)
      _int64_list_segments(data, list_span[0], list_span[1], segments)
    found[name] = segments


def _int64_list_segments(data, begin, end, segments):
  pos = begin
  while pos < end:
    key = data[pos]
    if key == 0x0A:                                          # packed values
      number, _, span, pos = next_field(data, pos, end)
      segments.append(span)
    elif key == 0x08:                                        # one unpacked value
      start = pos + 1
      _, pos = read_varint(data, start, end)
      segments.append((start, pos))
    else:
      raise WireError("unexpected field in an Int64List (key %d)" % key)


def _decode_varints(stored, starts, stops):
  """Values (int64) of the varints filling the byte spans [starts, stops) of `stored`, and
  how many each span holds; None for the values when a varint runs past its span or is
  longer than 10 bytes."""
  lengths = stops - starts
  if lengths.size and (lengths == lengths[0]).all():       # e.g. single-byte masks: one gather
    chunk = stored[starts[:, None] + np.arange(lengths[0])].reshape(-1)
  else:
    offsets = np.cumsum(lengths) - lengths
    index = np.arange(int(lengths.sum()), dtype=np.int64)
    index += np.repeat(starts - offsets, lengths)
    chunk = stored[index]
  last = chunk < 0x80
  seen = np.concatenate(([0], np.cumsum(last, dtype=np.int64)))
  bounds = np.cumsum(lengths)
  counts = seen[bounds] - seen[bounds - lengths]
  ends = np.flatnonzero(last)
  if chunk.size and not last[(bounds - 1)[lengths > 0]].all():
    return None, counts
  if ends.size == chunk.size:                                # every value one byte
    return chunk.astype(np.int64), counts
  value_starts = np.concatenate(([0], ends[:-1] + 1))
  value_lengths = ends - value_starts + 1
  longest = int(value_lengths.max())
  if longest > 10:
    return None, counts
  # Up to 4 bytes (values below 2**28) in uint32, else uint64: byte j of every value at once.
  dtype = np.uint32 if longest <= 4 else np.uint64
  values = (chunk[value_starts] & 0x7F).astype(dtype)
  for j in range(1, longest):
    byte = chunk[np.minimum(value_starts + j, chunk.size - 1)] & 0x7F
    values |= np.where(value_lengths > j, byte, 0).astype(dtype) << dtype(7 * j)
  return values.astype(np.int64) if dtype is np.uint32 else values.view(np.int64), counts


def read_examples(path, features=("input_ids", "input_mask", "segment_ids"), seq_length=None):
  """name -> int32 array [examples, seq_length] of a TFRecord file of tf.train.Example
  (int64 list features, packed or not); seq_length None: the first example's length,
  which every example must then have. Raises TFRecordError naming the file and record."""
  with open(path, "rb") as f:
    data = f.read()
  spans = _record_spans(path, data)
  wanted = set(features)
  segments = {name: ([], [], []) for name in features}    # starts, stops, record
  for record, (begin, end) in enumerate(spans):
    found = {}
    try:
      for number, _, span in fields(data, begin, end):
        if number == 1:                                      # Example.features
          _feature_segments(data, span[0], span[1], wanted, found)
    except (WireError, UnicodeDecodeError) as e:
      raise TFRecordError("%s: record %d is not a tf.train.Example of int64 features (%s)"
                          % (path, record + 1, e))
    for name in features:
      if name not in found:
        raise TFRecordError("%s: record %d has no feature %s" % (path, record + 1, name))
      starts, stops, records = segments[name]
      for start, stop in found[name]:
        starts.append(start)
        stops.append(stop)
        records.append(record)
  stored = np.frombuffer(data, dtype=np.uint8)
  result = {}
  for name in features:
    starts, stops, records = (np.array(x, dtype=np.int64) for x in segments[name])
    values, counts = _decode_varints(stored, starts, stops)
    if values is None:
      raise TFRecordError("%s is corrupt: a varint of feature %s runs past its list" % (path, name))
    per_record = np.bincount(records, weights=counts, minlength=len(spans)).astype(np.int64)
    if seq_length is None:
      seq_length = int(per_record[0]) if len(spans) else 0
    wrong = np.flatnonzero(per_record != seq_length)
    if wrong.size:
      raise TFRecordError("%s: record %d has %d values of %s, not %d (seq_length)"
                          % (path, wrong[0] + 1, per_record[wrong[0]], name, seq_length))
    out_of_range = np.flatnonzero((values < -2 ** 31) | (values >= 2 ** 31))
    if out_of_range.size:
      raise TFRecordError("%s: feature %s holds %d, beyond int32" % (
          path, name, values[out_of_range[0]]))
    result[name] = values.astype(np.int32).reshape(len(spans), seq_length)
  return result
