#!/usr/bin/env python3
"""convnet against ONNX Runtime (and PyTorch eager) on the same ONNX files, inputs and threads.

For ResNet50, MobileNetV2, InceptionV3 and VGG16, PyTorch builds the model (bench/torch_models.py:
random weights with a fixed seed, BatchNorm statistics calibrated then randomised) and exports it
once with torch.onnx.export (opset 13, dynamic batch) into a cache directory outside the repo.
Then, per model and batch size, on the same NCHW input in [-1, 1]:

- ONNX Runtime runs the file (intra_op threads = --threads, inter_op 1, sequential, all graph
  optimizations) and PyTorch runs the module (torch.set_num_threads(--threads));
- convnet loads the same .onnx in bench/profile_forward.c --serve (one process per model and
  batch, the model loaded once, one untimed forward), its idle threads' spin chosen as the CLI
  chooses it (cn_prefer_passive_waiting: long when nothing else is runnable at its start, short
  otherwise; docs/cli.md), and times one cn_model_forward_multi call per request; it writes its
  output for the check.

All three are interleaved: one call of each per round, --warmup rounds first, then the median of
--repeat rounds, so that drift in the load of this shared machine hits every engine alike.

The ratios convnet/ORT and convnet/PyTorch are printed (lower is better) with max |diff| of the
outputs against ORT's. See bench/README.md."""
import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

# PyTorch's CPU threads are libgomp's, like convnet's: with the default (active) wait policy, the
# idle thread spins and, on this oversubscribed shared machine, MobileNetV2 took 3.3 s instead of
# 0.14 s per forward. PyTorch gets the passive policy (set before torch loads libgomp), convnet
# the CLI's short spin (ConvnetDriver); ORT has its own pool.
os.environ.setdefault("OMP_WAIT_POLICY", "passive")
ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
ORDER = ["resnet50", "mobilenet_v2", "inception_v3", "vgg16"]
ALIASES = {"inceptionv3": "inception_v3", "mobilenetv2": "mobilenet_v2"}


def default_cache():
    env = os.environ.get("CONVNET_BENCH_CACHE")
    if env:
        return env
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "convnet", "bench-onnx")


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", default=",".join(ORDER), help="comma-separated: " + ", ".join(ORDER))
    p.add_argument("--batches", default="1,8", help="comma-separated batch sizes")
    p.add_argument("--threads", type=int, default=2, help="threads for every engine")
    p.add_argument("--repeat", type=int, default=3, help="timed rounds (median)")
    p.add_argument("--warmup", type=int, default=1, help="untimed rounds first")
    p.add_argument("--tol", type=float, default=1e-4,
                   help="max |convnet - ORT| allowed, relative to max |ORT output| (at least 1)")
    p.add_argument("--cache", default=default_cache(),
                   help="where the exported .onnx files are kept (default $CONVNET_BENCH_CACHE, "
                        "else $XDG_CACHE_HOME/convnet/bench-onnx)")
    p.add_argument("--driver", default=os.environ.get("CN_BENCH_DRIVER",
                                                      str(ROOT / "build-prof" / "profile_forward")),
                   help="bench/profile_forward built with bench/CMakeLists.txt (default "
                        "$CN_BENCH_DRIVER or build-prof/profile_forward)")
    p.add_argument("--ort-spinning", action="store_true",
                   help="let ORT's idle workers spin (its default); without it they sleep, as "
                        "PyTorch's do with OMP_WAIT_POLICY=passive")
    p.add_argument("--gap-ms", type=float, default=0.0,
                   help="idle time before each engine's call, so that the previous engine's idle "
                        "workers (ORT's spinning ones) have let go of the cores: each engine then "
                        "runs as if alone, as users run it (try 300 with --ort-spinning)")
    p.add_argument("--burst", type=int, default=1,
                   help="calls per engine turn: each turn makes one untimed call (it pays for the "
                        "wake-up of sleeping workers) then BURST timed ones back to back, their "
                        "median being the turn's time; the steady state of a process serving "
                        "requests alone. With --gap-ms before each turn, the previous engine's "
                        "spinning workers are idle again (ORT's spin about 30 ms after a run)")
    p.add_argument("--no-torch", action="store_true", help="skip the PyTorch eager column")
    p.add_argument("--bf16", action="store_true",
                   help="also time convnet --precision bf16 (interleaved), reported against fp32")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--json", default="", help="write the results here as JSON")
    return p.parse_args()


