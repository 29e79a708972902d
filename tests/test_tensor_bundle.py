"""tensor_bundle (TF checkpoints without TF) and crc32c against TensorFlow 1.15 itself:
TF reads and restores what we write, we read what TF writes bit for bit, our files are
byte-identical to TF's, and damaged files are one CheckpointError naming the file."""
import os
import random
import shutil
import subprocess
import sys

import numpy as np
import pytest

from conftest import PY_MODERN, REPO

sys.path.insert(0, os.path.join(REPO, "third_party", "electra"))
import crc32c  # noqa: E402
import tensor_bundle  # noqa: E402
import tfrecord_io  # noqa: E402

TINY_PREFIX = os.path.join(REPO, "tests", "conformance", "converter", "tiny-ckpt", "model.ckpt-40")
DATA = ".data-00000-of-00001"


def tf1():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow.compat.v1 as tf
    tf.logging.set_verbosity(tf.logging.ERROR)
    return tf


def sample_tensors(n_variables=300, seed=0):
    """ELECTRA-like names and dtypes: float32 weights, int64 global_step (0-d), an int32
    scalar and vector, an empty tensor, and one tensor over 8 MB."""
    rng = np.random.RandomState(seed)
    tensors = {}
    for i in range(n_variables):
        name = "electra/encoder/layer_%d/attention/self/w%d" % (i % 12, i)
        tensors[name] = rng.randn(*[(3, 5), (7,), (2, 2, 2)][i % 3]).astype(np.float32)
        tensors[name + "/adam_m"] = rng.randn(*tensors[name].shape).astype(np.float32)
    tensors["global_step"] = np.int64(1234567890123)
    tensors["count_i32"] = np.int32(-7)
    tensors["ids_i32"] = np.arange(-5, 5, dtype=np.int32)
    tensors["empty"] = np.zeros((0, 4), np.float32)
    tensors["big/embeddings"] = rng.randn(2100, 1024).astype(np.float32)   # 8.6 MB
    return tensors


def tf_save(prefix, tensors):
    """TF's own SaveV2 of the same tensors, in a graph of constants."""
    tf = tf1()
    names = sorted(tensors)
    with tf.Graph().as_default(), tf.Session() as session:
        session.run(tf.raw_ops.SaveV2(prefix=prefix, tensor_names=names,
                                      shape_and_slices=[""] * len(names),
                                      tensors=[tf.constant(tensors[n]) for n in names]))


def assert_same_arrays(got, want):
    assert list(got) == sorted(want)
    for name, value in want.items():
        value = np.asarray(value)
        assert got[name].dtype == value.dtype and got[name].shape == value.shape, name
        assert got[name].tobytes() == value.tobytes(), name


def test_our_checkpoint_is_tfs_byte_for_byte_and_tf_reads_and_restores_it(tmp_path):
    tf = tf1()
    tensors = sample_tensors()
    ours, theirs = str(tmp_path / "ours" / "model.ckpt-5"), str(tmp_path / "tf" / "model.ckpt-5")
    os.makedirs(os.path.dirname(ours))
    tensor_bundle.write_checkpoint(ours, tensors)
    tf_save(theirs, tensors)
    for suffix in (".index", DATA):
        with open(ours + suffix, "rb") as a, open(theirs + suffix, "rb") as b:
            assert a.read() == b.read(), suffix
    assert sorted(os.listdir(os.path.dirname(ours))) == ["model.ckpt-5" + DATA,
                                                         "model.ckpt-5.index"]
    listed = dict(tf.train.list_variables(ours))
    assert listed == {n: list(np.shape(v)) for n, v in tensors.items()}
    reader = tf.train.load_checkpoint(ours)
    assert_same_arrays({n: reader.get_tensor(n) for n in sorted(listed)}, tensors)
    # A graph with these variables restores from it.
    names = ["global_step", "count_i32", "big/embeddings", "electra/encoder/layer_0/attention/"
             "self/w0"]
    with tf.Graph().as_default(), tf.Session() as session:
        variables = [tf.Variable(tf.zeros_like(tensors[n]), name=n) for n in names]
        tf.train.Saver(variables).restore(session, ours)
        for name, value in zip(names, session.run(variables)):
            assert np.array_equal(value, tensors[name]) and value.dtype == tensors[name].dtype


