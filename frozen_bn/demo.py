"""`frozen-bn demo`: the seed post's experiment on real data, stock vs ours.

A small VGG-style network is pretrained on scikit-learn's digits (the
source domain: 10 classes, unshifted images), then fine-tuned on a new task
whose images have other statistics (the target domain: "is the digit >= 5?"
on low-contrast images, `x' = 0.4 x + 0.5`). Fine-tuning follows the seed
post's two stages: a new top trained with RMSprop on the frozen base, then
the base's last block fine-tuned too, with SGD and momentum 0.9. Each
result is evaluated on held-out target images three ways: as Keras does on
its own (`predict()`, the "dynamic" learning phase), in inference mode and
in training mode. A model whose frozen layers really are frozen gives the
same answer all three ways.

The experiment runs in three settings, each with the stock
BatchNormalization and with frozen_bn's:

1. tf_keras in TF1 graph mode, the seed post's setting, in a subprocess so
   that graph mode is set before anything else.
2. Keras 3 with the transfer-learning guide's pattern: the base called with
   `training=False`, later unfrozen with `base.trainable = True`.
3. Keras 3 with `trainable=False` alone, where the stock layer is right.

With the guide's pattern, a third run re-estimates the frozen base's
statistics on the target training images first (`frozen_bn.recalibrate`,
AdaBN).

The pretrained weights are cached (a `.npz` of the weights in the order
both Kerases list them) and re-used. Run it with `frozen-bn demo` or
`python -m frozen_bn demo`; `python -m frozen_bn.demo worker SPEC` is the
graph-mode subprocess, which prints its results as JSON.
"""

import dataclasses
import importlib.util
import json
import os
import subprocess
import sys
import time

import numpy as np

# Part of the cache file name: change it whenever `build_base` changes.
ARCHITECTURE = "vgg6-16px-v1"
IMAGE_SIZE = 16
SHIFT = (0.4, 0.5)  # target images: x' = 0.4 x + 0.5
# The layers of the base that stage 2 fine-tunes (the seed: after layer 139
# of ResNet50's 175, i.e. its last stage).
FINE_TUNED_BLOCK = "block3"
MODES = ("dynamic", "inference", "training")
MODE_LABELS = {
    "dynamic": "Dynamic (predict)",
    "inference": "inference mode",
    "training": "training mode",
}
# A gap (training- minus inference-mode accuracy) within this many points
# counts as agreement.
AGREEMENT_POINTS = 3.0


@dataclasses.dataclass(frozen=True)
class Protocol:
    """The experiment's schedule; printed with every run."""

    pretrain_epochs: int = 12
    stage1_epochs: int = 10
    stage2_epochs: int = 5
    # RMSprop for stage 1 (the seed: RMSprop with its default 1e-3).
    stage1_learning_rate: float = 1e-3
    # SGD with momentum 0.9 for stage 2 (the seed: 1e-4). Our target set
    # is ~450 images, 15 steps an epoch: 1e-4 would barely move the net.
    stage2_learning_rate: float = 3e-3
    # BN momentum of the architecture (the seed's ResNet50: 0.99). The
    # statistics of the layers fine-tuned in stage 2 must settle in its
    # ~75 steps; with 0.99 half of the source statistics would remain.
    bn_momentum: float = 0.9
    batch_size: int = 32

    def describe(self):
        return (
            f"pretraining: {self.pretrain_epochs} epochs Adam(1e-3) on the "
            "source digits (10 classes)\n"
            f"stage 1: {self.stage1_epochs} epochs RMSprop(learning_rate="
            f"{self.stage1_learning_rate:g}), base frozen\n"
            f"stage 2: {self.stage2_epochs} epochs SGD(learning_rate="
            f"{self.stage2_learning_rate:g}, momentum=0.9), layers of "
            f"{FINE_TUNED_BLOCK} (the base's last 6 of 19) trainable\n"
            f"batch size {self.batch_size}, BN momentum {self.bn_momentum:g}"
            f", images {IMAGE_SIZE}x{IMAGE_SIZE}, target shift x' = "
            f"{SHIFT[0]:g} x + {SHIFT[1]:g}\n"
            "evaluation on the held-out target images: predict() (batch "
            f"{self.batch_size}); inference and training mode with all of "
            "them as one batch"
        )


