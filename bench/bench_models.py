#!/usr/bin/env python3
"""convnet's forward pass against TensorFlow (and ONNX Runtime when a model can be exported), on
the same weights, the same inputs and the same thread count, in one process.

For each model Keras builds the architecture with random weights (weights=None: no downloads on
these machines), calibrated so that every layer carries signal (bench/calibrate.py), and saves them
with save_weights; convnet builds the same zoo model through
build/libconvnet.so and loads that file. The outputs must agree within --tol, else the row is
marked INVALID (a fast wrong answer is not a result). Then convnet, TensorFlow and ONNX Runtime
are timed in interleaved rounds (one call of each per round, so that drift in the load of this
shared machine hits all of them alike) and the medians are compared.

Run it with the oracle venv's python, see bench/README.md."""
import argparse
import ctypes
import gc
import json
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from calibrate import calibrate  # noqa: E402

# keras.applications constructor, convnet zoo name, input side.
MODELS = {
    "vgg16": ("VGG16", "vgg16", 224),
    "resnet50": ("ResNet50", "resnet50", 224),
    "inception_v3": ("InceptionV3", "inception_v3", 299),
    "mobilenet_v2": ("MobileNetV2", "mobilenet_v2", 224),
}
ALIASES = {"inceptionv3": "inception_v3", "mobilenetv2": "mobilenet_v2"}


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", default="vgg16,resnet50,inception_v3,mobilenet_v2",
                   help="comma-separated: " + ", ".join(MODELS))
    p.add_argument("--batches", default="1,8", help="comma-separated batch sizes")
    p.add_argument("--threads", type=int, default=2, help="threads for every engine")
    p.add_argument("--repeat", type=int, default=5, help="timed rounds (median is reported)")
    p.add_argument("--warmup", type=int, default=2, help="untimed calls of each engine first")
    p.add_argument("--tol", type=float, default=1e-4, help="max |convnet - TF| on the outputs")
    p.add_argument("--tf-modes", default="eager,function",
                   help="TF call paths to time: eager (model(x, training=False)), function "
                        "(tf.function of it), xla (tf.function jit_compile=True); the fastest "
                        "is the one compared")
    p.add_argument("--build", default=os.environ.get("CN_BUILD_DIR", str(ROOT / "build")),
                   help="build directory holding libconvnet.so and convnet (default $CN_BUILD_DIR "
                        "or build/)")
    p.add_argument("--onnx-python", default=os.environ.get("CN_BENCH_ONNX_PYTHON", ""),
                   help="a python with tensorflow + tf2onnx used to export the model to ONNX "
                        "(default $CN_BENCH_ONNX_PYTHON; empty: this python if it has tf2onnx)")
    p.add_argument("--no-ort", action="store_true", help="skip ONNX Runtime")
    p.add_argument("--no-cli", action="store_true", help="skip the `convnet run` wall time")
    p.add_argument("--blocked", action="store_true",
                   help="time each engine's runs back to back instead of interleaving rounds")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--json", default="", help="write the results here as JSON")
    p.add_argument("--keep", default="", help="keep the weights/ONNX files in this directory")
    return p.parse_args()


