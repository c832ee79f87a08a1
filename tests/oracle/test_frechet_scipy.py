"""cn_frechet_distance against the textbook FID with scipy.linalg.sqrtm (the pytorch-fid and
TTUR formula): |mu_a - mu_b|^2 + tr(S_a + S_b - 2 sqrtm(S_a S_b)), on random features and on
rank-deficient ones (fewer samples than features), relative error <= 1e-6."""
import ctypes

import numpy as np
import pytest
import scipy.linalg


def scipy_fid(a, b):
    a, b = a.astype(np.float64), b.astype(np.float64)
    mu_a, mu_b = a.mean(0), b.mean(0)
    s_a, s_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = scipy.linalg.sqrtm(s_a @ s_b)
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(s_a) + np.trace(s_b)
                 - 2 * np.trace(root).real)


def convnet_fid(lib, a, b):
    fn = lib.cn_frechet_distance
    fn.restype = ctypes.c_int
    ptr = ctypes.POINTER(ctypes.c_float)
    fn.argtypes = [ptr, ctypes.c_int64, ptr, ctypes.c_int64, ctypes.c_int64,
                   ctypes.POINTER(ctypes.c_double)]
    a = np.ascontiguousarray(a, np.float32)
    b = np.ascontiguousarray(b, np.float32)
    out = ctypes.c_double()
    status = fn(a.ctypes.data_as(ptr), a.shape[0], b.ctypes.data_as(ptr), b.shape[0],
                a.shape[1], ctypes.byref(out))
    assert status == 0, lib.cn_last_error
    return out.value


def features(rng, n, dim, rank=None, shift=0.0):
    """n rows of correlated features, optionally of lower rank, like a ReLU layer's (>= 0)."""
    rank = rank or dim
    mix = rng.normal(size=(rank, dim))
    return np.maximum(rng.normal(size=(n, rank)) @ mix + shift, 0).astype(np.float32)


@pytest.mark.parametrize("na,nb,dim,shift", [(500, 400, 32, 0.3), (2000, 2000, 128, 0.0),
                                              (300, 300, 8, 2.0)])
def test_random_features(libconvnet, na, nb, dim, shift):
    rng = np.random.default_rng(dim)
    a, b = features(rng, na, dim), features(rng, nb, dim, shift=shift)
    want = scipy_fid(a, b)
    assert convnet_fid(libconvnet, a, b) == pytest.approx(want, rel=1e-6)


@pytest.mark.parametrize("na,nb,dim", [(20, 30, 64), (10, 10, 40), (50, 120, 100)])
def test_rank_deficient(libconvnet, na, nb, dim):
    """n < dim: the covariances are singular, where a naive sqrt of eigenvalues gives NaN."""
    rng = np.random.default_rng(na + dim)
    a, b = features(rng, na, dim), features(rng, nb, dim, shift=0.5)
    want = scipy_fid(a, b)
    assert convnet_fid(libconvnet, a, b) == pytest.approx(want, rel=1e-6)


def test_low_rank_features(libconvnet):
    """Many samples, but features that span only 5 of 30 directions (dead or tied units)."""
    rng = np.random.default_rng(7)
    mix = rng.normal(size=(5, 30))
    a = (rng.normal(size=(1000, 5)) @ mix).astype(np.float32)
    b = (rng.normal(size=(1000, 5)) @ mix * 1.5 + 0.2).astype(np.float32)
    assert convnet_fid(libconvnet, a, b) == pytest.approx(scipy_fid(a, b), rel=1e-6)