FULL = Protocol()
# Quick: stage 1 shortened only; stage 2 keeps its 5 epochs, which the
# statistics of the fine-tuned block need to settle.
QUICK = Protocol(stage1_epochs=4)


@dataclasses.dataclass(frozen=True)
class Setting:
    """One way of fine-tuning; each runs with the stock BN and with ours."""

    name: str
    title: str
    # The `training` argument the base is called with.
    base_training: bool | None
    graph_mode: bool = False
    # Whether a third run adds `frozen_bn.recalibrate` (AdaBN) to ours.
    recalibrated_row: bool = False


SETTINGS = (
    Setting(
        "tf_keras_graph",
        "tf_keras, TF1 graph mode (the seed post's setting)",
        base_training=None,
        graph_mode=True,
    ),
    Setting(
        "keras3_guide",
        "Keras 3, the guide's pattern: base(x, training=False), then "
        "base.trainable = True",
        base_training=False,
        recalibrated_row=True,
    ),
    Setting(
        "keras3_trainable",
        "Keras 3, trainable=False only (stock is right here)",
        base_training=None,
    ),
)
IMPLEMENTATIONS = {
    "stock": "stock",
    "patched": "frozen_bn",
    "recalibrated": "frozen_bn + recalibrate",
}


# Data ---------------------------------------------------------------------


