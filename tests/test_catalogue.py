"""Each row of the framework-differences catalogue (``shared/docgen/catalogue.py``) still holds:
the difference is still there when left unaligned, and the project's alignment removes it.
A framework upgrade that changes a default makes the row's test fail, and the table is then
regenerated (``python -m shared.docgen.catalogue``) instead of rotting."""

import math

import pytest

pytest.importorskip("torch", reason="PyTorch is not installed")
pytest.importorskip("tensorflow", reason="TensorFlow is not installed")

from shared.docgen import catalogue as C  # noqa: E402

# name -> (the least effect that proves the difference, the most residue after alignment)
EXPECT = {
    "conv_padding": (0.1, 1e-12),
    "bn_running_variance": (1e-3, 1e-9),
    "bn_momentum_and_eps": (1e-3, 1e-15),
    "keras_sgd": (1e-3, 1e-13),
    "keras_adam": (1e-5, 1e-15),
    "python_float_cast": (1e-9, 0.0),
    "l2_normalize_clamp": (0.5, 1e-12),
    "init_scale": (1e-3, 0.0),
    "kernel_layout": (None, 0.0),
    "crop_resample_grid": (0.05, 1e-5),
    "contrast_jitter": (0.05, 1e-5),
    "saturation_jitter": (0.05, 1e-5),
    # agreements: the effect *is* the residue; the row fails if they stop agreeing
    "hue_rotation": (None, 1e-5),
    "resize_antialias": (None, 1e-5),
    "same_max_pool": (0.1, 0.0),
    "moco_queue_layout": (None, 0.0),
    # porting differences (rosetta localise names each: tests/test_localise_pair.py)
    "gelu_approximation": (1e-4, 1e-12),
    "layer_norm_epsilon": (1e-2, 1e-12),
    "depthwise_same_padding": (0.1, 1e-12),
    "folded_activation": (0.1, 1e-12),
    "flatten_order": (0.1, 1e-12),
}


def test_every_row_has_an_expectation():
    assert {f.__name__ for f in C.ROWS} == set(EXPECT)


@pytest.mark.parametrize("row", C.ROWS, ids=lambda f: f.__name__)
def test_catalogue_row_still_true(row):
    r = row()
    least, residue = EXPECT[row.__name__]
    if row.__name__ in C.AGREEMENTS:
        assert r["effect"] == r["aligned"], r
    elif least is not None:
        assert r["effect"] > least, r
    else:
        assert math.isnan(r["effect"])
    assert r["aligned"] <= residue, r


def test_markdown_has_one_line_per_row():
    text = C.markdown(C.measure())
    assert text.count("\n| ") == len(C.ROWS) + 1  # header + rows (the separator starts with |-)