def test_we_read_tf_written_checkpoints_bit_for_bit(tmp_path):
    tf = tf1()
    reader = tf.train.NewCheckpointReader(TINY_PREFIX)
    ours = tensor_bundle.read_checkpoint(TINY_PREFIX)
    assert len(ours) == 247
    assert_same_arrays(ours, {n: reader.get_tensor(n) for n in reader.get_variable_to_shape_map()})
    assert ours["global_step"].shape == () and ours["global_step"].dtype == np.int64
    listed = tensor_bundle.list_variables(TINY_PREFIX)
    assert [(n, s) for n, s, _ in listed] == sorted(
        (n, s) for n, s in reader.get_variable_to_shape_map().items())
    # A Saver's checkpoint of variables (0-d int64 global step, int32, float32).
    tensors = sample_tensors(n_variables=20, seed=1)
    with tf.Graph().as_default(), tf.Session() as session:
        for name, value in tensors.items():
            tf.Variable(value, name=name)
        session.run(tf.global_variables_initializer())
        prefix = tf.train.Saver().save(session, str(tmp_path / "model.ckpt"), global_step=3)
    assert_same_arrays(tensor_bundle.read_checkpoint(prefix), tensors)
    assert list(tensor_bundle.read_checkpoint(prefix, ["global_step", "count_i32"])) == [
        "count_i32", "global_step"]
    with pytest.raises(tensor_bundle.CheckpointError, match="has no tensor nope"):
        tensor_bundle.read_checkpoint(prefix, ["nope"])


def test_index_of_several_blocks_matches_tf(tmp_path):
    """Over 256 KB of entries: several data blocks and index keys shortened as TF does."""
    tensors = {"scope_%04d/%s" % (i, "x" * (i % 90)): np.float32(i) for i in range(5000)}
    ours, theirs = str(tmp_path / "ours"), str(tmp_path / "theirs")
    tensor_bundle.write_checkpoint(ours, tensors)
    tf_save(theirs, tensors)
    with open(ours + ".index", "rb") as a, open(theirs + ".index", "rb") as b:
        index = a.read()
        assert index == b.read()
    assert len(index) > tensor_bundle.BLOCK_SIZE     # two data blocks at least
    assert_same_arrays(tensor_bundle.read_checkpoint(theirs), tensors)


def damaged_copy(tmp_path, suffix, change):
    directory = tmp_path / "damaged"
    directory.mkdir()
    for s in (".index", DATA):
        shutil.copyfile(TINY_PREFIX + s, str(directory / ("model.ckpt-40" + s)))
    path = str(directory / ("model.ckpt-40" + suffix))
    with open(path, "rb") as f:
        data = bytearray(f.read())
    with open(path, "wb") as f:
        f.write(change(data))
    return str(directory / "model.ckpt-40"), path


def flip(position):
    def change(data):
        data[position if position >= 0 else len(data) + position] ^= 0x10
        return data
    return change


@pytest.mark.parametrize("suffix,change,words", [
    (DATA, lambda d: d[:1000], ["is truncated: 1000 of 14658644 bytes"]),
    (DATA, flip(5000000), ["is corrupt: checksum mismatch in tensor"]),
    (".index", lambda d: d[:4000], ["is not a checkpoint index"]),
    (".index", lambda d: d[:20], ["is truncated: 20 bytes"]),
    (".index", flip(300), ["is corrupt: checksum mismatch in its data block"]),
    (".index", flip(-45), ["is corrupt"]),
])
def test_damaged_checkpoint_is_one_error_naming_the_file(tmp_path, suffix, change, words):
    prefix, path = damaged_copy(tmp_path, suffix, change)
    with pytest.raises(tensor_bundle.CheckpointError) as info:
        tensor_bundle.verify_checkpoint(prefix)
    message = str(info.value)
    assert path in message and "\n" not in message, message
    for word in words:
        assert word in message
    assert isinstance(info.value, ValueError)


def test_failed_write_leaves_no_checkpoint_and_no_temporary_files(tmp_path):
    """A file size limit (EFBIG, as a full disk's ENOSPC) stops the data file's write."""
    code = ("import resource, signal, sys, numpy as np\n"
            "sys.path.insert(0, %r)\n"
            "import tensor_bundle\n"
            "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
            "resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))\n"
            "try:\n"
            "    tensor_bundle.write_checkpoint(%r, {'w': np.zeros(1 << 20, np.float32)})\n"
            "except OSError as e:\n"
            "    print('OSError', e.errno)\n"
            % (os.path.join(REPO, "third_party", "electra"), str(tmp_path / "model.ckpt-1")))
    out = subprocess.run([sys.executable, "-c", code], stdout=subprocess.PIPE,
                         universal_newlines=True, check=True).stdout
    assert out.startswith("OSError"), out
    assert os.listdir(str(tmp_path)) == []


