"""The ONNX project's conformance tests through `convnet run` (scripts/onnx_conformance.py): no
selected test may fail (wrong values or a crash). Refusals (a clean one-line error for an
operator form convnet does not support: 3-D pooling and ConvTranspose, empty tensors)
are allowed here and listed in docs/onnx.md. The nine light/ models are slow-marked."""
import importlib.util
import pathlib

import pytest

from conftest import ROOT

SCRIPT = ROOT / "scripts" / "onnx_conformance.py"


def load_script():
    spec = importlib.util.spec_from_file_location("onnx_conformance", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


conf = load_script()
# Known failure: light_squeezenet's weights are all 0.02, so its 1000 logits are mathematically
# equal (~9.5e9, where one float ulp is 1024) and the reference softmax is exactly 0.001 each.
# OpenBLAS 0.3.21's sgemm (Haswell/Zen kernels) rounds some output columns of the same product
# differently (a standalone cblas_sgemm with equal weight columns shows it), so convnet's conv10
# logits differ by 1024-2048 and the softmax of the lower ones underflows to 0. onnxruntime's MLAS
# and the ONNX reference sum every column alike. Details in docs/onnx.md.
KNOWN_FAILURES = {"squeezenet"}
# The same on AVX-512 machines for three more light models: their logits are mathematically equal
# too (~1e9), and OpenBLAS 0.3.21's SkylakeX/Cooperlake sgemm kernels round some columns of a
# product differently from the others (the last 8 of 1000, or a block of 512), so those columns
# take all of the softmax or none of it (measured on an AMD EPYC with AVX-512).
# With OPENBLAS_CORETYPE=Haswell all three pass. Our own column-uniform GEMM kernel is the fix.
AVX512_KNOWN_FAILURES = {"inception_v1", "resnet50", "zfnet512"}


def openblas_core():
    """The kernel family OpenBLAS chose for this CPU (what convnet's sgemm runs), or ""."""
    import ctypes
    try:
        lib = ctypes.CDLL("libopenblas.so.0")
        lib.openblas_get_corename.restype = ctypes.c_char_p
        return lib.openblas_get_corename().decode()
    except (OSError, AttributeError):
        return ""


def known_failure(name):
    if name in KNOWN_FAILURES:
        return "equal logits of 9.5e9; OpenBLAS column rounding"
    core = openblas_core()
    avx512 = core.lower() in ("skylakex", "cooperlake", "sapphirerapids")
    if name in AVX512_KNOWN_FAILURES and avx512:
        return f"equal logits of ~1e9; OpenBLAS {core} kernels round edge columns differently"
    return None


def node_tests(shared):
    if not (shared / "onnx").is_dir():
        return []
    return [pytest.param(test_dir, id=f"{suite}/{test_dir.name}")
            for suite, test_dir, _ in conf.select(str(shared), None)]


def pytest_generate_tests(metafunc):
    from conftest import SHARED
    if "node_test" in metafunc.fixturenames:
        metafunc.parametrize("node_test", node_tests(SHARED) or [None])
    if "light_model" in metafunc.fixturenames:
        tests = list(conf.light_tests(str(SHARED), None)) if (SHARED / "onnx").is_dir() else []
        metafunc.parametrize("light_model", [pytest.param(t, id=t[0]) for t in tests] or [None])


def test_node(convnet_bin, node_test):
    if node_test is None:
        pytest.skip("ONNX conformance data not present")
    status, msg = conf.run_test(convnet_bin, node_test)
    assert status != "failed", msg


@pytest.mark.slow
def test_light_model(convnet_bin, light_model):
    if light_model is None:
        pytest.skip("ONNX light models not present")
    name, path, tol = light_model
    status, msg = conf.run_light(convnet_bin, path, tol)
    why = known_failure(name)
    if why and status == "failed":
        pytest.xfail(f"{name}: {msg} ({why})")
    assert status == "passed", msg
