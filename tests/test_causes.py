"""Expected failures keep their cause (``--traceback`` shows it), and a bug is not reported as
one of them: an unreadable or mismatched checkpoint is a ``CheckpointError`` raised from what
the framework raised; any other exception propagates unchanged."""

import errno

import pytest

torch = pytest.importorskip("torch")
tf = pytest.importorskip("tensorflow")

from shared.parity.weights import WeightsError  # noqa: E402
from shared.run.errors import CheckpointError, CheckpointWriteError  # noqa: E402

SMALL = {"encoder": "small_cnn", "hidden_dim": 16, "proj_dim": 8}


def test_one_checkpoint_error_importable_from_both_frameworks():
    from tf_impl.checkpoint import CheckpointError as TfError
    from torch_impl.checkpoint import CheckpointError as TorchError

    assert TorchError is TfError is CheckpointError


def _tf_simclr(**kw):
    from tf_impl.simclr import SimCLR

    model = SimCLR(**{**SMALL, **kw})
    x = tf.zeros((2, 32, 32, 3))
    model(x, x)
    return model


def _tf_moco():
    from tf_impl.moco import MoCo

    model = MoCo(**SMALL, queue_size=8)
    x = tf.zeros((2, 32, 32, 3))
    model.encoder_q(x)
    model.encoder_k(x)
    return model


@pytest.fixture(scope="module")
def tf_run(tmp_path_factory):
    """A run directory with one TF SimCLR checkpoint, and its prefix."""
    from tf_impl.checkpoint import save_checkpoint

    run = tmp_path_factory.mktemp("tf_run")
    return run, save_checkpoint(run, 1, _tf_simclr())


def _damaged(tf_run, tmp_path, damage):
    import shutil

    run, prefix = tf_run
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    (data,) = (copy / "ckpt").glob("ckpt-1.data-*")
    damage(data)
    return copy


@pytest.mark.parametrize(
    "damage, cause",
    [
        (lambda p: p.write_bytes(b"garbage"), IndexError),  # the reader's short read
        (lambda p: p.write_bytes(bytes(255 - b for b in p.read_bytes())), tf.errors.OpError),
        (lambda p: p.unlink(), tf.errors.OpError),
    ],
    ids=["truncated", "checksum", "missing"],
)
def test_tf_unreadable_checkpoint_keeps_its_cause(tf_run, tmp_path, damage, cause):
    from tf_impl.checkpoint import restore_checkpoint

    run = _damaged(tf_run, tmp_path, damage)
    with pytest.raises(CheckpointError, match="is unreadable or does not fit") as caught:
        restore_checkpoint(run, _tf_simclr())
    assert isinstance(caught.value.__cause__, cause)


@pytest.mark.parametrize(
    "build, cause",
    [(_tf_moco, AssertionError), (lambda: _tf_simclr(hidden_dim=32), ValueError)],
    ids=["another-method", "another-shape"],
)
def test_tf_mismatched_checkpoint_keeps_its_cause(tf_run, build, cause):
    from tf_impl.checkpoint import restore_checkpoint

    with pytest.raises(CheckpointError, match="does not fit this model") as caught:
        restore_checkpoint(tf_run[0], build())
    assert isinstance(caught.value.__cause__, cause)


def test_tf_restore_lets_a_bug_through(tf_run, monkeypatch):
    """A TypeError in our code (the object graph) or inside the restore is not a bad checkpoint."""
    from tf_impl import checkpoint

    def broken(*args, **kwargs):
        raise TypeError("a bug")

    model = _tf_simclr()
    monkeypatch.setattr(checkpoint, "_model_parts", broken)
    with pytest.raises(TypeError, match="a bug"):
        checkpoint.restore_checkpoint(tf_run[0], model)
    monkeypatch.undo()
    monkeypatch.setattr(tf.train.Checkpoint, "restore", broken)
    with pytest.raises(TypeError, match="a bug"):
        checkpoint.restore_checkpoint(tf_run[0], model)


def test_tf_restore_keeps_the_object_graph_names(tf_run):
    """Checkpoints name each network and MoCo's state as they always have, so old ones restore."""
    from tf_impl.checkpoint import _model_parts

    assert set(_model_parts(_tf_simclr())) == {"net"}
    assert set(_model_parts(_tf_moco())) == {"encoder_q", "encoder_k", "queue", "queue_ptr"}
    names = {name for name, _ in tf.train.list_variables(str(tf_run[1]))}
    assert any(n.startswith("model/net/w000/") for n in names)


def _torch_simclr(**kw):
    from torch_impl.simclr import SimCLR

    return SimCLR(**{**SMALL, **kw})


def test_torch_checkpoint_errors_keep_their_cause(tmp_path):
    from torch_impl.checkpoint import restore_checkpoint, save_checkpoint

    path = save_checkpoint(tmp_path, 1, _torch_simclr())
    with pytest.raises(CheckpointError, match="does not fit this model") as caught:
        restore_checkpoint(tmp_path, _torch_simclr(hidden_dim=32))
    assert isinstance(caught.value.__cause__, RuntimeError)
    path.write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="corrupt or unreadable") as caught:
        restore_checkpoint(tmp_path, _torch_simclr())
    assert caught.value.__cause__ is not None


def test_torch_write_error_keeps_its_cause(tmp_path, monkeypatch):
    from torch_impl import checkpoint

    full = OSError(errno.ENOSPC, "No space left on device")

    def write(*args, **kwargs):
        raise full

    monkeypatch.setattr(checkpoint, "atomic_write_bytes", write)
    with pytest.raises(CheckpointWriteError, match="No space left") as caught:
        checkpoint.save_checkpoint(tmp_path, 1, _torch_simclr())
    assert caught.value.__cause__ is full


def test_official_readers_keep_their_cause(tmp_path):
    from tf_impl.official import read_checkpoint as read_tf
    from torch_impl.official import read_checkpoint as read_torch

    bad = tmp_path / "bad.pth.tar"
    bad.write_bytes(b"garbage")
    with pytest.raises(WeightsError, match="not a readable .pth.tar") as caught:
        read_torch(bad, "moco")
    assert caught.value.__cause__ is not None
    with pytest.raises(WeightsError, match="not a readable TF checkpoint") as caught:
        read_tf(tmp_path / "model.ckpt-1", "simclr-tf1")
    assert isinstance(caught.value.__cause__, (tf.errors.OpError, ValueError))