def load_data(seed):
    """Source and target splits of scikit-learn's digits, fixed by `seed`.

    Returns:
        A dict of `(x, y)` pairs: `"source"` (half of the images, 10
        classes, pixels in [0, 1]), and `"target_train"` / `"target_test"`
        (a quarter each, label `digit >= 5`, images shifted to
        `0.4 x + 0.5`). Images are `IMAGE_SIZE` square, one channel.
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    scale = IMAGE_SIZE // digits.images.shape[1]
    images = digits.images.astype("float32") / 16.0
    images = images.repeat(scale, axis=1).repeat(scale, axis=2)[..., None]
    order = np.random.default_rng(seed).permutation(len(images))
    half, three_quarters = len(order) // 2, 3 * len(order) // 4
    parts = np.split(order, [half, three_quarters])
    source, train, test = ((images[i], digits.target[i]) for i in parts)
    scale, offset = SHIFT

    def target(part):
        x, y = part
        return scale * x + offset, (y >= 5).astype("float32")

    return {
        "source": source,
        "target_train": target(train),
        "target_test": target(test),
    }


# Models -------------------------------------------------------------------


def build_base(K, bn_momentum):
    """The pretrained architecture, built with the Keras module `K`.

    Three blocks of two Conv+BN+ReLU layers (16, 32, 64 filters), with max
    pooling between them.
    """
    layers = K.layers
    inputs = K.Input((IMAGE_SIZE, IMAGE_SIZE, 1))
    x = inputs
    for block, filters in enumerate((16, 32, 64), start=1):
        for conv in (1, 2):
            name = f"block{block}_conv{conv}"
            x = layers.Conv2D(
                filters, 3, padding="same", use_bias=False, name=name
            )(x)
            x = layers.BatchNormalization(
                momentum=bn_momentum, name=f"{name}_bn"
            )(x)
            x = layers.ReLU(name=f"{name}_relu")(x)
        if block < 3:
            x = layers.MaxPooling2D(name=f"block{block}_pool")(x)
    return K.Model(inputs, x, name="base")


def load_pretrained_base(K, weights, bn_momentum):
    """The pretrained base as a user gets it: from its config, then weights.

    That is what `load_model` and `keras.applications` do. In TF1 graph
    mode it matters: tf_keras then gives the V1 BatchNormalization class
    to a model built from a config (and to its applications), while its
    public `tf_keras.layers.BatchNormalization` is the V2 class.
    """
    base = K.Model.from_config(build_base(K, bn_momentum).get_config())
    base.set_weights(weights)
    return base


def _with_head(K, base, units, activation, training=None):
    inputs = K.Input((IMAGE_SIZE, IMAGE_SIZE, 1))
    x = base(inputs, training=training)
    x = K.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = K.layers.Dense(units, activation=activation, name="top")(x)
    return K.Model(inputs, outputs, name="classifier")


def pretrained_weights(seed, protocol, cache_dir, retrain=False):
    """The base's pretrained weights for `seed`, from the cache or trained.

    Pretraining uses Keras 3 (the current backend); the weights are saved
    as a `.npz` in `get_weights()` order, which tf_keras shares.

    Returns:
        A pair `(weights, path)`: a list of numpy arrays and the cache file.
    """
    name = (
        f"pretrained_{ARCHITECTURE}_bn{protocol.bn_momentum:g}"
        f"_e{protocol.pretrain_epochs}_seed{seed}.npz"
    )
    path = os.path.join(cache_dir, name)
    if os.path.exists(path) and not retrain:
        return _load_weights(path), path
    import keras

    keras.utils.set_random_seed(seed)
    x, y = load_data(seed)["source"]
    base = build_base(keras, protocol.bn_momentum)
    model = _with_head(keras, base, 10, "softmax")
    model.compile(
        keras.optimizers.Adam(1e-3),
        "sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    model.fit(
        x,
        y,
        batch_size=protocol.batch_size,
        epochs=protocol.pretrain_epochs,
        verbose=0,
    )
    weights = base.get_weights()
    os.makedirs(cache_dir, exist_ok=True)
    np.savez(path, **{f"w{i}": w for i, w in enumerate(weights)})
    return weights, path


def _load_weights(path):
    with np.load(path) as stored:
        return [stored[f"w{i}"] for i in range(len(stored.files))]


def fine_tune(K, weights, data, protocol, setting, implementation):
    """Builds the target model on the pretrained base and trains it.

    The seed's two stages: a new top on the frozen base, then the base's
    last block too. `implementation` is `"stock"`, `"patched"` (the model
    goes through `frozen_bn.patch_model` before training, as a user would
    do it) or `"recalibrated"` (patched, and the base's statistics
    re-estimated on the target training images first).

    Returns:
        The trained model.
    """
    base = load_pretrained_base(K, weights, protocol.bn_momentum)
    base.trainable = False
    model = _with_head(K, base, 1, "sigmoid", training=setting.base_training)
    if implementation != "stock":
        import frozen_bn

        model = frozen_bn.patch_model(model)
        base = model.get_layer("base")
        if implementation == "recalibrated":
            frozen_bn.recalibrate(
                base,
                data["target_train"][0],
                batch_size=protocol.batch_size,
                verbose=0,
            )
    # tf_keras's TF1 graph mode needs its legacy optimizers.
    optimizers = K.optimizers.legacy if setting.graph_mode else K.optimizers
    x, y = data["target_train"]
    fit = dict(x=x, y=y, batch_size=protocol.batch_size, verbose=0)
    model.compile(
        optimizers.RMSprop(learning_rate=protocol.stage1_learning_rate),
        "binary_crossentropy",
    )
    model.fit(epochs=protocol.stage1_epochs, **fit)
    base.trainable = True
    for layer in base.layers:
        layer.trainable = layer.name.startswith(FINE_TUNED_BLOCK)
    model.compile(
        optimizers.SGD(
            learning_rate=protocol.stage2_learning_rate, momentum=0.9
        ),
        "binary_crossentropy",
    )
    model.fit(epochs=protocol.stage2_epochs, **fit)
    return model


def bn_class_of(model):
    """`module.name` of the BatchNormalization class(es) `model` uses."""
    from frozen_bn import _walk

    # By name, so that a stock run does not import `frozen_bn.tf_keras`.
    classes = {
        type(layer)
        for layer in _walk.iter_layers(model)
        if type(layer).__name__.startswith("BatchNormalization")
    }
    return ", ".join(sorted(f"{c.__module__}.{c.__name__}" for c in classes))


# Evaluation ---------------------------------------------------------------


# Inference and training mode see the whole held-out set as one batch: in
# training mode a BN layer then normalizes with the statistics of the
# target data rather than of 32 images, so a correct model's modes differ
# by no more than its moving statistics differ from those, and mini-batch
# noise does not blur the comparison. `predict()` batches as usual.


def _keras3_predict_by_mode(model, x, batch_size):
    """Keras 3: `predict()`, then calls with `training=False` and `True`."""
    import keras

    snapshot = model.get_weights()

    def call(training):
        return keras.ops.convert_to_numpy(model(x, training=training))

    predictions = {
        "dynamic": model.predict(x, batch_size=batch_size, verbose=0),
        "inference": call(False),
        "training": call(True),
    }
    # Training-mode calls update the moving statistics of trainable layers.
    model.set_weights(snapshot)
    return predictions


def _graph_predict_by_mode(K, model, x, batch_size):
    """TF1 graph mode: `predict()`, then learning phase 0 and 1 fed."""
    run = K.backend.function(
        [model.input, K.backend.learning_phase()], [model.output]
    )
    return {
        "dynamic": model.predict(x, batch_size=batch_size, verbose=0),
        "inference": run([x, 0])[0],
        "training": run([x, 1])[0],
    }


def metrics(y, p):
    """Loss, accuracy, ROC AUC and positive fraction of probabilities `p`."""
    from sklearn.metrics import roc_auc_score

    y = np.asarray(y, "float64").ravel()
    p = np.asarray(p, "float64").ravel()
    clipped = np.clip(p, 1e-7, 1 - 1e-7)
    loss = -np.mean(y * np.log(clipped) + (1 - y) * np.log(1 - clipped))
    positive = p > 0.5
    return {
        "loss": float(loss),
        "accuracy": float(np.mean(positive == (y == 1))),
        "auc": float(roc_auc_score(y, p)),
        "positive": float(np.mean(positive)),
    }


def run_one(K, seed, weights, protocol, setting, implementation):
    """Fine-tunes and evaluates one model; returns a JSON-able dict."""
    data = load_data(seed)
    model = fine_tune(K, weights, data, protocol, setting, implementation)
    x, y = data["target_test"]
    if setting.graph_mode:
        predictions = _graph_predict_by_mode(K, model, x, protocol.batch_size)
    else:
        predictions = _keras3_predict_by_mode(model, x, protocol.batch_size)
    return {
        "setting": setting.name,
        "implementation": implementation,
        "seed": seed,
        "bn_class": bn_class_of(model),
        "modes": {mode: metrics(y, predictions[mode]) for mode in MODES},
    }


# The graph-mode subprocess ------------------------------------------------


def _graph_mode_worker(spec):
    """Runs the tf_keras graph-mode experiment: stock first, then ours.

    The stock runs come first, so nothing of frozen_bn's tf_keras support
    is imported while they run.
    """
    import tensorflow as tf

    # Before tf_keras is imported, as a TF1 program does it.
    tf.compat.v1.disable_v2_behavior()
    import tf_keras

    protocol = Protocol(**spec["protocol"])
    setting = next(s for s in SETTINGS if s.graph_mode)
    results = []
    for implementation in _implementations(setting):
        for seed, path in zip(spec["seeds"], spec["weights"], strict=True):
            tf_keras.backend.clear_session()
            tf_keras.utils.set_random_seed(seed)
            results.append(
                run_one(
                    tf_keras,
                    seed,
                    _load_weights(path),
                    protocol,
                    setting,
                    implementation,
                )
            )
    return results


def _start_graph_mode_worker(seeds, weight_paths, protocol):
    """Starts the graph-mode subprocess; `_collect` gets its results."""
    spec = {
        "seeds": list(seeds),
        "weights": weight_paths,
        "protocol": dataclasses.asdict(protocol),
    }
    env = {
        **os.environ,
        "KERAS_BACKEND": "tensorflow",
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "frozen_bn.demo", "worker", json.dumps(spec)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def _collect(process):
    stdout, stderr = process.communicate()
    if process.returncode != 0:
        raise RuntimeError(
            "The tf_keras graph-mode run failed (exit code "
            f"{process.returncode}):\n{stderr[-3000:]}"
        )
    return json.loads(stdout.strip().splitlines()[-1])


def _installed(name):
    return importlib.util.find_spec(name) is not None


def graph_mode_available():
    """Whether tensorflow and tf_keras are installed, for the seed's run."""
    return _installed("tensorflow") and _installed("tf_keras")


