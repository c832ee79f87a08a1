"""Throughput of `convnet serve`: the batching server, the same server with --max-batch 1, and
offline `convnet classify` on the same photos, in alternating rounds on one machine. Prints each
round, the best of each, their ratios, and p50/p99 latency (issue 15 asks batched / single >= 1.5
and batched / offline >= 0.8). Good requests only; the load test with bad requests mixed in is
tests/serve/test_serve_load.py, whose client this reuses.

  .venv/bin/python bench/bench_serve.py [--build build] [--model FILE|ZOO] [--rounds 3]
                                         [--requests 600] [--max-batch 8] [--max-wait-ms 5]
"""
import argparse
import json
import pathlib
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "serve"))
sys.path.insert(0, str(ROOT / "bench"))

from fashion_mnist import cpu_name  # noqa: E402
from serve_client import Server  # noqa: E402
import test_serve_load as load  # noqa: E402


def main():
    shared = ROOT.parent / "shared" / "data"
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", default=str(ROOT / "build"))
    ap.add_argument("--model", default=str(shared / "weights/keras/mobilenet_v1_0.25_224.h5"))
    ap.add_argument("--images", default=str(shared / "images"))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--requests", type=int, default=600)
    ap.add_argument("--max-batch", type=int, default=8)
    ap.add_argument("--max-wait-ms", type=int, default=5)
    a = ap.parse_args()
    convnet = str(pathlib.Path(a.build).resolve() / "convnet")
    photos = sorted(str(p) for p in pathlib.Path(a.images).rglob("*") if p.is_file())
    bodies = {p: pathlib.Path(p).read_bytes() for p in photos}
    expected = load.classify_all(convnet, a.model, photos)
    print(f"CPU: {cpu_name()}; model {a.model}; {len(photos)} photos, {a.requests} requests a "
          f"round, {load.CLIENTS} clients")
    best = {"batched": None, "single": None, "offline": 0.0}
    for r in range(a.rounds):
        for kind, batch in (("batched", a.max_batch), ("single", 1)):
            with tempfile.TemporaryDirectory() as tmp:
                s = Server(convnet, ["-m", f"mnet={a.model}", "--max-batch", str(batch),
                                     "--max-wait-ms", str(a.max_wait_ms)], cwd=tmp)
                results, seconds = load.run_load(s, bodies, photos, expected, a.requests, 0)
                s.stop()
            if not all(x[2] for x in results):
                sys.exit(f"round {r}: a wrong or failed answer ({kind})")
            st = load.summary(results, seconds)
            print(f"round {r} {kind:8s} {st['good_per_s']:7.1f} images/s  p50 {st['p50_ms']:6.1f} ms"
                  f"  p99 {st['p99_ms']:6.1f} ms")
            if not best[kind] or st["good_per_s"] > best[kind]["good_per_s"]:
                best[kind] = st
        off = load.offline_rate(convnet, a.model, photos, a.requests)
        print(f"round {r} offline  {off:7.1f} images/s")
        best["offline"] = max(best["offline"], off)
    b, one, off = best["batched"]["good_per_s"], best["single"]["good_per_s"], best["offline"]
    print(json.dumps({"batched": best["batched"], "single": best["single"], "offline_per_s": off,
                      "batched_over_single": b / one, "batched_over_offline": b / off}))


if __name__ == "__main__":
    main()
