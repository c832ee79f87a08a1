"""weights_close.py A.cnm B.cnm TOL: exits 0 when every float32 tensor of two convnet models
(.cnm: safetensors layout) agrees within TOL relative, |a - b| <= TOL * max|a| per tensor, and
prints the largest such difference. Standard library only (the CLI tests need no venv)."""
import array
import json
import struct
import sys


def tensors(path):
    data = open(path, "rb").read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    base = 8 + n
    out = {}
    for name, t in header.items():
        if name == "__metadata__" or t["dtype"] != "F32":
            continue
        lo, hi = t["data_offsets"]
        values = array.array("f")
        values.frombytes(data[base + lo:base + hi])
        if sys.byteorder != "little":
            values.byteswap()
        out[name] = values
    return out


def main():
    a, b, tol = tensors(sys.argv[1]), tensors(sys.argv[2]), float(sys.argv[3])
    if a.keys() != b.keys():
        print("the models hold different tensors")
        return 1
    worst, where = 0.0, ""
    for name, x in a.items():
        y = b[name]
        scale = max((abs(v) for v in x), default=0.0) or 1.0
        diff = max((abs(p - q) for p, q in zip(x, y)), default=0.0) / scale
        if diff > worst:
            worst, where = diff, name
    print(f"largest relative difference {worst:.3g} ({where})")
    return 0 if worst <= tol else 1


sys.exit(main())
