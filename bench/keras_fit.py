"""Keras's model.fit with a new order of the samples every epoch, reproducibly.

Keras 3.15 on TensorFlow 2.21: once keras.utils.set_random_seed has been called (as every
benchmark here does, for seeded initial weights), fit(shuffle=True) on NumPy arrays visits the
samples in ONE order, the same in every epoch: the permutation op is re-created with the same
seed for each epoch's iterator. Without a global seed fit draws a new order each epoch, as its
documentation says ("shuffle the training data before each epoch") and as the lecture's plain
model.fit(X, y) does. Training on one order for all epochs generalises measurably worse (the
from-scratch CNN of bench_scratch.py lost about 0.7 points of test accuracy to it), so the
references here shuffle themselves: epoch e trains on permutation e of a NumPy generator seeded
with the run's seed, in batches of batch_size with the last one partial, as fit does.
"""
import numpy as np


def fit_reshuffled(model, x, y=None, *, epochs, batch_size, seed, **kwargs):
    """model.fit(x, y, epochs=epochs, shuffle=True, ...) with a fresh seeded permutation per
    epoch. Callbacks see the usual epoch numbers; returns the merged history dict."""
    rng = np.random.default_rng(seed)
    history = {}
    for epoch in range(epochs):
        order = rng.permutation(len(x))
        data = (x[order],) if y is None else (x[order], y[order])
        h = model.fit(*data, batch_size=batch_size, epochs=epoch + 1, initial_epoch=epoch,
                      shuffle=False, verbose=0, **kwargs)
        for key, values in h.history.items():
            history.setdefault(key, []).extend(values)
    return history
