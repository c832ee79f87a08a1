#!/usr/bin/env python3
"""Exports a keras.applications model with the weights of a save_weights file to ONNX, for
bench_models.py. Needs a python with TensorFlow, Keras 3, tf2onnx and onnx (bench/setup_onnx_venv.sh).
Usage: export_onnx.py KerasName weights.h5 out.onnx"""
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def main():
    keras_name, weights, out = sys.argv[1:4]
    import keras
    import numpy as np
    model = getattr(keras.applications, keras_name)(weights=None)
    model.load_weights(weights)
    side = model.input.shape[1]
    model(np.zeros((1, side, side, 3), np.float32))  # export refuses a model never called
    model.export(out, format="onnx", verbose=False)


if __name__ == "__main__":
    main()