# ---- the ONNX files ---------------------------------------------------------------------------

def onnx_file(args, name):
    """The cached export of `name`, made on first use (atomically: a temporary name, then rename)."""
    import torch
    import torch_models
    path = pathlib.Path(args.cache) / f"{name}-seed{args.seed}-opset13.onnx"
    model, side = torch_models.build(name, args.seed)
    if path.exists():
        return path, model, side
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    dummy = torch.zeros(1, 3, side, side)
    print(f"exporting {name} to {path} ...", file=sys.stderr, flush=True)
    torch.onnx.export(model, dummy, str(tmp), opset_version=13, input_names=["input"],
                      output_names=["logits"], do_constant_folding=True,
                      dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    os.replace(tmp, path)
    return path, model, side


# ---- engines ---------------------------------------------------------------------------------

def ort_session(path, threads, spinning):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if not spinning:  # the counterpart of OMP_WAIT_POLICY=passive: idle workers sleep
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return lambda x: sess.run(None, {name: x})[0]


def torch_runner(model):
    """model on a numpy array. Debian's torch is built against NumPy 1 and the venv has NumPy 2,
    so tensor.numpy() / torch.from_numpy() are unavailable: the data crosses by buffer instead
    (a copy of the input and of the logits, negligible next to the forward pass)."""
    import ctypes
    import numpy as np
    import torch

    def run(x):
        t = torch.frombuffer(bytearray(x.tobytes()), dtype=torch.float32).reshape(x.shape)
        with torch.no_grad():
            y = model(t).contiguous()
        buf = (ctypes.c_float * y.numel()).from_address(y.data_ptr())
        return np.ctypeslib.as_array(buf).reshape(tuple(y.shape)).copy()
    return run


def timed(fn):
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1e3


class ConvnetDriver:
    """profile_forward --serve on one .onnx and one input: loads the model once and runs one
    warm-up forward; then each call() is one forward timed inside the driver (no pipe latency).
    close() makes it write the last output to y_path."""

    def __init__(self, args, onnx_path, x_path, y_path, precision="fp32"):
        cmd = [args.driver, str(onnx_path), "--input", str(x_path), "--output", str(y_path),
               "--threads", str(args.threads), "--serve", "--precision", precision]
        env = dict(os.environ)  # the driver picks its spin as the CLI does (docs/cli.md)
        env.pop("OMP_WAIT_POLICY", None)
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, env=env)
        self.error = "" if self.proc.stdout.readline().strip() == "ready" else self.close()

    def call(self):
        self.proc.stdin.write("\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(self.close())
        return float(line)

    def close(self):
        """Ends the driver; returns its error line ("" when it exited cleanly)."""
        _, err = self.proc.communicate()
        if self.proc.returncode == 0:
            return ""
        lines = [ln for ln in err.splitlines() if ln.strip()] or [f"exit {self.proc.returncode}"]
        return lines[-1].removeprefix("profile_forward: ")


# ---- one model -------------------------------------------------------------------------------

def bench_batch(args, name, onnx_path, ort_run, torch_run, side, batch, tmp):
    import numpy as np
    rng = np.random.default_rng(args.seed + batch)
    x = rng.uniform(-1.0, 1.0, size=(batch, 3, side, side)).astype(np.float32)
    x_path, y_path = tmp / f"{name}-{batch}-x.npy", tmp / f"{name}-{batch}-y.npy"
    np.save(x_path, x)
    row = {"model": name, "batch": batch}
    # ORT's workers spin about 30 ms after a run; the driver chooses its own spin from what else
    # is runnable when it starts (cn_prefer_passive_waiting), so it starts on a quiet machine.
    time.sleep(0.1)
    driver = ConvnetDriver(args, onnx_path, x_path, y_path)
    row["convnet_error"] = driver.error
    # name: a call returning its ms (convnet's driver times itself)
    engines = {"ort": lambda: timed(lambda: ort_run(x))}
    if torch_run:
        engines["torch"] = lambda: timed(lambda: torch_run(x))
    if not driver.error:
        engines["convnet"] = driver.call
    bf16_path = tmp / f"{name}-{batch}-y16.npy"
    bf16 = ConvnetDriver(args, onnx_path, x_path, bf16_path, "bf16") if args.bf16 else None
    if bf16 and not bf16.error:
        engines["bf16"] = bf16.call

    def call(fn):
        if args.gap_ms > 0:
            time.sleep(args.gap_ms / 1e3)
        if args.burst <= 1:
            return fn()
        fn()  # wakes the engine's workers, untimed
        return statistics.median(fn() for _ in range(args.burst))

    for _ in range(max(args.warmup, 1)):
        for fn in engines.values():
            call(fn)
    times = {k: [] for k in engines}
    for _ in range(args.repeat):
        for k, fn in engines.items():
            times[k].append(call(fn))
    if not driver.error:
        row["convnet_error"] = driver.close()
    if bf16:
        row["bf16_error"] = bf16.error or bf16.close()
    row["convnet_ms"] = None if row["convnet_error"] else statistics.median(times["convnet"])
    row["ort_ms"] = statistics.median(times["ort"])
    row["torch_ms"] = statistics.median(times["torch"]) if torch_run else None
    row["times_ms"] = times

    ref = ort_run(x)
    scale = max(1.0, float(np.max(np.abs(ref))))
    row["ref_max_abs"] = float(np.max(np.abs(ref)))
    if torch_run:
        row["torch_diff"] = float(np.max(np.abs(torch_run(x) - ref)))
    if row["convnet_ms"] is not None:
        y = np.load(y_path)
        row["diff"] = float(np.max(np.abs(y.reshape(ref.shape) - ref)))
        row["top1_agree"] = float(np.mean(np.argmax(y.reshape(ref.shape), -1) ==
                                          np.argmax(ref, -1)))
        row["valid"] = row["diff"] <= args.tol * scale
        row["ratio_ort"] = row["convnet_ms"] / row["ort_ms"]
        if torch_run:
            row["ratio_torch"] = row["convnet_ms"] / row["torch_ms"]
        if bf16 and not row["bf16_error"]:
            y16 = np.load(bf16_path).reshape(ref.shape)
            row["bf16_ms"] = statistics.median(times["bf16"])
            row["bf16_speedup"] = row["convnet_ms"] / row["bf16_ms"]
            row["bf16_top1_agree"] = float(np.mean(np.argmax(y16, -1) ==
                                                   np.argmax(y.reshape(ref.shape), -1)))
    for f in (x_path, y_path, bf16_path):
        f.unlink(missing_ok=True)
    return row


def bench_model(args, name, tmp):
    onnx_path, model, side = onnx_file(args, name)
    ort_run = ort_session(onnx_path, args.threads, args.ort_spinning)
    torch_run = None if args.no_torch else torch_runner(model)
    rows = []
    for batch in args.batch_list:
        row = bench_batch(args, name, onnx_path, ort_run, torch_run, side, batch, tmp)
        print_row(row, flush=True)
        rows.append(row)
    del model, ort_run, torch_run  # one model in memory at a time
    return rows


# ---- report ----------------------------------------------------------------------------------

HEADER = (f"{'model':<13} {'batch':>5} {'ORT ms':>9} {'torch ms':>9} {'convnet ms':>11} "
          f"{'cn/ORT':>7} {'cn/torch':>8} {'max|cn-ORT|':>11} {'max|pt-ORT|':>11} {'check':<7}")


def fmt(value, spec, width):
    return f"{value:{width}{spec}}" if value is not None else f"{'-':>{width}}"


def print_row(row, flush=False):
    check = ("ok" if row.get("valid") else "INVALID") if row["convnet_ms"] is not None else "REFUSED"
    print(f"{row['model']:<13} {row['batch']:>5} {fmt(row['ort_ms'], '.1f', 9)} "
          f"{fmt(row['torch_ms'], '.1f', 9)} {fmt(row['convnet_ms'], '.1f', 11)} "
          f"{fmt(row.get('ratio_ort'), '.2f', 7)} {fmt(row.get('ratio_torch'), '.2f', 8)} "
          f"{fmt(row.get('diff'), '.1e', 11)} {fmt(row.get('torch_diff'), '.1e', 11)} {check:<7}",
          flush=flush)
    if "bf16_ms" in row:
        print(f"{'':<13} {'':>5} bf16 {row['bf16_ms']:.1f} ms: {row['bf16_speedup']:.2f}x fp32's "
              f"speed, top-1 agrees with fp32 on {row['bf16_top1_agree']:.0%} of the batch",
              flush=flush)
    elif row.get("bf16_error"):
        print(f"{'':<13} {'':>5} bf16 failed: {row['bf16_error']}", flush=flush)


def print_report(args, rows):
    print("\n" + HEADER)
    for row in rows:
        print_row(row)
    print(f"\nthreads={args.threads} repeat={args.repeat} burst={args.burst} gap={args.gap_ms:g} ms, median; ratio = convnet / other, "
          f"lower is better; diffs against ORT's logits")
    for row in rows:
        if row["convnet_ms"] is None:
            print(f"convnet refused {row['model']} (batch {row['batch']}): {row['convnet_error']}")
    bad = [r for r in rows if r["convnet_ms"] is not None and not r["valid"]]
    if bad:
        print(f"BENCHMARK INVALID: {len(bad)} row(s) disagree with ORT beyond --tol {args.tol:g} "
              "(relative to the largest |logit|): their times mean nothing")
    return 1 if bad or any(r["convnet_ms"] is None for r in rows) else 0


def main():
    args = parse_args()
    args.model_list = [ALIASES.get(m.strip().lower(), m.strip().lower())
                       for m in args.models.split(",") if m.strip()]
    for key in args.model_list:
        if key not in ORDER:
            sys.exit(f"bench_onnx: unknown model {key!r}; choose from {', '.join(ORDER)}")
    args.batch_list = [int(b) for b in args.batches.split(",") if b.strip()]
    if not os.access(args.driver, os.X_OK):
        sys.exit(f"bench_onnx: {args.driver} not found; build it with\n"
                 "  cmake -S bench -B build-prof && cmake --build build-prof "
                 "--target profile_forward -j2\n(or pass --driver PATH)")
    import onnxruntime
    import torch
    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    load = os.getloadavg()
    print(f"ONNX Runtime {onnxruntime.__version__}, PyTorch {torch.__version__}, "
          f"threads {args.threads}, OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']} for PyTorch "
          f"(convnet's spin chosen as the CLI does), ORT spinning {'on' if args.ort_spinning else 'off'}, "
          f"driver {args.driver}, load average {load[0]:.1f} on {os.cpu_count()} cores",
          flush=True)
    print(HEADER, flush=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="cnbo-") as tmp:
        for name in args.model_list:
            rows += bench_model(args, name, pathlib.Path(tmp))
    status = print_report(args, rows)
    if args.json:
        meta = {"load_start": load, "load_end": os.getloadavg(), "threads": args.threads,
                "repeat": args.repeat, "burst": args.burst, "gap_ms": args.gap_ms, "ort": onnxruntime.__version__, "torch": torch.__version__,
                "command": sys.argv}
        pathlib.Path(args.json).write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    return status


if __name__ == "__main__":
    sys.exit(main())
