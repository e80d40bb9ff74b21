"""Peer side of bench/search_throughput.py --peer-python: an AutoQKeras search, timed per trial.

Runs in a separate interpreter (tensorflow-cpu 2.21, tf-keras 2.21, qkeras 0.9.0, keras-tuner
1.4.8, with TF_USE_LEGACY_KERAS=1) that never imports hqrun. Reads the arrays from an .npz file
(data only, allow_pickle=False) and the quantizer menu from a JSON file (the bench writes hqrun's
deployable menu there, so both tools search the same quantizers), then does what AutoQKeras's
own example does: trains the float jet model 16->64->32->32->5 briefly, and runs
``AutoQKeras(mode="bayesian")`` on it with the energy goal (QTools's forgiving factor, delta_p =
delta_n = 8 %, rate 2, stress 1, QTools's default memory settings: hqrun's defaults too),
float weights transferred, N trials x up to E epochs, batch 1024, one TensorFlow thread, and
AutoQKeras's own early stopping (val_loss, patience min(20, E // 5)).

Each trial is timed from its own records: a tuner hook from the trial's start to its end (model
quantization, QTools pricing, compile, fit, keras-tuner's checkpoint) and a Keras callback
around its fit that counts the epochs actually run (early stopping cuts some). The last line on
stdout is one JSON object: per-trial seconds / fit seconds / epochs / configuration, the totals,
trial-epochs per hour per core, and versions. Everything else the tools print goes to stderr.

If one of the peer's packages is missing, it prints {"missing": "<module>", "error": "..."}
and exits with status 3, before any work, so the bench can say what to install.
"""

import argparse
import contextlib
import json
import os
import sys
import time

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

MISSING_STATUS = 3
PEER_MODULES = ("numpy", "tensorflow", "tf_keras", "qkeras", "keras_tuner", "tensorboard", "sklearn", "scipy")

#: hqrun's jet_dnn layer names, so AutoQKeras's hyperparameter names (<layer>_kernel_quantizer,
#: ...) map onto hqrun's search keys (<layer>__kernel, ...) and the bench can replay them.
HIDDEN = ((64, "dense_1", "relu_1"), (32, "dense_2", "relu_2"), (32, "dense_3", "relu_3"))


def check_modules() -> None:
    """Exit with MISSING_STATUS and a JSON line naming the first module that is not installed.

    Only looked up, not imported: keras-tuner must be imported later, the tf-keras way.
    """
    import importlib.util

    for name in PEER_MODULES:
        if importlib.util.find_spec(name) is None:
            print(json.dumps({"missing": name, "error": f"No module named {name!r}"}))
            sys.exit(MISSING_STATUS)


def float_model(n_inputs: int, n_classes: int):
    """The float jet model with hqrun's layer names, compiled as AutoQKeras expects."""
    import tensorflow as tf
    from tf_keras import layers, models

    inputs = layers.Input((n_inputs,), name="input")
    x = inputs
    for units, dense, relu in HIDDEN:
        x = layers.Dense(units, name=dense)(x)
        x = layers.Activation("relu", name=relu)(x)
    x = layers.Dense(n_classes, name="dense_4")(x)
    outputs = layers.Activation("softmax", name="softmax")(x)
    model = models.Model(inputs, outputs)
    # the legacy Adam: AutoQKeras compiles every trial with the reference model's optimizer
    # object, which tf-keras's newer optimizer refuses for a second set of variables
    model.compile(optimizer=tf.keras.optimizers.legacy.Adam(1e-3),
                  loss="sparse_categorical_crossentropy", metrics=["acc"])
    return model


def energy_goal() -> dict:
    """AutoQKeras's energy goal with the forgiving factor as in its example and the paper."""
    return {"type": "energy",
            "params": {"delta_p": 8.0, "delta_n": 8.0, "rate": 2.0, "stress": 1.0,
                       "process": "horowitz"}}


def limits(menu: dict) -> dict:
    """Bit limits that let every menu entry through (AutoQKeras skips layers not named here)."""
    widest = {kind: max(entries.values()) for kind, entries in menu.items()}
    return {"Dense": [widest["kernel"], widest["bias"], widest["activation"]],
            "Activation": [widest["activation"]]}


def import_keras_tuner_on_tf_keras():
    """Import keras-tuner so that it drives tf-keras models, as AutoQKeras 0.9 needs.

    Why: keras-tuner 1.4.8 decides once, at import, between Keras 3 and ``tf.keras`` by the
    version of the ``keras`` package; tensorflow 2.21 installs Keras 3, so keras-tuner would
    refuse every tf-keras model AutoQKeras builds ("Expected ... a valid Keras Model"). With
    ``keras`` standing for tf-keras during that one import, keras-tuner takes its ``tf.keras``
    path (tf-keras under TF_USE_LEGACY_KERAS=1); the alias is removed right after.
    """
    import tf_keras

    saved = sys.modules.get("keras")
    sys.modules["keras"] = tf_keras
    try:
        import keras_tuner
    finally:
        if saved is None:
            sys.modules.pop("keras", None)
        else:
            sys.modules["keras"] = saved
    return keras_tuner