def limit_tf_threads(threads):
    """Must run before TensorFlow executes anything: the pools are fixed at first use."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    return tf


# ---- convnet through ctypes ------------------------------------------------------------------

class ZooOptions(ctypes.Structure):
    """Mirror of cn_zoo_options in include/convnet/model.h."""
    _fields_ = [("name", ctypes.c_char_p), ("no_top", ctypes.c_int),
                ("pooling", ctypes.c_char_p), ("height", ctypes.c_int),
                ("width", ctypes.c_int), ("classes", ctypes.c_int), ("alpha", ctypes.c_float)]


class Convnet:
    def __init__(self, build_dir):
        path = pathlib.Path(build_dir) / "libconvnet.so"
        if not path.exists():
            sys.exit(f"bench: {path} not found: build convnet first (see bench/README.md)")
        lib = ctypes.CDLL(str(path))
        needed = ["cn_set_threads", "cn_zoo_build", "cn_model_load_weights", "cn_model_forward",
                  "cn_model_free", "cn_last_error"]
        missing = [name for name in needed if not hasattr(lib, name)]
        if missing:
            sys.exit(f"bench: {path} lacks {', '.join(missing)}: the zoo/loader have not landed")
        lib.cn_last_error.restype = ctypes.c_char_p
        lib.cn_set_threads.argtypes = [ctypes.c_int]
        lib.cn_zoo_build.argtypes = [ctypes.POINTER(ZooOptions), ctypes.POINTER(ctypes.c_void_p)]
        lib.cn_model_load_weights.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        lib.cn_model_forward.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p,
                                         ctypes.c_void_p]
        lib.cn_model_free.argtypes = [ctypes.c_void_p]
        self.lib = lib

    def check(self, status, what):
        if status != 0:
            raise RuntimeError(f"{what}: {self.lib.cn_last_error().decode(errors='replace')}")

    def load(self, zoo_name, weights_path):
        opts = ZooOptions(name=zoo_name.encode())
        model = ctypes.c_void_p()
        self.check(self.lib.cn_zoo_build(ctypes.byref(opts), ctypes.byref(model)), "cn_zoo_build")
        status = self.lib.cn_model_load_weights(model, str(weights_path).encode())
        if status != 0:
            message = self.lib.cn_last_error().decode(errors="replace")
            self.lib.cn_model_free(model)
            raise RuntimeError(f"cn_model_load_weights: {message}")
        return model

    def forward(self, model, x, out):
        self.check(self.lib.cn_model_forward(model, x.shape[0], x.ctypes.data, out.ctypes.data),
                   "cn_model_forward")


# ---- ONNX Runtime ------------------------------------------------------------------------------

EXPORT_SCRIPT = ROOT / "bench" / "export_onnx.py"


def onnx_exporter(args):
    """The python that can run bench/export_onnx.py, or None with the reason."""
    if args.no_ort:
        return None, "skipped (--no-ort)"
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return None, "skipped: onnxruntime is not installed in this python"
    if args.onnx_python:
        return args.onnx_python, ""
    try:
        import tf2onnx  # noqa: F401
        return sys.executable, ""
    except ImportError:
        return None, ("skipped: tf2onnx is not installed (see bench/README.md: "
                      "bench/setup_onnx_venv.sh, then --onnx-python)")


def export_onnx(python, keras_name, weights, out):
    proc = subprocess.run([python, str(EXPORT_SCRIPT), keras_name, str(weights), str(out)],
                          capture_output=True, text=True,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES=""))
    if proc.returncode != 0 or not out.exists():
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        errors = [ln for ln in lines if "Error" in ln or "error:" in ln]
        tail = (errors or lines or ["no output"])[-1].strip()[:300]
        raise RuntimeError(f"ONNX export failed (exit {proc.returncode}): {tail}")


def ort_session(path, threads):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return lambda x: sess.run(None, {name: x})[0]


# ---- timing ----------------------------------------------------------------------------------

def timed(fn):
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1e3


def tf_callers(tf, model, modes):
    callers = {}
    for mode in modes:
        if mode == "eager":
            callers[mode] = lambda t: model(t, training=False).numpy()
        elif mode == "function":
            fn = tf.function(lambda t: model(t, training=False))
            callers[mode] = lambda t, fn=fn: fn(t).numpy()
        elif mode == "xla":
            fn = tf.function(lambda t: model(t, training=False), jit_compile=True)
            callers[mode] = lambda t, fn=fn: fn(t).numpy()
        else:
            sys.exit(f"bench: unknown TF mode {mode!r}")
    return callers


def compare(a, b):
    """Max absolute difference, and of the log-probabilities (the logits' error up to a shift,
    which stays informative when the softmax of a random-weight model is nearly uniform)."""
    import numpy as np
    diff = float(np.max(np.abs(a - b)))
    tiny = np.float32(1e-30)
    logdiff = float(np.max(np.abs(np.log(np.maximum(a, tiny)) - np.log(np.maximum(b, tiny)))))
    top1 = float(np.mean(np.argmax(a, axis=-1) == np.argmax(b, axis=-1)))
    return diff, logdiff, top1


def bench_batch(args, tf, cn, cn_model, model, ort_run, batch, side, rng):
    import numpy as np
    x = rng.uniform(-1.0, 1.0, size=(batch, side, side, 3)).astype(np.float32)
    tx = tf.constant(x)
    out = np.empty((batch,) + tuple(model.output.shape[1:]), np.float32)
    modes = [m for m in args.tf_modes.split(",") if m]
    callers = tf_callers(tf, model, modes)
    engines = {"convnet": lambda: cn.forward(cn_model, x, out)}
    engines.update({"tf_" + m: (lambda c=c: c(tx)) for m, c in callers.items()})
    if ort_run:
        engines["ort"] = lambda: ort_run(x)

    for _ in range(max(args.warmup, 1)):
        for fn in engines.values():
            fn()
    ref = callers[modes[0]](tx)
    cn.forward(cn_model, x, out)
    row = {"batch": batch}
    row["diff"], row["logdiff"], row["top1_agree"] = compare(out, ref)
    row["valid"] = bool(row["diff"] <= args.tol)
    if ort_run:
        row["ort_diff"] = compare(ort_run(x), ref)[0]

    times = {name: [] for name in engines}
    if args.blocked:  # each engine's runs back to back: no leftover spinning threads of another
        for name, fn in engines.items():
            times[name] = [timed(fn) for _ in range(args.repeat)]
    else:
        for _ in range(args.repeat):
            for name, fn in engines.items():
                times[name].append(timed(fn))
    med = {name: statistics.median(t) for name, t in times.items()}
    row["times_ms"] = times
    row["convnet_ms"] = med["convnet"]
    row["tf_ms_by_mode"] = {m: med["tf_" + m] for m in modes}
    row["tf_mode"] = min(modes, key=lambda m: med["tf_" + m])
    row["tf_ms"] = med["tf_" + row["tf_mode"]]
    row["ratio_tf"] = row["convnet_ms"] / row["tf_ms"]
    if ort_run:
        row["ort_ms"] = med["ort"]
        row["ratio_ort"] = row["convnet_ms"] / row["ort_ms"]
    return row


def cli_wall(args, zoo_name, weights, side, tmp):
    """Wall time of one `convnet run` (process start, model build, weight load, one forward)."""
    exe = pathlib.Path(args.build) / "convnet"
    if args.no_cli or not exe.exists():
        return None, "no CLI" if not exe.exists() else "skipped"
    import numpy as np
    x = np.random.default_rng(args.seed).uniform(-1, 1, (1, side, side, 3)).astype(np.float32)
    np.save(tmp / "x.npy", x)
    cmd = [str(exe), "run", "-m", zoo_name, "--weights", str(weights), "--threads",
           str(args.threads), "--input", str(tmp / "x.npy"), "--output", str(tmp / "y.npy")]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    ms = (time.perf_counter() - start) * 1e3
    if proc.returncode != 0:
        return None, f"`{' '.join(cmd[1:3])} ...` failed: " + (proc.stderr.strip() or "?")[:200]
    return ms, " ".join(cmd)


def load_in_convnet(cn, model, zoo_name, weights, tmp, notes):
    """convnet's model with the weights of `weights` (Keras 3 .weights.h5). If convnet cannot read
    that file, the same weights go through Keras' legacy full-model .h5 instead, and a note says
    so: the loader's bug is then a finding, and the speed comparison still stands."""
    try:
        return cn.load(zoo_name, weights), weights
    except RuntimeError as err:
        notes.append(f"convnet could not read the Keras 3 {weights.name} ({err}); "
                     "used the same weights through model.save(legacy .h5) instead")
    legacy = weights.with_name(weights.name.replace(".weights.h5", ".legacy.h5"))
    model.save(str(legacy))
    try:
        return cn.load(zoo_name, legacy), legacy
    except RuntimeError as err:
        notes.append(f"convnet could not load {zoo_name} from {legacy.name} either: {err}")
        return None, None