def missing_requirements():
    """The packages the demo needs that are not installed (pip names)."""
    needed = {"sklearn": "scikit-learn", "matplotlib": "matplotlib"}
    return [pip for module, pip in needed.items() if not _installed(module)]


# The demo -----------------------------------------------------------------


def default_cache_dir():
    """`$XDG_CACHE_HOME/frozen_bn`, or `~/.cache/frozen_bn`."""
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(
        os.path.expanduser("~"), ".cache"
    )
    return os.path.join(root, "frozen_bn")


def run_demo(
    *,
    quick=False,
    seeds=(0,),
    retrain=False,
    out=None,
    cache_dir=None,
    graph_mode=True,
):
    """Runs the experiment, prints the table and draws the figure.

    Args:
        quick: Shorter fine-tuning (`QUICK` instead of `FULL`).
        seeds: The seeds to run; results are averaged over them.
        retrain: Pretrain again even if cached weights exist.
        out: Path of the figure (PNG); defaults to `demo.png` in
            `cache_dir`.
        cache_dir: Where pretrained weights are cached; defaults to
            `default_cache_dir()`.
        graph_mode: Whether to run the tf_keras TF1 graph-mode setting
            (needs tensorflow and tf_keras).

    Returns:
        A list of result dicts, one per setting, implementation and seed,
        with the metrics per evaluation mode (`MODES`).
    """
    import keras

    protocol = QUICK if quick else FULL
    cache_dir = cache_dir or default_cache_dir()
    out = out or os.path.join(cache_dir, "demo.png")
    start = time.perf_counter()
    print(
        f"frozen-bn demo ({'quick' if quick else 'full'}), Keras "
        f"{keras.__version__} on {keras.backend.backend()}, seeds "
        f"{list(seeds)}\n{protocol.describe()}\n",
        flush=True,
    )
    weights, paths = {}, []
    for seed in seeds:
        weights[seed], path = pretrained_weights(
            seed, protocol, cache_dir, retrain
        )
        paths.append(path)
        print(f"pretrained base (seed {seed}): {path}", flush=True)
    # The graph-mode subprocess runs while this process runs Keras 3.
    worker = graph_mode and _start_graph_mode_worker(seeds, paths, protocol)
    results = []
    for setting in SETTINGS:
        if setting.graph_mode:
            continue
        for implementation in _implementations(setting):
            for seed in seeds:
                keras.utils.set_random_seed(seed)
                results.append(
                    run_one(
                        keras,
                        seed,
                        weights[seed],
                        protocol,
                        setting,
                        implementation,
                    )
                )
            print(
                f"fine-tuned: {setting.name}, {implementation} "
                f"({time.perf_counter() - start:.0f} s)",
                flush=True,
            )
    if worker:
        results = _collect(worker) + results
    print()
    print(format_report(results))
    draw_figure(results, out)
    print(f"\nfigure: {out}")
    print(f"total time: {time.perf_counter() - start:.0f} s")
    return results


