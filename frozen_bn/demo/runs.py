"""The demo's runs: fine-tune one model, evaluate it three ways, label it.

Both processes of the demo run their settings with `run_setting`: the main
one with Keras 3, the graph-mode subprocess with tf_keras.

Inference and training mode see the whole held-out set as one batch: in
training mode a BN layer then normalizes with the statistics of the target
data rather than of 32 images, so a correct model's modes differ by no more
than its moving statistics differ from those, and mini-batch noise does not
blur the comparison. `predict()` batches as usual.
"""

from frozen_bn._fit_behaviour import class_label
from frozen_bn._metrics import binary_metrics
from frozen_bn._walk import batch_norm_layers
from frozen_bn.demo.data import load_data
from frozen_bn.demo.models import fine_tune
from frozen_bn.demo.protocol import MODES


def run_setting(keras_module, setting, weights, protocol):
    """Runs `setting` with each of its implementations, once per seed.

    Each run starts from a cleared session and its seed set.

    Args:
        keras_module: `keras`, or `tf_keras` for the TF1 graph-mode setting.
        setting: The `Setting`.
        weights: A dict `{seed: pretrained base weights}`.
        protocol: The `Protocol`.

    Yields:
        `(implementation, results)` per implementation, in order: the
        `run_one` results of its seeds.
    """
    for implementation in setting.implementations():
        results = []
        for seed, seed_weights in weights.items():
            keras_module.backend.clear_session()
            keras_module.utils.set_random_seed(seed)
            results.append(
                run_one(
                    keras_module,
                    seed,
                    seed_weights,
                    protocol,
                    setting,
                    implementation,
                )
            )
        yield implementation, results


def run_one(keras_module, seed, weights, protocol, setting, implementation):
    """Fine-tunes and evaluates one model.

    Returns:
        A JSON-able dict: `setting` and `implementation` (names), `seed`,
        `bn_class` (`bn_classes` of the model) and `modes`, the
        `binary_metrics` of each evaluation mode (`MODES`) on the held-out
        target images.
    """
    data = load_data(seed)
    model = fine_tune(
        keras_module, weights, data, protocol, setting, implementation
    )
    x, y = data["target_test"]
    return {
        "setting": setting.name,
        "implementation": implementation,
        "seed": seed,
        "bn_class": bn_classes(model),
        "modes": evaluate(
            keras_module, model, x, y, protocol.batch_size, setting.graph_mode
        ),
    }


def evaluate(keras_module, model, x, y, batch_size, graph_mode=False):
    """`binary_metrics` of `model` on `(x, y)`, per evaluation mode.

    `"dynamic"` is `predict()` with `batch_size`, the learning phase Keras
    picks on its own; `"inference"` and `"training"` run all of `x` as one
    batch in that mode (a Keras 3 model gets its weights back after the
    training-mode call, which updates moving statistics).

    Args:
        keras_module: `keras`, or `tf_keras` in TF1 graph mode.
        model: A model with one sigmoid output.
        x: The inputs.
        y: The 0/1 labels.
        batch_size: The batch size of `predict()`.
        graph_mode: Whether `model` is a tf_keras model in TF1 graph mode.

    Returns:
        A dict `{mode: binary_metrics}`, for each of `MODES`.
    """
    predictions = {
        "dynamic": model.predict(x, batch_size=batch_size, verbose=0)
    }
    by_mode = _graph_predict_by_mode if graph_mode else _keras3_predict_by_mode
    predictions.update(by_mode(keras_module, model, x))
    return {mode: binary_metrics(y, predictions[mode]) for mode in MODES}


def _keras3_predict_by_mode(keras_module, model, x):
    """Keras 3: calls with `training=False` and `training=True`."""
    snapshot = model.get_weights()

    def call(training):
        outputs = model(x, training=training)
        return keras_module.ops.convert_to_numpy(outputs)

    predictions = {"inference": call(False), "training": call(True)}
    # Training-mode calls update the moving statistics of trainable layers.
    model.set_weights(snapshot)
    return predictions


def _graph_predict_by_mode(keras_module, model, x):
    """TF1 graph mode: learning phase 0 and 1 fed."""
    backend = keras_module.backend
    run = backend.function(
        [model.input, backend.learning_phase()], [model.output]
    )
    return {"inference": run([x, 0])[0], "training": run([x, 1])[0]}


def bn_classes(model):
    """The `class_label`s of `model`'s BatchNormalization layers, sorted."""
    labels = {class_label(layer) for layer in batch_norm_layers(model)}
    return ", ".join(sorted(labels))