def test_checkpoint_state_keeps_the_newest_and_tf_reads_it(tmp_path):
    tf = tf1()
    model_dir = str(tmp_path)
    (tmp_path / "notes.txt").write_text("the user's")
    for step in (10, 20, 30):
        prefix = os.path.join(model_dir, "model.ckpt-%d" % step)
        tensor_bundle.write_checkpoint(prefix, {"global_step": np.int64(step)})
        (tmp_path / ("model.ckpt-%d.meta" % step)).write_bytes(b"meta")
        tensor_bundle.update_checkpoint_state(model_dir, prefix, keep_checkpoint_max=2)
    assert sorted(os.listdir(model_dir)) == [
        "checkpoint", "model.ckpt-20" + DATA, "model.ckpt-20.index", "model.ckpt-20.meta",
        "model.ckpt-30" + DATA, "model.ckpt-30.index", "model.ckpt-30.meta", "notes.txt"]
    state = tf.train.get_checkpoint_state(model_dir)
    assert state.model_checkpoint_path == os.path.join(model_dir, "model.ckpt-30")
    assert list(state.all_model_checkpoint_paths) == [
        os.path.join(model_dir, "model.ckpt-%d" % s) for s in (20, 30)]
    assert tf.train.latest_checkpoint(model_dir) == os.path.join(model_dir, "model.ckpt-30")
    with open(os.path.join(model_dir, "checkpoint")) as f:
        assert f.read() == ('model_checkpoint_path: "model.ckpt-30"\n'    # as TF 1.15 writes it
                            'all_model_checkpoint_paths: "model.ckpt-20"\n'
                            'all_model_checkpoint_paths: "model.ckpt-30"\n')
    assert tensor_bundle.latest_checkpoint(model_dir) == os.path.join(model_dir, "model.ckpt-30")
    os.remove(os.path.join(model_dir, "checkpoint"))
    os.remove(os.path.join(model_dir, "model.ckpt-30" + DATA))     # incomplete: skipped
    assert tensor_bundle.latest_checkpoint(model_dir) == os.path.join(model_dir, "model.ckpt-20")


def test_tf_saver_state_file_reads_as_tf_reads_it(tmp_path):
    tf = tf1()
    with tf.Graph().as_default(), tf.Session() as session:
        tf.Variable(1.0, name="w")
        session.run(tf.global_variables_initializer())
        saver = tf.train.Saver(max_to_keep=2, save_relative_paths=True)
        for step in (1, 2, 3):
            saver.save(session, str(tmp_path / "model.ckpt"), global_step=step)
    state = tensor_bundle.read_checkpoint_state(str(tmp_path))
    assert state["model_checkpoint_path"] == "model.ckpt-3"
    assert state["all_model_checkpoint_paths"] == ["model.ckpt-2", "model.ckpt-3"]
    assert tensor_bundle.latest_checkpoint(str(tmp_path)) == str(tmp_path / "model.ckpt-3")


@pytest.mark.parametrize("seed", [0, 1])
def test_fast_crc_equals_the_bytewise_definition(seed):
    rng = random.Random(seed)
    lengths = [0, 1, 3, 4095, 4096, 4097, 100000] + [rng.randrange(100001) for _ in range(12)]
    for length in lengths:
        data = bytes(rng.getrandbits(8) for _ in range(length))
        assert crc32c.crc32c(data) == crc32c.crc32c_bytewise(data), length
        cut = rng.randrange(length + 1)
        assert crc32c.crc32c(data[cut:], crc32c.crc32c(data[:cut])) == crc32c.crc32c(data)
    assert crc32c.crc32c(b"123456789") == 0xE3069283
    assert crc32c.unmasked_crc(crc32c.masked_crc(0xE3069283)) == 0xE3069283


def test_fast_crc_frames_records_tf_accepts(tmp_path):
    """TF's TFRecord reader checks every record's CRC: records framed with the large-buffer
    CRC (payloads of 5 KB to 3 MB) read back."""
    tf = tf1()
    rng = np.random.RandomState(3)
    payloads = [rng.bytes(n) for n in (5000, 70001, 3 << 20)]
    path = str(tmp_path / "records.tfrecord")
    with open(path, "wb") as f:
        f.write(tfrecord_io.frame_records(payloads, [crc32c.crc32c(p) for p in payloads]))
    assert list(tf.io.tf_record_iterator(path)) == payloads


def test_python_3_11_writes_and_reads_without_tensorflow(tmp_path):
    if not os.path.exists(PY_MODERN):
        pytest.skip("no .venv-modern")
    code = ("import sys, numpy as np\n"
            "sys.path.insert(0, %r)\n"
            "import tensor_bundle\n"
            "tensor_bundle.write_checkpoint(%r, {'a/b': np.arange(6, dtype=np.float32)"
            ".reshape(2, 3), 'global_step': np.int64(9)})\n"
            "print(sorted(tensor_bundle.read_checkpoint(%r, ['global_step']).items()))\n"
            "print('tensorflow' in sys.modules)\n"
            % (os.path.join(REPO, "third_party", "electra"), str(tmp_path / "c"),
               str(tmp_path / "c")))
    out = subprocess.run([PY_MODERN, "-c", code], stdout=subprocess.PIPE,
                         universal_newlines=True, check=True).stdout
    assert out == "[('global_step', array(9))]\nFalse\n"
    tf = tf1()
    assert tf.train.load_checkpoint(str(tmp_path / "c")).get_tensor("a/b").tolist() == [
        [0, 1, 2], [3, 4, 5]]