def bench_model(args, tf, cn, key, exporter, tmp):
    import keras
    import numpy as np
    keras_name, zoo_name, side = MODELS[key]
    keras.utils.set_random_seed(args.seed)
    model = getattr(keras.applications, keras_name)(weights=None)
    calib = np.random.default_rng(args.seed + 1).uniform(-1, 1, (2, side, side, 3))
    calibrate(model, calib.astype(np.float32), seed=args.seed)
    weights = tmp / f"{key}.weights.h5"
    model.save_weights(str(weights))
    result = {"model": key, "rows": [], "notes": []}
    cn_model, cn_weights = load_in_convnet(cn, model, zoo_name, weights, tmp, result["notes"])
    ort_run = None
    exporter_python, _ = exporter
    if cn_model is not None and exporter_python:
        onnx_path = tmp / f"{key}.onnx"
        try:
            export_onnx(exporter_python, keras_name, weights, onnx_path)
            ort_run = ort_session(onnx_path, args.threads)
        except Exception as err:  # the comparison still stands without ORT
            result["notes"].append(f"ORT skipped for {key}: {err}")
    if cn_model is not None:
        rng = np.random.default_rng(args.seed)
        for batch in args.batch_list:
            try:
                row = bench_batch(args, tf, cn, cn_model, model, ort_run, batch, side, rng)
            except RuntimeError as err:
                result["notes"].append(f"{key} batch {batch}: {err}")
                continue
            result["rows"].append(row)
            print_row(key, row, flush=True)
        cn.lib.cn_model_free(cn_model)
        ms, how = cli_wall(args, zoo_name, cn_weights, side, tmp)
        if ms is None and cn_weights == weights and "failed" in how:
            legacy = weights.with_name(weights.name.replace(".weights.h5", ".legacy.h5"))
            model.save(str(legacy))
            result["notes"].append(f"convnet run {key} on {weights.name}: {how}; "
                                   "timed with the legacy .h5 instead")
            ms, how = cli_wall(args, zoo_name, legacy, side, tmp)
        result["cli_ms"], result["cli_cmd"] = ms, how
    del model, ort_run
    keras.backend.clear_session()
    gc.collect()
    if not args.keep:
        for f in tmp.glob(f"{key}.*"):
            f.unlink()
    return result


