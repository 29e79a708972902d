"""TensorBoard scalars in an events file, written without TensorFlow.

An events file is TFRecords of `Event` protobufs: the first says the file version, then
one per logged step with `summary { value { tag, simple_value } }`, as the TF1 trainer's
writer produces them (TensorBoard and tf.train.summary_iterator read both alike). A
`session_log { status: START }` at a run's first step makes TensorBoard drop points that
a killed run had logged beyond the checkpoint this run resumed from.
"""
import os
import socket
import struct
import time
from typing import Dict

import tfrecord_io   # third_party/electra: framing and varints

FILE_VERSION = b"brain.Event:2"
SESSION_START = 1


def _field(number: int, wire: int) -> bytes:
    return tfrecord_io.varint((number << 3) | wire)


def _delimited(number: int, payload: bytes) -> bytes:
    return _field(number, 2) + tfrecord_io.varint(len(payload)) + payload


def _event(step: int, **parts: bytes) -> bytes:
    body = _field(1, 1) + struct.pack("<d", time.time()) + _field(2, 0) + tfrecord_io.varint(step)
    for number, payload in sorted((_EVENT_FIELDS[k], v) for k, v in parts.items()):
        body += _delimited(number, payload)
    return body


_EVENT_FIELDS = {"file_version": 3, "summary": 5, "session_log": 6}


def scalars_event(step: int, values: Dict[str, float]) -> bytes:
    summary = b"".join(
        _delimited(1, _delimited(1, tag.encode("utf-8")) + _field(2, 5) + struct.pack("<f", value))
        for tag, value in sorted(values.items()))
    return _event(step, summary=summary)


class EventWriter:
    """Appends events to `events.out.tfevents.TIME.HOST` in a model directory."""

    def __init__(self, model_dir: str):
        name = "events.out.tfevents.%d.%s" % (int(time.time()), socket.gethostname())
        self.path = os.path.join(model_dir, name)
        self._file = open(self.path, "ab")
        self._write(_event(0, file_version=FILE_VERSION))

    def _write(self, event: bytes) -> None:
        self._file.write(tfrecord_io.frame_records([event]))

    def session_start(self, step: int) -> None:
        self._write(_event(step, session_log=_field(1, 0) + tfrecord_io.varint(SESSION_START)))

    def scalars(self, step: int, values: Dict[str, float]) -> None:
        self._write(scalars_event(step, values))

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        self._file.close()
