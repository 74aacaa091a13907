"""shared.oracle.losses: vectorised vs loop oracles, finite differences, closed forms, properties, errors."""

import math
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.oracle import losses as L


def rand(seed, *shape, scale=1.0):
    return np.random.default_rng(seed).standard_normal(shape) * scale


def central_fd(f, x, eps=1e-6):
    g = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        xp, xm = x.copy(), x.copy()
        xp[idx] += eps
        xm[idx] -= eps
        g[idx] = (f(xp) - f(xm)) / (2 * eps)
    return g


@pytest.mark.parametrize("n,d,tau", [(2, 1, 0.5), (3, 4, 0.1), (5, 3, 2.0), (8, 16, 0.07)])
def test_nt_xent_matches_algorithm_1_loop(n, d, tau):
    z1, z2 = rand(n, n, d), rand(n + 100, n, d)
    assert L.nt_xent(z1, z2, tau) == pytest.approx(L.nt_xent_loop(z1, z2, tau), rel=1e-12)


@pytest.mark.parametrize("n,d,k,tau", [(1, 1, 1, 0.07), (3, 4, 7, 0.2), (6, 8, 20, 1.0)])
def test_info_nce_matches_moco_loop(n, d, k, tau):
    q, key, queue = rand(1, n, d), rand(2, n, d), rand(3, k, d)
    assert L.info_nce(q, key, queue, tau) == pytest.approx(
        L.info_nce_loop(q, key, queue, tau), rel=1e-12
    )


@pytest.mark.parametrize("tau,scale", [(0.5, 1.0), (0.1, 1.0), (2.0, 3.0), (0.2, 0.01)])
def test_nt_xent_grad_matches_finite_differences(tau, scale):
    z1, z2 = rand(10, 4, 3, scale=scale), rand(11, 4, 3, scale=scale)
    g1, g2 = L.nt_xent_grad(z1, z2, tau)
    eps = 1e-6 * scale
    np.testing.assert_allclose(
        g1, central_fd(lambda x: L.nt_xent(x, z2, tau), z1, eps), rtol=1e-6, atol=1e-9 / scale
    )
    np.testing.assert_allclose(
        g2, central_fd(lambda x: L.nt_xent(z1, x, tau), z2, eps), rtol=1e-6, atol=1e-9 / scale
    )


@pytest.mark.parametrize("tau", [0.07, 0.5, 3.0])
def test_info_nce_grad_matches_finite_differences(tau):
    q, key, queue = rand(20, 3, 4), rand(21, 3, 4), rand(22, 6, 4)
    gq, gk = L.info_nce_grad(q, key, queue, tau)
    np.testing.assert_allclose(
        gq, central_fd(lambda x: L.info_nce(x, key, queue, tau), q), rtol=1e-6, atol=1e-9
    )
    np.testing.assert_allclose(
        gk, central_fd(lambda x: L.info_nce(q, x, queue, tau), key), rtol=1e-6, atol=1e-9
    )


@pytest.mark.parametrize("n", [2, 3, 10, 64])
def test_collapsed_nt_xent_is_log_2n_minus_1(n):
    z = np.ones((n, 5))
    assert L.nt_xent(z, z, 0.3) == pytest.approx(math.log(2 * n - 1), rel=1e-12)


@pytest.mark.parametrize("k", [1, 2, 100, 4096])
def test_collapsed_info_nce_is_log_k_plus_1(k):
    x = np.full((3, 2), 0.5)
    assert L.info_nce(x, x, np.full((k, 2), 2.0), 0.07) == pytest.approx(math.log(k + 1), rel=1e-12)


@pytest.mark.parametrize("tau", [1.0, 0.5, 0.1, 0.05])
def test_orthogonal_embeddings_closed_form_and_limit(tau):
    n = 4
    eye = np.eye(n)
    want = math.log1p((2 * n - 2) * math.exp(-1 / tau))
    assert L.nt_xent(eye, eye, tau) == pytest.approx(want, rel=1e-9, abs=1e-15)
    assert L.nt_xent(eye, eye, 0.01) < 1e-12  # -> 0 as tau -> 0


def test_extreme_inputs_stay_finite():
    z1, z2 = rand(0, 6, 5, scale=1e4), rand(1, 6, 5, scale=1e4)
    val = L.nt_xent(z1, z2, 0.01)
    g1, g2 = L.nt_xent_grad(z1, z2, 0.01)
    assert np.isfinite(val) and np.all(np.isfinite(g1)) and np.all(np.isfinite(g2))
    q, k, queue = rand(2, 4, 5, scale=1e4), rand(3, 4, 5, scale=1e4), rand(4, 9, 5, scale=1e4)
    assert np.isfinite(L.info_nce(q, k, queue, 0.01))
    assert all(np.all(np.isfinite(g)) for g in L.info_nce_grad(q, k, queue, 0.01))