# ---- report ----------------------------------------------------------------------------------

HEADER = (f"{'model':<13} {'batch':>5} {'convnet ms':>11} {'TF ms':>9} {'TF path':<9} "
          f"{'cn/TF':>6} {'ORT ms':>9} {'cn/ORT':>6} {'max|diff|':>9} {'check':<7}")


def print_row(key, row, flush=False):
    ort_ms = f"{row['ort_ms']:9.1f}" if "ort_ms" in row else f"{'-':>9}"
    ort_ratio = f"{row['ratio_ort']:6.2f}" if "ratio_ort" in row else f"{'-':>6}"
    check = "ok" if row["valid"] else "INVALID"
    print(f"{key:<13} {row['batch']:>5} {row['convnet_ms']:11.1f} {row['tf_ms']:9.1f} "
          f"{row['tf_mode']:<9} {row['ratio_tf']:6.2f} {ort_ms} {ort_ratio} "
          f"{row['diff']:9.1e} {check:<7}", flush=flush)


def print_report(args, results, ort_note):
    print("\n" + HEADER)
    for res in results:
        for row in res["rows"]:
            print_row(res["model"], row)
    rows = [r for res in results for r in res["rows"]]
    print(f"\nthreads={args.threads} repeat={args.repeat} (median of interleaved rounds), "
          f"ratio = convnet / other: lower is better, bar <= 2.0 against TF")
    if ort_note:
        print(f"ONNX Runtime: {ort_note}")
    for res in results:
        if res.get("cli_ms") is not None:
            print(f"convnet run {res['model']} (batch 1, one process): {res['cli_ms']:.0f} ms wall")
        elif res.get("cli_cmd"):
            print(f"convnet run {res['model']}: {res['cli_cmd']}")
        for note in res["notes"]:
            print("note:", note)
    invalid = [r for r in rows if not r["valid"]]
    if invalid:
        print(f"BENCHMARK INVALID: {len(invalid)} row(s) disagree with TensorFlow by more than "
              f"{args.tol:g}: their times mean nothing until the outputs agree")
    slow = [r for r in rows if r["ratio_tf"] > 2.0]
    if rows and not invalid:
        print("bar met: every convnet/TF ratio <= 2.0" if not slow else
              f"bar missed: {len(slow)} row(s) with convnet/TF > 2.0")
    missing = len(args.model_list) * len(args.batch_list) - len(rows)
    return 1 if invalid or missing else 0


def main():
    args = parse_args()
    args.model_list = [ALIASES.get(m.strip().lower(), m.strip().lower())
                       for m in args.models.split(",") if m.strip()]
    for key in args.model_list:
        if key not in MODELS:
            sys.exit(f"bench: unknown model {key!r}; choose from {', '.join(MODELS)}")
    args.batch_list = [int(b) for b in args.batches.split(",") if b.strip()]
    tf = limit_tf_threads(args.threads)
    cn = Convnet(args.build)
    cn.lib.cn_set_threads(args.threads)
    exporter = onnx_exporter(args)
    ort_note = exporter[1] or "exported with tf2onnx (Keras model.export), same weights"
    tmp = pathlib.Path(args.keep) if args.keep else pathlib.Path(tempfile.mkdtemp(prefix="cnb-"))
    tmp.mkdir(parents=True, exist_ok=True)
    omp = {k: os.environ[k] for k in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS")
           if k in os.environ}
    print(f"TensorFlow {tf.__version__}, threads {args.threads}, build {args.build}, "
          f"{'blocked' if args.blocked else 'interleaved'} timing, OpenMP env {omp or 'default'}, "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(HEADER, flush=True)
    results = []
    try:
        for key in args.model_list:
            results.append(bench_model(args, tf, cn, key, exporter, tmp))
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    status = print_report(args, results, ort_note)
    if args.json:
        meta = {"omp_env": omp, "blocked": args.blocked, "load_end": os.getloadavg(),
                "threads": args.threads, "repeat": args.repeat, "tol": args.tol,
                "tensorflow": tf.__version__, "ort": ort_note, "command": sys.argv}
        pathlib.Path(args.json).write_text(json.dumps({"meta": meta, "results": results},
                                                      indent=1))
    return status


if __name__ == "__main__":
    sys.exit(main())
