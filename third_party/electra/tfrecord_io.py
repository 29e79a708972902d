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

from crc32c import crc32c, crc32c_many, masked_crc, unmasked_crc  # noqa: F401 (re-exported)
from protobuf_wire import varint  # noqa: F401 (re-exported)


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
