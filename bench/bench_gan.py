#!/usr/bin/env python3
"""The DCGAN of examples/dcgan.c against the same DCGAN in PyTorch, scored by the Fréchet
distance ("FID" of Fashion-MNIST) of `convnet fid` on the penultimate features of a classifier
trained from scratch with convnet (bench/fid_classifier.json, layer "features").

Both sides (the shared contract of docs/examples.md): Fashion-MNIST scaled to [-1, 1], batches of
128, latent z ~ N(0, 1) of size 100, binary cross-entropy on logits, Adam(2e-4, beta1 0.5,
beta2 0.999, eps 1e-7) for each network; per batch one discriminator step on the real batch
(label 1, or 0.9 with --label-smoothing) and a fake batch from fresh noise (label 0; two passes,
so BatchNorm normalises each batch apart; the two mean losses summed), then one generator step
(target 1) on the same noise with the discriminator's weights left alone (its BatchNorm still on
batch statistics). Conditional fakes are asked for the real batch's classes.
  Generator: Dense(7*7*64, no bias) -> BatchNorm -> ReLU -> Reshape(7, 7, 64) ->
             Conv2DTranspose(32, 4, stride 2, same, no bias) -> BatchNorm -> ReLU ->
             Conv2DTranspose(1, 4, stride 2, same) -> tanh
  Discriminator: Conv2D(32, 4, stride 2, same) -> LeakyReLU(0.2) -> Conv2D(64, 4, stride 2,
             same) -> BatchNorm -> LeakyReLU(0.2) -> Flatten -> Dense(1)
  --conditional: the generator reads concat(z, one_hot(class)); the discriminator's Dense reads
             concat(its flattened features, one_hot(class)).
PyTorch gets Keras's defaults: Glorot-uniform kernels, zero biases, BatchNorm gamma 1, beta 0,
momentum 0.99 (torch's 0.01) and epsilon 1e-3; ConvTranspose2d(k 4, s 2, padding 1) is Keras's
'same' here. Samples come from the generator at inference (BatchNorm's moving statistics).

For each seed, in turn on the same machine and threads: build/examples/dcgan (trained, and with
--epochs 0 for the untrained generator's FID) and this file's PyTorch DCGAN (a subprocess) each
write 10,000 samples in [0, 1]; `convnet fid` compares each with the 10,000 test images. With
--conditional, `convnet run` classifies the samples (sample i asks for class i % 10). The peak
RSS of each process is its own (wait4). Printed: a table per seed, then the summary lines of the
bar: median FID convnet / PyTorch, the FID's drop from the untrained generator, the mean time
per epoch convnet / PyTorch, peak RSS, conditional accuracy.

Run with Debian's python3 (python3-torch, and the NumPy it is built against):

    /usr/bin/python3 bench/bench_gan.py [--build build] [--epochs 5] [--seeds 1,2,3]
        [--threads 2] [--train-samples N] [--conditional] [--classifier FILE.cnm]

Without --classifier it uses BUILD/fid_classifier.cnm, training it first when it is missing
(convnet train --model bench/fid_classifier.json, 8 epochs, Adam 1e-3, batch 128, seed 1).
"""
import argparse
import os
import pathlib
import re
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

from fashion_mnist import DATA, cpu_name, images

ROOT = pathlib.Path(__file__).resolve().parents[1]
CLASSIFIER_JSON = ROOT / "bench" / "fid_classifier.json"
LATENT, CLASSES, BATCH = 100, 10, 128
EPOCH_LINE = re.compile(r"^epoch (\d+) d_loss (\S+) g_loss (\S+) seconds (\S+)$", re.M)


# ---- the PyTorch DCGAN (run as a subprocess: bench_gan.py torch ...) ----

