#!/usr/bin/env python3
"""The siamese network of examples/siamese.c against the same network, loss, pairs and optimizer
in PyTorch (Debian's python3-torch; run it with /usr/bin/python3, whose NumPy 1 that torch
is built against: the venv's NumPy 2 cannot hand it arrays).

Both sides: the tower Conv2D(16, 3x3, relu) -> MaxPool(2) -> Conv2D(32, 3x3, relu) -> MaxPool(2)
-> Flatten -> Dense(64, relu) -> Dense(16), weights drawn Glorot-uniform with zero biases (Keras's
defaults, which convnet's cn_model_init_weights draws); the distance d = sqrt(sum((a - b)^2) +
1e-6); the contrastive loss (1 - y) d^2 + y max(1 - d, 0)^2 (y = 1: two classes), or with
--loss triplet max(d(a, p) - d(a, n) + 1, 0); Adam (lr 1e-3, betas 0.9/0.999, epsilon 1e-7 as
Keras and convnet), batches of 128. The pairs (and triplets) are drawn by the example's seeded
splitmix64 generator, repeated here, so both frameworks train on exactly the same pairs in the
same order and are scored on the same 10,000 test pairs (half of one class); the threshold is the
distance that best separates 10,000 fresh training pairs. Only the weights' initial draw and the
arithmetic differ.

For each seed both run in turn; the script prints the verification accuracy per seed, the means
over the seeds and their difference (the bar: within 1 point), and the wall times.

    /usr/bin/python3 bench/bench_siamese.py [--build build] [--epochs 5] [--seeds 1,2,3]
                                            [--loss contrastive|triplet]
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

from fashion_mnist import DATA, cpu_name, images, labels

ROOT = pathlib.Path(__file__).resolve().parents[1]
BATCH, EMBED, MARGIN, EPS, EVAL_PAIRS, TEST_PAIRS_SEED = 128, 16, 1.0, 1e-6, 10000, 0x7E57
MASK = (1 << 64) - 1


class SplitMix64:
    """The example's next_random (splitmix64)."""

    def __init__(self, seed):
        self.state = seed & MASK

    def next(self):
        self.state = (self.state + 0x9E3779B97F4A7C15) & MASK
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
        return z ^ (z >> 31)


def by_class(y):
    return [np.flatnonzero(y == k) for k in range(10)]


def draw_pairs(y, members, n, seed):
    """The example's draw_pairs: even i of one class (label 0), odd i of two (label 1)."""
    r = SplitMix64(seed)
    a, b, lab = np.empty(n, np.int64), np.empty(n, np.int64), np.empty(n, np.float32)
    for i in range(n):
        a[i] = r.next() % len(y)
        k = int(y[a[i]])
        if i & 1:
            k = (k + 1 + r.next() % 9) % 10
        b[i] = members[k][r.next() % len(members[k])]
        lab[i] = i & 1
    return a, b, lab


def draw_triplets(y, members, n, seed):
    r = SplitMix64(seed)
    a, p, q = (np.empty(n, np.int64) for _ in range(3))
    for i in range(n):
        a[i] = r.next() % len(y)
        k = int(y[a[i]])
        p[i] = members[k][r.next() % len(members[k])]
        o = (k + 1 + r.next() % 9) % 10
        q[i] = members[o][r.next() % len(members[o])]
    return a, p, q


def epoch_seed(seed, epoch):
    return (seed << 32) | epoch


def best_threshold(d, lab):
    """The example's best_threshold: midway between the neighbouring distances that split the
    sorted pairs with the most right ("one class" when d < t)."""
    order = np.argsort(d, kind="stable")
    ds, ls = d[order], lab[order]
    n = len(d)
    same_below = np.concatenate([[0], np.cumsum(ls == 0)])
    diff_below = np.concatenate([[0], np.cumsum(ls != 0)])
    right = same_below + (diff_below[-1] - diff_below)
    k = int(np.argmax(right))
    if k == 0:
        return float(ds[0])
    if k == n:
        return float(ds[-1]) + 1.0
    return 0.5 * float(ds[k - 1] + ds[k])


def accuracy(d, lab, t):
    return float(np.mean((d < t) == (lab == 0)))


def run_convnet(args, seed, tmp):
    exe = pathlib.Path(args.build) / "examples" / "siamese"
    start = time.perf_counter()
    out = subprocess.run([str(exe), "--loss", args.loss, str(args.data), str(args.epochs),
                          str(args.train_pairs), str(pathlib.Path(tmp) / f"siamese{seed}"),
                          str(seed)], check=True, capture_output=True, text=True,
                         env=dict(os.environ, OMP_WAIT_POLICY="passive")).stdout
    acc = float(re.search(r"verification accuracy ([0-9.]+)", out).group(1))
    return acc, time.perf_counter() - start


