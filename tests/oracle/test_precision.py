"""--precision bf16 against fp32 (which the other oracle tests hold to Keras, ONNX Runtime and
PyTorch): EfficientNet-Lite0 with its real weights on the 1000 ImageNet sample photos. The bar
of issue 12: top-1 agrees with fp32 on at least 99.5 % of the photos, and top-1 accuracy is
within 0.3 point. Also: the same bytes on 1 and 2 threads, and on the path of CPUs without
AVX512_BF16 the same top classes as fp32.
"""
import json
import os
import subprocess

import pytest
from conftest import SHARED


@pytest.fixture(scope="module")
def samples():
    folder = SHARED / "imagenet-samples"
    if not (folder / "labels.tsv").exists():
        pytest.skip(f"{folder}/labels.tsv not present")
    rows = [line.rstrip("\n").split("\t") for line in open(folder / "labels.tsv")][1:]
    return [str(folder / r[0]) for r in rows], [int(r[2]) for r in rows]


def classify(convnet_bin, weights, files, precision, threads=2, env=None):
    """Top-1 index and probability per file, in order."""
    proc = subprocess.run([convnet_bin, "classify", "-m", "efficientnet_lite0", "-w", str(weights),
                           "--precision", precision, "--threads", str(threads), "--json",
                           "-k", "1", *files],
                          capture_output=True, text=True, env={**os.environ, **(env or {})})
    assert proc.returncode == 0, proc.stderr[-500:]
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["file"] for r in rows] == files
    return [(r["top"][0]["index"], r["top"][0]["prob"]) for r in rows], proc.stdout


@pytest.mark.slow
def test_bf16_agrees_with_fp32(convnet_bin, lite0_weights, samples):
    files, labels = samples
    fp32, _ = classify(convnet_bin, lite0_weights, files, "fp32")
    bf16, _ = classify(convnet_bin, lite0_weights, files, "bf16")
    agree = sum(a[0] == b[0] for a, b in zip(fp32, bf16)) / len(files)
    acc32 = sum(a[0] == t for a, t in zip(fp32, labels)) / len(files)
    acc16 = sum(b[0] == t for b, t in zip(bf16, labels)) / len(files)
    prob_diff = max(abs(a[1] - b[1]) for a, b in zip(fp32, bf16))
    print(f"\nEfficientNet-Lite0 on {len(files)} photos: bf16 top-1 agrees with fp32 on "
          f"{agree:.2%}; top-1 accuracy fp32 {acc32:.1%}, bf16 {acc16:.1%}; largest change of "
          f"the top probability {prob_diff:.4f}")
    assert agree >= 0.995
    assert abs(acc32 - acc16) <= 0.003


def test_bf16_threads_and_machines(convnet_bin, lite0_weights, samples):
    """Any thread count: the same bytes. A CPU without AVX512_BF16 (CONVNET_BF16_WIDEN=1 takes
    its path here: convolutions fp32, Dense bf16 widened): the same top classes as fp32."""
    files = samples[0][::50]
    top2, two = classify(convnet_bin, lite0_weights, files, "bf16", threads=2)
    _, one = classify(convnet_bin, lite0_weights, files, "bf16", threads=1)
    widened, _ = classify(convnet_bin, lite0_weights, files, "bf16",
                          env={"CONVNET_BF16_WIDEN": "1"})
    fp32, _ = classify(convnet_bin, lite0_weights, files, "fp32")
    assert one == two
    assert [w[0] for w in widened] == [f[0] for f in fp32]
    assert max(abs(w[1] - f[1]) for w, f in zip(widened, fp32)) < 0.01