def torch_models(conditional):
    import torch
    from torch import nn
    extra = CLASSES if conditional else 0

    class Generator(nn.Module):
        def __init__(self):
            super().__init__()
            self.dense = nn.Linear(LATENT + extra, 7 * 7 * 64, bias=False)
            self.bn0 = nn.BatchNorm1d(7 * 7 * 64, eps=1e-3, momentum=0.01)
            self.up1 = nn.ConvTranspose2d(64, 32, 4, stride=2, padding=1, bias=False)
            self.bn1 = nn.BatchNorm2d(32, eps=1e-3, momentum=0.01)
            self.up2 = nn.ConvTranspose2d(32, 1, 4, stride=2, padding=1)

        def forward(self, z, onehot=None):
            x = torch.cat([z, onehot], 1) if onehot is not None else z
            x = torch.relu(self.bn0(self.dense(x))).view(-1, 64, 7, 7)
            x = torch.relu(self.bn1(self.up1(x)))
            return torch.tanh(self.up2(x))

    class Discriminator(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(1, 32, 4, stride=2, padding=1)
            self.conv2 = nn.Conv2d(32, 64, 4, stride=2, padding=1)
            self.bn = nn.BatchNorm2d(64, eps=1e-3, momentum=0.01)
            self.dense = nn.Linear(7 * 7 * 64, 1)
            # the projection discriminator of examples/dcgan.c --conditional
            self.embed = nn.Linear(CLASSES, 7 * 7 * 64, bias=False) if extra else None

        def forward(self, x, onehot=None):
            x = nn.functional.leaky_relu(self.conv1(x), 0.2)
            x = nn.functional.leaky_relu(self.bn(self.conv2(x)), 0.2).flatten(1)
            logit = self.dense(x)
            if onehot is not None:
                logit = logit + (x * self.embed(onehot)).sum(1, keepdim=True)
            return logit

    g, d = Generator(), Discriminator()
    for m in list(g.modules()) + list(d.modules()):  # Keras's defaults
        if isinstance(m, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return g, d


def torch_train(args):
    import torch
    from torch import nn
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    x = images(args.data, "train")
    y = None
    if args.conditional:
        from fashion_mnist import labels
        y = torch.from_numpy(labels(args.data, "train").astype(np.int64))
    if args.train_samples:
        x = x[:args.train_samples]
        y = y[:args.train_samples] if y is not None else None
    x = torch.from_numpy(x * 2 - 1).permute(0, 3, 1, 2).contiguous()  # [-1, 1], NCHW
    g, d = torch_models(args.conditional)
    opt_g = torch.optim.Adam(g.parameters(), lr=2e-4, betas=(0.5, 0.999), eps=1e-7)
    opt_d = torch.optim.Adam(d.parameters(), lr=2e-4, betas=(0.5, 0.999), eps=1e-7)
    bce = nn.BCEWithLogitsLoss()
    real_label = 0.9 if args.label_smoothing else 1.0
    onehot = (lambda c: nn.functional.one_hot(c, CLASSES).float()) if args.conditional else None
    for epoch in range(1, args.epochs + 1):
        start = time.perf_counter()
        order = torch.randperm(len(x))
        d_sum = g_sum = 0.0
        steps = 0
        for at in range(0, len(x), BATCH):
            idx = order[at:at + BATCH]
            real, n = x[idx], len(idx)
            cls = y[idx] if y is not None else None
            oh = onehot(cls) if onehot else None  # fakes are asked for the real batch's classes
            z = torch.randn(n, LATENT)
            with torch.no_grad():
                fake = g(z, oh)
            d_loss = (bce(d(real, oh), torch.full((n, 1), real_label))
                      + bce(d(fake, oh), torch.zeros(n, 1)))
            opt_d.zero_grad()
            d_loss.backward()
            opt_d.step()
            g_loss = bce(d(g(z, oh), oh), torch.ones(n, 1))
            opt_g.zero_grad()
            g_loss.backward()  # only the generator's optimizer steps: D stays as it was
            opt_g.step()
            d_sum += d_loss.item()
            g_sum += g_loss.item()
            steps += 1
        seconds = time.perf_counter() - start
        print(f"epoch {epoch} d_loss {d_sum / steps:.4f} g_loss {g_sum / steps:.4f} "
              f"seconds {seconds:.2f}", flush=True)
    if args.generate:
        g.eval()
        gen = torch.Generator().manual_seed(args.seed + 1000)
        out = []
        with torch.no_grad():
            for at in range(0, args.generate, 500):
                n = min(500, args.generate - at)
                z = torch.randn(n, LATENT, generator=gen)
                oh = onehot(torch.arange(at, at + n) % CLASSES) if onehot else None
                out.append(((g(z, oh) + 1) / 2).clamp(0, 1).permute(0, 2, 3, 1))
        np.save(args.generate_out, torch.cat(out).numpy().astype(np.float32))


def torch_main(argv):
    p = argparse.ArgumentParser(prog="bench_gan.py torch")
    p.add_argument("--data", default=str(DATA))
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--train-samples", type=int, default=0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--conditional", action="store_true")
    p.add_argument("--label-smoothing", action="store_true")
    p.add_argument("--generate", type=int, default=0)
    p.add_argument("--generate-out")
    torch_train(p.parse_args(argv))


# ---- the comparison ----

def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--build", default=os.environ.get("CN_BUILD_DIR", str(ROOT / "build")))
    p.add_argument("--data", default=str(DATA))
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--seeds", default="1,2,3")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--train-samples", type=int, default=0, help="0: all 60,000")
    p.add_argument("--samples", type=int, default=10000, help="generated samples per run")
    p.add_argument("--conditional", action="store_true")
    p.add_argument("--label-smoothing", action="store_true")
    p.add_argument("--classifier", help="the FID classifier (.cnm)")
    args = p.parse_args()
    args.seeds = [int(s) for s in args.seeds.split(",")]
    args.build = pathlib.Path(args.build)
    return args


