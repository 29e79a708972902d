# coding=utf-8
"""CRC-32C (Castagnoli), as TFRecord framing and TF's checkpoint files use it, in numpy.

Three ways to the same checksum: `crc32c_bytewise` (the table step per byte: the
definition, for short inputs and tests), `crc32c` (large buffers, vectorized) and
`crc32c_many` (many short payloads at once). TensorFlow stores CRCs "masked"
(`masked_crc`) so that a CRC of bytes holding CRCs stays well spread.

Large buffers: a CRC register is linear over GF(2) in (state, data). The buffer is cut
into K equal chunks; all K registers advance in lock-step, four bytes per numpy step
(slicing-by-4 tables), so Python steps number len/(4K) instead of len. Chunk k's
register then has to be moved past the L bytes of chunk k+1: that is the linear map
"append L zero bytes", kept as 32 column images and applied through four byte tables.
Neighbouring chunks are merged pairwise, doubling the shift each round.
"""

import numpy as np

CRC32C_POLY = 0x82F63B78  # Castagnoli, reflected
MASK_DELTA = 0xA282EAD8
_ALL_ONES = 0xFFFFFFFF


def _crc32c_table():
  table = []
  for byte in range(256):
    crc = byte
    for _ in range(8):
      crc = (crc >> 1) ^ CRC32C_POLY if crc & 1 else crc >> 1
    table.append(crc)
  return table


CRC32C_TABLE = _crc32c_table()
CRC32C_TABLE_NP = np.array(CRC32C_TABLE, dtype=np.uint32)


def _slicing_tables():
  """tables[k][b]: the register after byte b then k zero bytes (from state 0)."""
  tables = [CRC32C_TABLE_NP]
  for _ in range(3):
    prev = tables[-1]
    tables.append(CRC32C_TABLE_NP[prev & 0xFF] ^ (prev >> 8))
  return tables


_T0, _T1, _T2, _T3 = _slicing_tables()
_BYTEWISE_LIMIT = 1 << 12      # below this, the per-byte loop is faster than numpy set-up
_MIN_CHUNK = 256               # bytes per lock-step chunk, at least
_MAX_CHUNKS = 1 << 15


def masked_crc(crc):
  """The stored form of a CRC (an int, or a numpy uint32 array of them)."""
  return (((crc >> 15) | (crc << 17)) + MASK_DELTA) & _ALL_ONES


def unmasked_crc(masked):
  rotated = (masked - MASK_DELTA) & _ALL_ONES
  return ((rotated >> 17) | (rotated << 15)) & _ALL_ONES


def _advance_bytewise(register, data):
  table = CRC32C_TABLE
  for byte in data:
    register = table[(register ^ byte) & 0xFF] ^ (register >> 8)
  return register


def crc32c_bytewise(data, crc=0):
  """CRC-32C of bytes one table step per byte; `crc`: the CRC of bytes before these."""
  return _advance_bytewise(crc ^ _ALL_ONES, bytearray(data)) ^ _ALL_ONES


def crc32c(data, crc=0):
  """CRC-32C of a bytes-like object (any size); `crc`: the CRC of bytes before these,
  so crc32c(b, crc32c(a)) == crc32c(a + b)."""
  view = memoryview(data).cast("B")
  return _advance(crc ^ _ALL_ONES, np.frombuffer(view, dtype=np.uint8)) ^ _ALL_ONES


def _advance(register, data):
  """The raw register after the uint8 array `data`."""
  n = data.size
  if n < _BYTEWISE_LIMIT:
    return _advance_bytewise(register, data.tobytes())
  chunks = min(1 << (int(n // _MIN_CHUNK).bit_length() - 1), _MAX_CHUNKS)
  words_per_chunk = n // (4 * chunks)
  chunk_bytes = 4 * words_per_chunk
  body = chunks * chunk_bytes
  # [word position, chunk]: each numpy step below reads one contiguous row.
  words = np.ascontiguousarray(
      data[:body].view("<u4").reshape(chunks, words_per_chunk).T)
  registers = np.zeros(chunks, dtype=np.uint32)
  registers[0] = register
  t0, t1, t2, t3 = _T0, _T1, _T2, _T3
  for row in words:
    x = registers ^ row
    registers = t3[x & 0xFF] ^ t2[(x >> 8) & 0xFF] ^ t1[(x >> 16) & 0xFF] ^ t0[x >> 24]
  shift = _zeros_operator(chunk_bytes)
  while registers.size > 1:
    registers = _apply(shift, registers[0::2]) ^ registers[1::2]
    shift = _compose(shift, shift)
  return _advance(int(registers[0]), data[body:])


# A linear map on 32-bit registers is kept as its 32 column images (image of bit i).
_BITS = np.arange(32, dtype=np.uint32)
_BYTE_BITS = ((np.arange(256)[:, None] >> np.arange(8)[None, :]) & 1).astype(bool)


def _byte_tables(columns):
  """[4, 256]: the map's image of byte value b at byte position p of the register."""
  tables = np.zeros((4, 256), dtype=np.uint32)
  for position in range(4):
    images = columns[8 * position:8 * position + 8]
    tables[position] = np.bitwise_xor.reduce(np.where(_BYTE_BITS, images[None, :], 0), axis=1)
  return tables


def _apply(columns, registers):
  tables = _byte_tables(columns)
  return (tables[0][registers & 0xFF] ^ tables[1][(registers >> 8) & 0xFF]
          ^ tables[2][(registers >> 16) & 0xFF] ^ tables[3][registers >> 24])


def _compose(outer, inner):
  """Columns of outer(inner(x))."""
  return _apply(outer, inner)


_IDENTITY = (np.uint32(1) << _BITS).astype(np.uint32)
_ZERO_BYTE = CRC32C_TABLE_NP[_IDENTITY & 0xFF] ^ (_IDENTITY >> 8)   # one zero byte appended


def _zeros_operator(n_bytes):
  """Columns of the map "append n_bytes zero bytes" (square and multiply)."""
  result, power = _IDENTITY, _ZERO_BYTE
  while n_bytes:
    if n_bytes & 1:
      result = _compose(power, result)
    n_bytes >>= 1
    if n_bytes:
      power = _compose(power, power)
  return result


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
    table = CRC32C_TABLE_NP
    rows = [r for r in self._by_distance]
    if not rows:
      rows.append(table.copy())                    # last byte: one table step from state 0
    while len(rows) < width:
      prev = rows[-1]                              # one more zero byte after it
      rows.append(table[prev & 0xFF] ^ (prev >> 8))
    self._by_distance = np.array(rows, dtype=np.uint32)
    constants = self._length_constant.tolist()
    state = constants[-1] ^ _ALL_ONES
    while len(constants) <= width:
      state = CRC32C_TABLE[state & 0xFF] ^ (state >> 8)
      constants.append(state ^ _ALL_ONES)
    self._length_constant = np.array(constants, dtype=np.uint32)

  def __call__(self, payloads, rows_per_batch=2048):
    """CRC-32Cs (list of int) of a list of bytes objects."""
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
