# coding=utf-8
"""The protobuf wire format, as far as TFRecord examples and checkpoint indexes need it.

A message is a sequence of fields: a varint key (field number << 3 | wire type), then a
varint (type 0), 8 bytes (type 1), a varint length and that many bytes (type 2) or 4
bytes (type 5). Readers raise WireError (a ValueError) on bytes that do not parse;
callers say which file and which record.
"""

import struct

VARINT, FIXED64, LENGTH_DELIMITED, FIXED32 = 0, 1, 2, 5


class WireError(ValueError):
  """Bytes that are not a protobuf message."""


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


def read_varint(data, pos, end=None):
  """(value, position after it) of the varint at data[pos]; data: bytes or memoryview."""
  if end is None:
    end = len(data)
  value = shift = 0
  while True:
    if pos >= end or shift > 63:
      raise WireError("a varint runs past its message")
    byte = data[pos]
    pos += 1
    value |= (byte & 0x7F) << shift
    if byte < 0x80:
      return value, pos
    shift += 7


def next_field(data, pos, end):
  """(field number, wire type, value, position after the field) of the field at data[pos]:
  value is an int for varint and fixed-width fields, a (start, stop) pair into data for
  length-delimited ones. One-byte keys and lengths (most) take no further call."""
  key = data[pos]
  if key < 0x80:
    pos += 1
  else:
    key, pos = read_varint(data, pos, end)
  number, wire_type = key >> 3, key & 7
  if wire_type == LENGTH_DELIMITED:
    if pos >= end:
      raise WireError("field %d runs past its message" % number)
    length = data[pos]
    if length < 0x80:
      pos += 1
    else:
      length, pos = read_varint(data, pos, end)
    stop = pos + length
    if stop > end:
      raise WireError("field %d runs past its message" % number)
    return number, wire_type, (pos, stop), stop
  if wire_type == VARINT:
    value, pos = read_varint(data, pos, end)
    return number, wire_type, value, pos
  if wire_type in (FIXED32, FIXED64):
    width = 4 if wire_type == FIXED32 else 8
    if pos + width > end:
      raise WireError("field %d runs past its message" % number)
    return (number, wire_type, struct.unpack_from("<I" if width == 4 else "<Q", data, pos)[0],
            pos + width)
  raise WireError("unknown wire type %d (field %d)" % (wire_type, number))


def fields(data, begin=0, end=None):
  """Yields (field number, wire type, value) of the message data[begin:end] (next_field's)."""
  if end is None:
    end = len(data)
  pos = begin
  while pos < end:
    number, wire_type, value, pos = next_field(data, pos, end)
    yield number, wire_type, value


def field_bytes(key_number, payload):
  """A length-delimited field: key, length, payload."""
  return varint(key_number << 3 | LENGTH_DELIMITED) + varint(len(payload)) + payload


def field_varint(key_number, value):
  return varint(key_number << 3 | VARINT) + varint(value)