def test_terms_are_consistent():
    t = L.nt_xent_terms(rand(5, 3, 4), rand(6, 3, 4), 0.5)
    np.testing.assert_allclose(t.probs.sum(1), 1.0, rtol=1e-14)
    assert np.all(np.diag(t.probs) == 0)
    np.testing.assert_allclose(t.per_anchor, -np.log(t.probs[np.arange(6), t.positive]), rtol=1e-12)


# --- conventions ------------------------------------------------------------------------------
def test_official_simclr_convention_is_twice_ours_by_independent_computation():
    z1, z2, tau = rand(30, 6, 4), rand(31, 6, 4), 0.3
    t = L.nt_xent_terms(z1, z2, tau)
    n = 6
    loss_a = t.per_anchor[:n].mean()  # official: CE of the a-side anchors averaged over N
    loss_b = t.per_anchor[n:].mean()
    assert loss_a + loss_b == pytest.approx(2 * L.nt_xent(z1, z2, tau), rel=1e-12)
    assert L.CONVENTIONS["simclr_official"].compute(z1, z2, tau) == pytest.approx(loss_a + loss_b)


def test_keras_io_cross_view_is_a_different_quantity():
    z = np.ones((5, 3))
    assert L.nt_xent_cross_view(z, z, 0.5) == pytest.approx(math.log(5))  # N candidates
    assert L.nt_xent(z, z, 0.5) == pytest.approx(math.log(9))  # 2N - 1 candidates
    # by hand for N = 2: rows of S = u1 u2^T / tau
    z1, z2 = np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([[0.6, 0.8], [0.8, -0.6]])
    s = z1 @ z2.T / 0.5
    want = 0.0
    for i in range(2):
        want += (math.log(math.exp(s[i, 0]) + math.exp(s[i, 1])) - s[i, i]) / 4
        want += (math.log(math.exp(s[0, i]) + math.exp(s[1, i])) - s[i, i]) / 4
    assert L.CONVENTIONS["keras_io"].compute(z1, z2, 0.5) == pytest.approx(want, rel=1e-12)


def test_moco_v3_convention_is_4_tau_times_keras_io():
    z1, z2, tau = rand(40, 4, 3), rand(41, 4, 3), 0.2
    cv = L.nt_xent_cross_view(z1, z2, tau)
    assert L.CONVENTIONS["moco_v3"].compute(z1, z2, tau) == pytest.approx(4 * tau * cv, rel=1e-12)
    assert L.CONVENTIONS["lightly"].compute(z1, z2, tau) == pytest.approx(L.nt_xent(z1, z2, tau))


# --- hypothesis properties -------------------------------------------------------------------
dims = st.tuples(st.integers(2, 8), st.integers(1, 6))


@settings(max_examples=40, deadline=None)
@given(dims, st.integers(0, 2**31 - 1), st.floats(0.05, 5.0))
def test_nt_xent_invariances(shape, seed, tau):
    n, d = shape
    rng = np.random.default_rng(seed)
    z1, z2 = rng.standard_normal((n, d)), rng.standard_normal((n, d))
    base = L.nt_xent(z1, z2, tau)
    assert base >= 0
    perm = rng.permutation(n)
    assert L.nt_xent(z1[perm], z2[perm], tau) == pytest.approx(base, rel=1e-10)
    assert L.nt_xent(z2, z1, tau) == pytest.approx(base, rel=1e-10)
    c = rng.uniform(0.1, 10.0, (n, 1))
    assert L.nt_xent(z1 * c, z2 * c[::-1], tau) == pytest.approx(base, rel=1e-10)


@settings(max_examples=40, deadline=None)
@given(
    st.integers(1, 6),
    st.integers(1, 5),
    st.integers(1, 12),
    st.integers(0, 2**31 - 1),
    st.floats(0.05, 5.0),
)
def test_info_nce_invariances(n, d, k, seed, tau):
    rng = np.random.default_rng(seed)
    q, key, queue = (rng.standard_normal(s) for s in [(n, d), (n, d), (k, d)])
    base = L.info_nce(q, key, queue, tau)
    assert base >= 0
    assert L.info_nce(q, key, queue[rng.permutation(k)], tau) == pytest.approx(base, rel=1e-10)
    p = rng.permutation(n)
    assert L.info_nce(q[p], key[p], queue, tau) == pytest.approx(base, rel=1e-10)
    assert L.info_nce(q * 3.0, key * 0.2, queue * 7.0, tau) == pytest.approx(base, rel=1e-10)