def _implementations(setting):
    names = ["stock", "patched"]
    return names + ["recalibrated"] if setting.recalibrated_row else names


# Reporting ----------------------------------------------------------------


def summarize(results, setting, implementation, mode, metric):
    """Mean and standard deviation of `metric` over seeds."""
    values = [
        r["modes"][mode][metric]
        for r in results
        if r["setting"] == setting and r["implementation"] == implementation
    ]
    return float(np.mean(values)), float(np.std(values))


def gap(results, setting, implementation):
    """Training- minus inference-mode accuracy, in points (seed mean)."""
    train = summarize(results, setting, implementation, "training", "accuracy")
    test = summarize(results, setting, implementation, "inference", "accuracy")
    return 100 * (train[0] - test[0])


def _groups(results):
    """`(setting, [implementations])` in display order, for those run."""
    present = {(r["setting"], r["implementation"]) for r in results}
    for setting in SETTINGS:
        names = [n for n in IMPLEMENTATIONS if (setting.name, n) in present]
        if names:
            yield setting, names


def format_report(results):
    """The table of all results and a conclusion per setting, as text."""
    lines = []
    header = (
        f"  {'implementation':<24}{'evaluation':<19}{'loss':>7}"
        f"{'accuracy (%)':>16}{'ROC AUC':>9}{'positive':>10}"
    )
    for setting, names in _groups(results):
        lines += ["", setting.title]
        if setting.base_training is False:
            lines.append(f"  ({_what_fit_does_with_training_false()})")
        lines.append(header)
        for name in names:
            for mode in MODES:
                label = IMPLEMENTATIONS[name] if mode == MODES[0] else ""
                lines.append(
                    f"  {label:<24}{MODE_LABELS[mode]:<19}"
                    + _metrics_cells(results, setting.name, name, mode)
                )
        for name in names:
            (bn_class,) = {
                r["bn_class"]
                for r in results
                if (r["setting"], r["implementation"]) == (setting.name, name)
            }
            lines.append(f"  BN class of {IMPLEMENTATIONS[name]}: {bn_class}")
        lines.append("  -> " + conclusion(results, setting, names))
    return "\n".join(lines).lstrip("\n")