def run_torch(args, seed, xt, yt, xv, yv):
    import torch
    from torch import nn
    torch.set_num_threads(args.threads)
    torch.manual_seed(seed)
    tower = nn.Sequential(nn.Conv2d(1, 16, 3), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Conv2d(16, 32, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                          nn.Linear(32 * 5 * 5, 64), nn.ReLU(), nn.Linear(64, EMBED))
    for m in tower.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(m.weight)
            nn.init.zeros_(m.bias)
    opt = torch.optim.Adam(tower.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-7)
    xt_t, xv_t = torch.from_numpy(xt).permute(0, 3, 1, 2), torch.from_numpy(xv).permute(0, 3, 1, 2)
    mt, mv = by_class(yt), by_class(yv)

    def dist(a, b):
        return torch.sqrt(((a - b) ** 2).sum(1) + EPS)

    start = time.perf_counter()
    for e in range(1, args.epochs + 1):
        n = args.train_pairs
        if args.loss == "triplet":
            ia, ip, iq = draw_triplets(yt, mt, n, epoch_seed(seed, e))
        else:
            ia, ip, lab = draw_pairs(yt, mt, n, epoch_seed(seed, e))
            lab = torch.from_numpy(lab)
        for at in range(0, n, BATCH):
            sl = slice(at, min(at + BATCH, n))
            ea, ep = tower(xt_t[ia[sl]]), tower(xt_t[ip[sl]])
            if args.loss == "triplet":
                loss = torch.relu(dist(ea, ep) - dist(ea, tower(xt_t[iq[sl]])) + MARGIN).mean()
            else:
                d, y = dist(ea, ep), lab[sl]
                loss = ((1 - y) * d ** 2 + y * torch.relu(MARGIN - d) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        print(f"  torch seed {seed}: epoch {e}/{args.epochs} done", file=sys.stderr, flush=True)
    with torch.no_grad():
        et = torch.cat([tower(xt_t[i:i + 1000]) for i in range(0, len(xt_t), 1000)]).double()
        ev = torch.cat([tower(xv_t[i:i + 1000]) for i in range(0, len(xv_t), 1000)]).double()

    def pair_d(emb, y, members, s):
        a, b, lab = draw_pairs(y, members, EVAL_PAIRS, s)
        return torch.sqrt(((emb[a] - emb[b]) ** 2).sum(1)).float().numpy(), lab

    d, lab = pair_d(et, yt, mt, epoch_seed(seed, 0))
    t = best_threshold(d, lab)
    d, lab = pair_d(ev, yv, mv, TEST_PAIRS_SEED)
    return accuracy(d, lab, t), time.perf_counter() - start


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--build", default=os.environ.get("CN_BUILD_DIR", str(ROOT / "build")))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--train-pairs", type=int, default=30000, help="pairs per epoch")
    p.add_argument("--seeds", default="1,2,3")
    p.add_argument("--loss", choices=("contrastive", "triplet"), default="contrastive")
    p.add_argument("--data", default=str(DATA))
    p.add_argument("--torch-only", action="store_true")
    args = p.parse_args()
    d = pathlib.Path(args.data)
    if not (d / "train-images-idx3-ubyte.gz").exists():
        sys.exit(f"no Fashion-MNIST in {d} (apt-get install dataset-fashion-mnist)")
    xt, xv = images(d, "train"), images(d, "t10k")
    yt, yv = labels(d, "train"), labels(d, "t10k")
    print(f"CPU: {cpu_name()}, {args.threads} threads; {args.loss} loss, {args.epochs} epochs of "
          f"{args.train_pairs} pairs, batch {BATCH}")
    seeds = [int(s) for s in args.seeds.split(",")]
    with tempfile.TemporaryDirectory() as tmp:  # convnet first (the faster), then torch
        conv = {s: ((float("nan"), float("nan")) if args.torch_only else run_convnet(args, s, tmp))
                for s in seeds}
    if not args.torch_only:
        print("convnet: " + ", ".join(f"seed {s} {a:.4f} ({t:.0f} s)" for s, (a, t) in conv.items()),
              flush=True)
    print(f"{'seed':>4} {'convnet acc':>11} {'torch acc':>9} {'convnet s':>9} {'torch s':>8}")
    rows = []
    for seed in seeds:
        ta, tt = run_torch(args, seed, xt, yt, xv, yv)
        ca, ct = conv[seed]
        rows.append((ca, ta, ct, tt))
        print(f"{seed:>4} {ca:>11.4f} {ta:>9.4f} {ct:>9.1f} {tt:>8.1f}", flush=True)
    ca, ta, ct, tt = (statistics.mean(c) for c in zip(*rows))
    print(f"mean {ca:>11.4f} {ta:>9.4f} {ct:>9.1f} {tt:>8.1f}")
    print(f"verification accuracy convnet - torch: {100 * (ca - ta):+.2f} points "
          f"(bar: convnet >= 90 %, within 1 point)")


if __name__ == "__main__":
    main()