# --- bad input -------------------------------------------------------------------------------
GOOD = np.ones((3, 2)) + np.eye(3, 2)


@pytest.mark.parametrize(
    "args,match",
    [
        ((np.ones(3), GOOD), "z1: expected a 2-D array"),
        ((GOOD, np.ones((3, 2, 1))), "z2: expected a 2-D array"),
        ((GOOD, np.ones((4, 2))), r"z2: expected the same shape as z1 \(3, 2\), got \(4, 2\)"),
        ((GOOD, np.ones((3, 5))), "z2: expected the same shape"),
        ((np.ones((1, 2)), np.ones((1, 2))), "z1: expected at least 2 rows"),
        ((np.where(np.eye(3, 2) > 0, np.nan, 1.0), GOOD), "z1: expected finite values"),
        ((GOOD, np.full((3, 2), np.inf)), "z2: expected finite values"),
        ((GOOD, np.zeros((3, 2))), "all-zero row at index 3"),
    ],
)
def test_nt_xent_bad_input(args, match):
    with pytest.raises(ValueError, match=match):
        L.nt_xent(*args, 0.5)


@pytest.mark.parametrize("tau", [0, -1.0, float("nan"), float("inf"), "hot", None])
def test_bad_temperature(tau):
    with pytest.raises(ValueError, match="temperature: expected a positive finite number"):
        L.nt_xent(GOOD, GOOD, tau)
    with pytest.raises(ValueError, match="temperature"):
        L.info_nce(GOOD, GOOD, GOOD, tau)


@pytest.mark.parametrize(
    "q,k,queue,match",
    [
        (np.ones((0, 2)), np.ones((0, 2)), GOOD, "q: expected at least 1 rows"),
        (GOOD, GOOD, np.ones((0, 2)), "queue: expected at least 1 rows"),
        (GOOD, GOOD, np.ones((4, 3)), r"queue: expected shape \(K, 2\)"),
        (GOOD, np.ones((2, 2)), GOOD, "k: expected the same shape as q"),
        (GOOD, GOOD, np.full((2, 2), np.nan), "queue: expected finite values"),
        (GOOD, GOOD, np.zeros((2, 2)), "queue: expected rows with non-zero norm"),
        (GOOD, GOOD, np.ones(2), "queue: expected a 2-D array"),
    ],
)
def test_info_nce_bad_input(q, k, queue, match):
    with pytest.raises(ValueError, match=match):
        L.info_nce(q, k, queue, 0.07)


def test_raw_cosine_ratio_as_quoted_against_a_loop():
    """The quoted formula, one anchor at a time: -log(1 / (1 + sum_j cos(z2_j, z1_i)))."""
    z1, z2 = rand(11, 4, 3), rand(12, 4, 3)
    for i, got in enumerate(L.raw_cosine_ratio_as_quoted(z1, z2)):
        cos = [z1[i] @ b / (np.linalg.norm(z1[i]) * np.linalg.norm(b)) for b in z2]
        den = 1.0 + sum(cos)
        want = -math.log(1.0 / den) if den > 0 else math.nan
        np.testing.assert_allclose(got, want, rtol=1e-12, equal_nan=True)
    # the closed form of worked example (g): unit rows, row 0 at 1 + 0.6 - 0.8 = 0.8
    got = L.raw_cosine_ratio_as_quoted([[1.0, 0.0], [0.0, 1.0]], [[0.6, 0.8], [-0.8, 0.6]])
    np.testing.assert_allclose(got, [math.log(0.8), math.log(2.4)], rtol=1e-12)
    with pytest.raises(ValueError, match="z2: expected rows with non-zero norm"):
        L.raw_cosine_ratio_as_quoted(np.ones((2, 2)), np.zeros((2, 2)))


def test_importing_shared_imports_no_framework_and_the_oracle_no_app():
    code = (
        "import sys, importlib, pkgutil, shared, shared.apps\n"
        "del sys.modules['shared.apps']\n"
        "for m in pkgutil.iter_modules(shared.__path__):\n"
        "    if m.name != 'apps': importlib.import_module('shared.' + m.name)\n"
        "assert not [m for m in sys.modules if m.startswith('shared.apps')], 'the oracle imports an app'\n"
        "for m in pkgutil.iter_modules(shared.apps.__path__):\n"
        "    importlib.import_module('shared.apps.' + m.name)\n"
        "bad = [m for m in ('torch', 'tensorflow', 'torchvision', 'keras') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