def _metrics_cells(results, setting, implementation, mode):
    def mean(metric):
        return summarize(results, setting, implementation, mode, metric)[0]

    accuracy, spread = summarize(
        results, setting, implementation, mode, "accuracy"
    )
    return (
        f"{mean('loss'):>7.3f}{100 * accuracy:>9.1f} ± {100 * spread:<4.1f}"
        f"{mean('auc'):>9.3f}{mean('positive'):>10.2f}"
    )


def _what_fit_does_with_training_false():
    import keras

    from frozen_bn import _training_arg

    if not _training_arg.honours_recorded_training():
        kept = "overrides the recorded training=False: the base trains"
    elif _training_arg.leaks_recorded_training():
        kept = (
            "keeps the recorded training=False, and passes it on to the "
            "layers after the base"
        )
    else:
        kept = "keeps the recorded training=False"
    return f"Keras {keras.__version__}: the stock fit() {kept}"


def conclusion(results, setting, names):
    """One line: per implementation, do the three evaluation modes agree?"""
    parts = []
    for name in names:
        accuracies = [
            100 * summarize(results, setting.name, name, mode, "accuracy")[0]
            for mode in MODES
        ]
        points = gap(results, setting.name, name)
        verdict = "agree" if abs(points) <= AGREEMENT_POINTS else "DISAGREE"
        parts.append(
            f"{IMPLEMENTATIONS[name]}: "
            + " / ".join(f"{a:.1f}" for a in accuracies)
            + f"% (training - inference {points:+.1f} points: {verdict})"
        )
    return "accuracy Dynamic / inference / training: " + "; ".join(parts)


def draw_figure(results, path):
    """Grouped bars: accuracy per evaluation mode, per implementation."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    groups = [
        (setting, name) for setting, names in _groups(results) for name in names
    ]
    figure, axes = pyplot.subplots(figsize=(1.6 * len(groups) + 2, 4.5))
    width = 0.8 / len(MODES)
    positions = np.arange(len(groups))
    for index, mode in enumerate(MODES):
        stats = [
            summarize(results, s.name, n, mode, "accuracy") for s, n in groups
        ]
        axes.bar(
            positions + (index - 1) * width,
            [100 * mean for mean, _ in stats],
            width,
            yerr=[100 * spread for _, spread in stats],
            label=MODE_LABELS[mode],
        )
    short = {
        "tf_keras_graph": "tf_keras graph",
        "keras3_guide": "Keras 3 guide",
        "keras3_trainable": "Keras 3\ntrainable=False",
    }
    axes.set_xticks(
        positions,
        [f"{short[s.name]}\n{IMPLEMENTATIONS[n]}" for s, n in groups],
        fontsize=8,
    )
    axes.set_ylabel("held-out accuracy (%)")
    axes.set_ylim(0, 100)
    axes.axhline(50, color="gray", linewidth=0.8, linestyle=":")
    axes.set_title("Fine-tuned digits model: accuracy by evaluation mode")
    axes.legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    figure.savefig(path, dpi=120)
    pyplot.close(figure)


if __name__ == "__main__":
    if sys.argv[1:2] != ["worker"] or len(sys.argv) != 3:
        sys.exit("usage: python -m frozen_bn.demo worker SPEC_JSON")
    print(json.dumps(_graph_mode_worker(json.loads(sys.argv[2]))))