def run(cmd, log):
    """Runs cmd with stdout to log; returns (stdout text, wall seconds, peak RSS in MiB)."""
    env = dict(os.environ, OMP_WAIT_POLICY="passive")
    start = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.Popen([str(c) for c in cmd], stdout=out, stderr=subprocess.PIPE,
                                env=env, text=True)
        err = proc.stderr.read()
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own peak, not the maximum so far
        proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"{' '.join(map(str, cmd))} failed ({proc.returncode}): {err.strip()}")
    return pathlib.Path(log).read_text(), wall, usage.ru_maxrss / 1024


def gan_options(args, seed, epochs, out):
    opts = ["--epochs", epochs, "--seed", seed, "--threads", args.threads,
            "--generate", args.samples, "--generate-out", out]
    if args.train_samples:
        opts += ["--train-samples", args.train_samples]
    if args.conditional:
        opts.append("--conditional")
    if args.label_smoothing:
        opts.append("--label-smoothing")
    return opts


def epoch_seconds(text, what):
    rows = EPOCH_LINE.findall(text)
    if not rows:
        sys.exit(f"{what}: no 'epoch E d_loss X g_loss Y seconds T' line in its output")
    return [float(r[3]) for r in rows]


def fid(args, classifier, samples):
    out = subprocess.run([str(args.build / "convnet"), "fid", "-m", str(classifier),
                          "--threads", str(args.threads), str(samples),
                          str(pathlib.Path(args.data) / "t10k-images-idx3-ubyte.gz")],
                         capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(out.stderr.strip())
    return float(out.stdout.split()[-1])


def class_accuracy(args, classifier, samples, tmp):
    """How often the classifier gives sample i the class i % 10 it was generated for."""
    probs = pathlib.Path(tmp) / "probs.npy"
    subprocess.run([str(args.build / "convnet"), "run", "-m", str(classifier), "--threads",
                    str(args.threads), "--input", str(samples), "--output", str(probs)],
                   check=True, stdout=subprocess.DEVNULL)
    p = np.load(probs)
    return float((p.argmax(1) == np.arange(len(p)) % CLASSES).mean())


def ensure_classifier(args):
    if args.classifier:
        return pathlib.Path(args.classifier)
    path = args.build / "fid_classifier.cnm"
    if not path.exists():
        print(f"training the FID classifier into {path} (8 epochs) ...", flush=True)
        subprocess.run([str(args.build / "convnet"), "train", "--model", str(CLASSIFIER_JSON),
                        "--data", args.data, "--epochs", "8", "--batch", "128", "--lr", "1e-3",
                        "--seed", "1", "--threads", str(args.threads), "--out", str(path)],
                       check=True, env=dict(os.environ, OMP_WAIT_POLICY="passive"))
    return path


def one_seed(args, classifier, seed, tmp):
    """Untrained, convnet and PyTorch runs of one seed: a dict of their numbers."""
    dcgan, r = args.build / "examples" / "dcgan", {}
    t = pathlib.Path(tmp)
    run([dcgan, *gan_options(args, seed, 0, t / "untrained.npy"), "--out", t / "u"],
        t / "untrained.log")
    r["fid_untrained"] = fid(args, classifier, t / "untrained.npy")
    text, _, r["rss_convnet"] = run(
        [dcgan, *gan_options(args, seed, args.epochs, t / "convnet.npy"), "--out", t / "c"],
        t / "convnet.log")
    r["sec_convnet"] = epoch_seconds(text, "dcgan")
    text, _, r["rss_torch"] = run(
        [sys.executable, __file__, "torch", "--data", args.data,
         *gan_options(args, seed, args.epochs, t / "torch.npy")], t / "torch.log")
    r["sec_torch"] = epoch_seconds(text, "PyTorch DCGAN")
    r["fid_convnet"] = fid(args, classifier, t / "convnet.npy")
    r["fid_torch"] = fid(args, classifier, t / "torch.npy")
    if args.conditional:
        r["acc_convnet"] = class_accuracy(args, classifier, t / "convnet.npy", tmp)
        r["acc_torch"] = class_accuracy(args, classifier, t / "torch.npy", tmp)
    return r


def summary(args, rows):
    med = {k: statistics.median(r[k] for r in rows)
           for k in ("fid_untrained", "fid_convnet", "fid_torch")}
    sec_c = statistics.mean(s for r in rows for s in r["sec_convnet"])
    sec_t = statistics.mean(s for r in rows for s in r["sec_torch"])
    print(f"median FID: convnet {med['fid_convnet']:.3f}, PyTorch {med['fid_torch']:.3f}, "
          f"ratio convnet / PyTorch {med['fid_convnet'] / med['fid_torch']:.3f} (bar <= 1.25)")
    print(f"FID drop from the untrained generator: {med['fid_untrained']:.3f} -> "
          f"{med['fid_convnet']:.3f}, factor {med['fid_untrained'] / med['fid_convnet']:.2f} "
          f"(bar >= 5)")
    print(f"time per epoch: convnet {sec_c:.2f} s, PyTorch {sec_t:.2f} s, ratio "
          f"{sec_c / sec_t:.3f} (bar <= 1.0)")
    print(f"peak RSS: convnet {max(r['rss_convnet'] for r in rows):.0f} MiB, PyTorch "
          f"{max(r['rss_torch'] for r in rows):.0f} MiB")
    if args.conditional:
        acc_c = statistics.mean(r["acc_convnet"] for r in rows)
        acc_t = statistics.mean(r["acc_torch"] for r in rows)
        print(f"conditional accuracy (the requested class): convnet {100 * acc_c:.2f} %, "
              f"PyTorch {100 * acc_t:.2f} % (bar >= 80 %)")


def main():
    args = parse_args()
    for exe in (args.build / "convnet", args.build / "examples" / "dcgan"):
        if not exe.exists():
            sys.exit(f"{exe} not built")
    classifier = ensure_classifier(args)
    print(f"CPU: {cpu_name()}, {args.threads} threads; {'conditional ' * args.conditional}DCGAN, "
          f"{args.epochs} epochs of {args.train_samples or 60000} images, batch {BATCH}, "
          f"{args.samples} samples against the 10,000 test images; classifier {classifier}",
          flush=True)
    rows = []
    print(f"{'seed':>4} {'FID untrained':>13} {'FID convnet':>11} {'FID torch':>9} "
          f"{'s/epoch convnet':>15} {'s/epoch torch':>13} {'RSS MiB c/t':>11}"
          + ("  acc convnet/torch" if args.conditional else ""), flush=True)
    for seed in args.seeds:
        with tempfile.TemporaryDirectory() as tmp:
            r = one_seed(args, classifier, seed, tmp)
        rows.append(r)
        acc = (f"  {100 * r['acc_convnet']:.2f} / {100 * r['acc_torch']:.2f} %"
               if args.conditional else "")
        print(f"{seed:>4} {r['fid_untrained']:>13.3f} {r['fid_convnet']:>11.3f} "
              f"{r['fid_torch']:>9.3f} {statistics.mean(r['sec_convnet']):>15.2f} "
              f"{statistics.mean(r['sec_torch']):>13.2f} "
              f"{r['rss_convnet']:>5.0f}/{r['rss_torch']:<5.0f}{acc}", flush=True)
    summary(args, rows)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "torch":
        torch_main(sys.argv[2:])
    else:
        main()