def expose_qkeras_layers() -> None:
    """Make QKeras's layers findable where tf-keras 2.21 looks for them.

    Why: AutoQKeras builds each trial with ``qkeras.utils.model_quantize``, which renames
    ``Dense`` to ``QDense`` in the model's JSON but keeps the ``"module": "keras.layers"`` that
    tf-keras 2.21 writes; tf-keras then looks the class up in ``tf_keras.layers`` and fails
    ("Could not locate class 'QDense'") although qkeras passes it as a custom object. Adding the
    classes to that namespace, in this peer process only, lets AutoQKeras 0.9 run unchanged.
    """
    import qkeras
    import tf_keras.layers

    for name in ("QDense", "QActivation"):
        if not hasattr(tf_keras.layers, name):
            setattr(tf_keras.layers, name, getattr(qkeras, name))


def make_fit_timer():
    """A Keras callback timing each fit and counting its epochs; keras-tuner deep-copies the
    callbacks of every trial, so the copy is the callback itself and the records stay here."""
    import tf_keras

    class FitTimer(tf_keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.fits: list[dict] = []

        def __deepcopy__(self, memo):
            return self

        def on_train_begin(self, logs=None):
            self.fits.append({"t0": time.perf_counter(), "epochs": 0})

        def on_epoch_end(self, epoch, logs=None):
            self.fits[-1]["epochs"] += 1

        def on_train_end(self, logs=None):
            self.fits[-1]["seconds"] = time.perf_counter() - self.fits[-1].pop("t0")

    return FitTimer()


def make_tuner_class(keras_tuner, timer):
    """BayesianOptimization that records each trial's wall and CPU time, configuration, and the
    fits ``timer`` saw during it (none if the trial failed before fitting)."""

    class TimedBayesian(keras_tuner.BayesianOptimization):
        def __init__(self, hypermodel, autoqkeras_config=None, **kwargs):  # AutoQKeras passes its arguments; unused
            super().__init__(hypermodel, **kwargs)
            self.trial_records: list[dict] = []

        def on_trial_begin(self, trial):
            self._started = (time.perf_counter(), time.process_time(), len(timer.fits))
            super().on_trial_begin(trial)

        def on_trial_end(self, trial):
            super().on_trial_end(trial)
            wall, cpu, first_fit = self._started
            fits = timer.fits[first_fit:]
            self.trial_records.append({
                "seconds": time.perf_counter() - wall, "cpu_seconds": time.process_time() - cpu,
                "fit_seconds": sum(f.get("seconds", 0.0) for f in fits),
                "epochs": sum(f["epochs"] for f in fits),
                "status": str(getattr(trial, "status", "")),
                "score": trial.score,
                "hyperparameters": dict(trial.hyperparameters.values)})

    return TimedBayesian


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", help=".npz with Xt, yt, Xv, yv")
    parser.add_argument("menu", help="JSON: {kind: {quantizer spec: bits}}")
    parser.add_argument("workdir", help="directory for the tuner's files")
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--reference-epochs", type=int, default=1)
    parser.add_argument("--initial-points", type=int, default=5,
                        help="random trials before the Gaussian process (hqrun's bayesian: 5)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    check_modules()

    import numpy as np
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    with np.load(args.data, allow_pickle=False) as f:
        Xt, yt, Xv, yv = f["Xt"], f["yt"], f["Xv"], f["yv"]
    with open(args.menu, encoding="utf-8") as f:
        menu = json.load(f)

    keras_tuner = import_keras_tuner_on_tf_keras()
    import qkeras
    import tf_keras
    from qkeras.autoqkeras import AutoQKeras

    expose_qkeras_layers()
    tf_keras.utils.set_random_seed(args.seed)
    started = time.perf_counter()
    with contextlib.redirect_stdout(sys.stderr):   # summaries and tuner chatter off stdout
        reference = float_model(Xt.shape[1], int(max(yt.max(), yv.max())) + 1)
        t0 = time.perf_counter()
        reference.fit(Xt, yt, batch_size=args.batch_size, epochs=args.reference_epochs, verbose=0,
                      validation_data=(Xv, yv))
        reference_seconds = time.perf_counter() - t0
        timer = make_fit_timer()
        autoqk = AutoQKeras(reference, metrics=["acc"], goal=energy_goal(),
                            output_dir=os.path.join(args.workdir, "autoqkeras"), mode="bayesian",
                            custom_tuner=make_tuner_class(keras_tuner, timer), transfer_weights=True,
                            limit=limits(menu), tune_filters="none", tune_filters_exceptions="^$",
                            quantization_config=menu,
                            max_trials=args.trials, num_initial_points=args.initial_points,
                            seed=args.seed, directory=args.workdir)
        t0 = time.perf_counter()
        autoqk.fit(Xt, yt, validation_data=(Xv, yv), batch_size=args.batch_size, epochs=args.epochs,
                   verbose=0, callbacks=[timer])
        search_seconds = time.perf_counter() - t0
    trials = autoqk.tuner.trial_records
    seconds = sum(t["seconds"] for t in trials)
    epochs = sum(t["epochs"] for t in trials)
    print(json.dumps({
        "trials": trials, "trial_seconds": seconds, "trial_epochs": epochs,
        "cpu_seconds": sum(t["cpu_seconds"] for t in trials),
        "trial_epochs_per_hour_per_core": 3600 * epochs / seconds if seconds else None,
        "search_seconds": search_seconds, "reference_seconds": reference_seconds,
        "total_seconds": time.perf_counter() - started,
        "versions": {"tensorflow": tf.__version__, "tf_keras": tf_keras.__version__,
                     "qkeras": getattr(qkeras, "__version__", "?"),
                     "keras_tuner": keras_tuner.__version__, "python": sys.version.split()[0]}}))


if __name__ == "__main__":
    main()
