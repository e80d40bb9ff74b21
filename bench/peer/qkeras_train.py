"""Peer side of bench/peer_throughput.py: QKeras 0.9 training speed, run in QKeras's own Python.

Runs in a separate interpreter (tensorflow-cpu 2.21, tf-keras 2.21, qkeras 0.9.0, with
TF_USE_LEGACY_KERAS=1) that never imports hqrun. Reads the arrays from an .npz file (data only,
allow_pickle=False), trains the jet model 16->64->32->32->5 float and Q6
(quantized_bits(6,0,alpha=1) kernels and biases, quantized_relu(6,0)), one thread, with a
validation pass after each epoch as hqrun's training does, and prints one JSON line:
{"qat": [wall_s, cpu_s], "float": [wall_s, cpu_s], "versions": {...}} for the timed epochs.
A one-epoch warm-up fit (tf.function tracing) comes first and is not timed.
"""

import argparse
import json
import os
import time

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402


def build(quantized: bool):
    from tf_keras import layers, models

    inputs = layers.Input((16,))
    x = inputs
    if quantized:
        from qkeras import QActivation, QDense, quantized_bits, quantized_relu

        for i, units in enumerate((64, 32, 32, 5)):
            x = QDense(units, kernel_quantizer=quantized_bits(6, 0, alpha=1),
                       bias_quantizer=quantized_bits(6, 0, alpha=1), kernel_initializer="glorot_uniform")(x)
            if i < 3:
                x = QActivation(quantized_relu(6, 0))(x)
    else:
        for i, units in enumerate((64, 32, 32, 5)):
            x = layers.Dense(units, activation="relu" if i < 3 else None)(x)
    model = models.Model(inputs, x)
    model.compile(optimizer=tf.keras.optimizers.Adam(1e-3),
                  loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def timed_fit(quantized: bool, data, epochs: int, batch_size: int) -> list:
    Xt, yt, Xv, yv = data
    model = build(quantized)
    model.fit(Xt, yt, batch_size=batch_size, epochs=1, verbose=0, validation_data=(Xv, yv),
              validation_batch_size=16384)
    wall, cpu = time.perf_counter(), time.process_time()
    model.fit(Xt, yt, batch_size=batch_size, epochs=epochs, verbose=0, validation_data=(Xv, yv),
              validation_batch_size=16384)
    return [time.perf_counter() - wall, time.process_time() - cpu]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("data")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=1024)
    args = parser.parse_args()
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    with np.load(args.data, allow_pickle=False) as f:
        data = (f["Xt"], f["yt"], f["Xv"], f["yv"])
    import qkeras
    import tf_keras

    out = {"qat": timed_fit(True, data, args.epochs, args.batch_size),
           "float": timed_fit(False, data, args.epochs, args.batch_size),
           "versions": {"tensorflow": tf.__version__, "tf_keras": tf_keras.__version__,
                        "qkeras": getattr(qkeras, "__version__", "?")}}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
