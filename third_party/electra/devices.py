"""Which GPUs this process can train on, and why none: TensorFlow's CUDA start, made quiet.

Without an NVIDIA driver TensorFlow logs "failed call to cuInit: UNKNOWN ERROR (303)" as an
error the first time a process asks for devices (a session, a device list), although
nothing is wrong for a CPU run. The first such call runs here with those lines kept out of
the log; the trainer prints its own device line instead, and the cause when there is no GPU.
"""
import os
import re
import sys
import tempfile

import tensorflow.compat.v1 as tf

# TensorFlow's log lines from starting CUDA. Without an NVIDIA driver it logs "failed call
# to cuInit: UNKNOWN ERROR (303)" as an error although nothing is wrong for a CPU run; the
# trainer's device line says what matters instead.
_CUDA_START_LINE = re.compile(r"cuInit|cuda_diagnostics\.cc")


def run_capturing_stderr(fn):
  """fn()'s result, and the lines the process (C++ included) wrote to stderr meanwhile."""
  sys.stderr.flush()
  saved = os.dup(2)
  captured = tempfile.TemporaryFile()
  os.dup2(captured.fileno(), 2)
  try:
    result = fn()
  finally:
    os.dup2(saved, 2)
    os.close(saved)
    captured.seek(0)
    lines = captured.read().decode("utf-8", "replace").splitlines(True)
    captured.close()
    sys.stderr.write("".join(l for l in lines if not _CUDA_START_LINE.search(l)))
    sys.stderr.flush()
  return result, "".join(l for l in lines if _CUDA_START_LINE.search(l))


def local_gpus():
  """[(name, description)] of the GPUs a session of this process gets, and why none.

  The first device query starts CUDA (once per process): it runs here with TensorFlow's
  CUDA start-up lines kept out of the log.
  """
  def query():
    if not tf.config.experimental.list_physical_devices("GPU"):
      return []
    # The driver sees GPUs; whether TensorFlow can use them (CUDA and cuDNN libraries,
    # compute capability) shows only when devices are made, as a session makes them.
    from tensorflow.python.client import device_lib  # pylint: disable=import-outside-toplevel
    return [(d.name, d.physical_device_desc) for d in device_lib.list_local_devices()
            if d.device_type == "GPU"]
  gpus, cuda_log = run_capturing_stderr(query)
  return gpus, None if gpus else no_gpu_cause(cuda_log)


def no_gpu_cause(cuda_log):
  visible = os.environ.get("CUDA_VISIBLE_DEVICES")
  if visible is not None and visible.strip() in ("", "-1"):
    return "CUDA_VISIBLE_DEVICES=%r hides every GPU" % visible
  if not tf.test.is_built_with_cuda():
    return "this TensorFlow is built without CUDA (the GPU build is tensorflow-gpu)"
  if not os.path.exists("/proc/driver/nvidia/version"):
    return ("no NVIDIA driver (/proc/driver/nvidia/version does not exist; a container "
            "needs docker run --gpus)")
  failed = re.search(r"failed call to cuInit: (.*)", cuda_log)
  also = "; CUDA_VISIBLE_DEVICES=%r" % visible if visible is not None else ""
  if failed:
    return "the NVIDIA driver could not start CUDA (cuInit: %s)%s" % (failed.group(1).strip(),
                                                                      also)
  from tensorflow.python.platform import build_info  # pylint: disable=import-outside-toplevel
  return ("CUDA/cuDNN libraries not found: this TensorFlow needs CUDA %s and cuDNN %s "
          "libraries on the library path (LD_LIBRARY_PATH), as the Docker image has them%s"
          % (getattr(build_info, "cuda_version_number", "?"),
             getattr(build_info, "cudnn_version_number", "?"), also))


def gpu_text(name, description):
  fields = dict(part.split(": ", 1) for part in description.split(", ") if ": " in part)
  text = "%s %s" % (name.replace("/device:", ""), fields.get("name", description))
  if "compute capability" in fields:
    text += " (compute capability %s)" % fields["compute capability"]
  return text
