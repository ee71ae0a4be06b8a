"""Tests for `frozen_bn.recalibrate` and the probe behind it (every backend)."""

import keras
import numpy as np
import pytest

import frozen_bn
from frozen_bn import _probe
from frozen_bn._walk import batch_norm_layers
from tests import keras_hub_models
from tests.helpers import (
    all_weights,
    assert_weights_bitwise_equal,
    images,
    moving_statistics,
    to_numpy,
)

# Float32 moments per batch against a float64 reference over all samples.
TOLERANCE = {"rtol": 1e-4, "atol": 1e-5}


def conv_model(frozen=()):
    """A flat Functional model: BN on two axes, frozen ones, a Dropout."""
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, name="conv_a")(inputs)
    x = keras.layers.BatchNormalization(name="bn_a")(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.Conv2D(5, 3, name="conv_b")(x)
    x = frozen_bn.BatchNormalization(name="bn_b", freeze_moving_stats=True)(x)
    x = keras.layers.BatchNormalization(axis=1, name="bn_c")(x)
    x = keras.layers.Dropout(0.5)(x)  # After the BNs: inputs stay exact.
    outputs = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, outputs)
    for name in frozen:
        model.get_layer(name).trainable = False
    return model


class InTrainingMode(keras.Model):
    """Runs `model` in training mode, even in `predict()` (compiled)."""

    def __init__(self, model):
        super().__init__()
        self.inner = model

    def call(self, x):
        return self.inner(x, training=True)


def reference_statistics(model, x, batch_size=32):
    """Population statistics of every BN input, from an independent probe.

    A copy of `model` with every BN layer in batch-statistics mode is cut
    into a probe model whose outputs are the BN inputs; running it batch by
    batch in training mode (`predict` of a wrapper that calls it with
    `training=True`) gives each layer's inputs, whose mean and variance over
    all samples are computed in float64 numpy.
    """
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    layers = batch_norm_layers(copy)
    for layer in layers:
        layer.trainable = True
        if hasattr(layer, "freeze_moving_stats"):
            layer.freeze_moving_stats = False
    probe = keras.Model(copy.inputs, [layer.input for layer in layers])
    outputs = keras.tree.flatten(
        InTrainingMode(probe).predict(x, batch_size=batch_size, verbose=0)
    )
    statistics = []
    for layer, value in zip(layers, outputs, strict=True):
        value = value.astype("float64")
        axes = tuple(
            a for a in range(value.ndim) if a != layer.axis % value.ndim
        )
        statistics.append((value.mean(axes), value.var(axes)))
    return statistics


def assert_statistics_close(actual, expected):
    for (mean, variance), (ref_mean, ref_variance) in zip(
        actual, expected, strict=True
    ):
        np.testing.assert_allclose(mean, ref_mean, **TOLERANCE)
        np.testing.assert_allclose(variance, ref_variance, **TOLERANCE)


def flags(model):
    return [
        (layer.name, type(layer), layer.trainable)
        for layer in [model, *model._flatten_layers(include_self=False)]
    ]


def test_moving_stats_equal_population_stats_of_inputs():
    model = conv_model()
    x = images(70)  # 70 samples: batches of 32, 32 and 6.
    expected = reference_statistics(model, x)
    frozen_bn.recalibrate(model, x, verbose=0)
    assert_statistics_close(moving_statistics(model), expected)


def test_frozen_layers_are_recalibrated_and_stay_frozen():
    model = conv_model(frozen=["bn_a"])
    x = images(70)
    expected = reference_statistics(model, x)
    frozen_bn.recalibrate(model, x, verbose=0)
    assert_statistics_close(moving_statistics(model), expected)
    assert model.get_layer("bn_a").trainable is False
    assert model.get_layer("bn_b").freeze_moving_stats is True


def test_nothing_else_changes():
    model = conv_model(frozen=["bn_a", "conv_b"])
    before_flags = flags(model)
    before = all_weights(model)
    seeds = [to_numpy(v) for v in model.variables if "seed" in v.path]
    frozen_bn.recalibrate(model, images(70), verbose=0)
    statistics = ("moving_mean", "moving_variance")

    def others(weights):
        return [(p, v) for p, v in weights if not p.endswith(statistics)]

    assert_weights_bitwise_equal(others(before), others(all_weights(model)))
    assert flags(model) == before_flags
    after_seeds = [to_numpy(v) for v in model.variables if "seed" in v.path]
    assert len(seeds) == 1
    np.testing.assert_array_equal(after_seeds[0], seeds[0])
    assert "call" not in vars(model.get_layer("bn_a"))


@pytest.mark.parametrize("last", [8, 1])  # 1: too few for a fused kernel.
def test_uneven_last_batch_is_weighted_by_its_size(last):
    model = keras.Sequential(
        [keras.Input((3,)), keras.layers.BatchNormalization()]
    )
    rng = np.random.default_rng(3)
    x = np.concatenate(
        [rng.normal(0.0, 1.0, (32, 3)), rng.normal(10.0, 4.0, (last, 3))]
    ).astype("float32")
    frozen_bn.recalibrate(model, x, batch_size=32, verbose=0)
    [(mean, variance)] = moving_statistics(model)
    np.testing.assert_allclose(mean, x.mean(0, dtype="float64"), **TOLERANCE)
    np.testing.assert_allclose(variance, x.var(0, dtype="float64"), **TOLERANCE)
    # An unweighted mean of the two batch means would be far off.
    naive = (x[:32].mean(0) + x[32:].mean(0)) / 2
    assert np.all(np.abs(mean - naive) > 1.0)


@pytest.mark.parametrize(
    "shape, axis", [((3,), -1), ((4, 4, 3), -1), ((3, 4, 4), 1)]
)
def test_variance_stays_exact_far_from_zero(shape, axis):
    # Inputs around 100 with a spread of 0.01: a variance taken as the mean
    # square minus the squared mean loses every digit in float32.
    layer = keras.layers.BatchNormalization(axis=axis)
    model = keras.Sequential([keras.Input(shape), layer])
    rng = np.random.default_rng(5)
    x = rng.normal(100.0, 0.01, (64, *shape)).astype("float32")
    axes = tuple(a for a in range(x.ndim) if a != axis % x.ndim)
    expected = x.astype("float64").var(axes)
    [measured] = _probe.measure_inputs(
        model, x, [layer], training=False, verbose=0
    )
    np.testing.assert_allclose(measured.variance, expected, rtol=1e-3)
    frozen_bn.recalibrate(model, x, verbose=0)
    [(_, variance)] = moving_statistics(model)
    np.testing.assert_allclose(variance, expected, rtol=1e-3)


def test_steps_bounds_the_pass():
    model = keras.Sequential(
        [keras.Input((3,)), keras.layers.BatchNormalization()]
    )
    x = np.random.default_rng(4).normal(5.0, 2.0, (64, 3)).astype("float32")
    frozen_bn.recalibrate(model, x, batch_size=16, steps=1, verbose=0)
    [(mean, variance)] = moving_statistics(model)
    np.testing.assert_allclose(mean, x[:16].mean(0), **TOLERANCE)
    np.testing.assert_allclose(variance, x[:16].var(0), **TOLERANCE)


def _generator(x, y, batch_size):
    for start in range(0, len(x), batch_size):
        yield x[start : start + batch_size], y[start : start + batch_size]


class _Sequence(keras.utils.PyDataset):
    def __init__(self, x, batch_size):
        super().__init__()
        self.x, self.batch_size = x, batch_size

    def __len__(self):
        return -(-len(self.x) // self.batch_size)

    def __getitem__(self, index):
        window = slice(index * self.batch_size, (index + 1) * self.batch_size)
        return self.x[window], np.zeros(len(self.x[window]))


@pytest.mark.parametrize(
    "form", ["arrays_with_labels", "dataset", "py_dataset", "generator"]
)
def test_data_forms_give_the_arrays_statistics(form):
    x = images(40)
    y = np.arange(40) % 2
    if form == "arrays_with_labels":
        data = (x, y, np.ones(40))
    elif form == "dataset":
        import tensorflow as tf

        data = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
    elif form == "py_dataset":
        data = _Sequence(x, 16)
    else:
        data = _generator(x, y, 16)
    model = conv_model()
    expected = reference_statistics(model, x, batch_size=16)
    frozen_bn.recalibrate(model, data, batch_size=16, verbose=0)
    assert_statistics_close(moving_statistics(model), expected)


@pytest.mark.parametrize(
    "shape, options",
    [
        ((6,), {}),
        ((5, 6), {}),
        ((6, 5), {"axis": 1}),
        ((4, 4, 6), {}),
        ((6, 4, 4), {"axis": 1}),
        ((3, 3, 3, 6), {}),
        ((6, 3, 3, 3), {"axis": 1}),
        ((4, 4, 6), {"scale": False, "center": False}),
        ((4, 4, 6), {"epsilon": 1e-6}),
    ],
)
def test_every_layout_normalizes_with_batch_statistics(shape, options):
    # The frozen first BN must normalize with each batch's statistics (its
    # gamma and beta included): the second BN measures what it outputs.
    rng = np.random.default_rng(8)
    inputs = keras.Input(shape)
    first = keras.layers.BatchNormalization(name="first", **options)
    x = keras.layers.ReLU()(first(inputs))
    second = keras.layers.BatchNormalization(axis=first.axis, name="second")
    model = keras.Model(inputs, second(x))
    for weight in first.trainable_weights:
        weight.assign(rng.normal(0.5, 1.0, weight.shape))
    first.trainable = False
    x = rng.normal(2.0, 3.0, (40, *shape)).astype("float32")
    expected = reference_statistics(model, x, batch_size=16)
    frozen_bn.recalibrate(model, x, batch_size=16, verbose=0)
    assert_statistics_close(moving_statistics(model), expected)


def test_nested_base_called_with_training_false():
    base = keras.Sequential(
        [
            keras.Input((8, 8, 3)),
            keras.layers.Conv2D(4, 3),
            keras.layers.BatchNormalization(),
        ],
        name="base",
    )
    base.trainable = False
    inputs = keras.Input((8, 8, 3))
    features = base(inputs, training=False)
    outputs = keras.layers.Dense(2)(keras.layers.Flatten()(features))
    model = keras.Model(inputs, outputs)
    x = images(70)
    expected = reference_statistics(base, x)
    frozen_bn.recalibrate(model, x, verbose=0)
    assert_statistics_close(moving_statistics(model), expected)
    assert base.trainable is False


class Subclassed(keras.Model):
    def __init__(self):
        super().__init__()
        self.dense = keras.layers.Dense(4)
        self.norm = keras.layers.BatchNormalization()

    def call(self, x, training=None):
        return self.norm(self.dense(x), training=training)


def test_subclassed_model_against_numpy():
    model = Subclassed()
    x = np.random.default_rng(5).normal(3.0, 2.0, (50, 6)).astype("float32")
    model(x[:2])
    frozen_bn.recalibrate(model, x, batch_size=16, verbose=0)
    kernel, bias = (to_numpy(w).astype("float64") for w in model.dense.weights)
    inputs = x.astype("float64") @ kernel + bias
    [(mean, variance)] = moving_statistics(model)
    np.testing.assert_allclose(mean, inputs.mean(0), **TOLERANCE)
    np.testing.assert_allclose(variance, inputs.var(0), **TOLERANCE)


def test_masked_positions_do_not_count():
    inputs = keras.Input((5,), dtype="int32")
    x = keras.layers.Embedding(10, 3, mask_zero=True)(inputs)
    outputs = keras.layers.BatchNormalization()(x)
    model = keras.Model(inputs, outputs)
    tokens = np.random.default_rng(6).integers(0, 10, (40, 5))
    frozen_bn.recalibrate(model, tokens, batch_size=16, verbose=0)
    table = to_numpy(model.layers[1].embeddings).astype("float64")
    kept = table[tokens[tokens != 0]]
    [(mean, variance)] = moving_statistics(model)
    np.testing.assert_allclose(mean, kept.mean(0), **TOLERANCE)
    np.testing.assert_allclose(variance, kept.var(0), **TOLERANCE)


def test_layers_argument_limits_recalibration():
    model = conv_model()
    x = images(70)
    expected = reference_statistics(model, x)
    untouched = moving_statistics(model)
    frozen_bn.recalibrate(model, x, layers=["bn_b"], verbose=0)
    after = moving_statistics(model)
    assert_statistics_close([after[1]], [expected[1]])
    for index in (0, 2):
        np.testing.assert_array_equal(after[index][0], untouched[index][0])
        np.testing.assert_array_equal(after[index][1], untouched[index][1])


def test_keras_application_matches_probe_model():
    model = keras.applications.MobileNetV2(
        weights=None, input_shape=(32, 32, 3), classes=4
    )
    x = np.random.default_rng(7).uniform(0, 255, (16, 32, 32, 3))
    x = x.astype("float32")
    expected = reference_statistics(model, x, batch_size=8)
    frozen_bn.recalibrate(model, x, batch_size=8, verbose=0)
    # Deep layers accumulate float32 rounding; the statistics stay close.
    for (mean, variance), (ref_mean, ref_variance) in zip(
        moving_statistics(model), expected, strict=True
    ):
        scale = np.sqrt(ref_variance) + 1e-3
        np.testing.assert_allclose(mean / scale, ref_mean / scale, atol=1e-3)
        np.testing.assert_allclose(variance, ref_variance, rtol=1e-3, atol=1e-5)


def test_inference_probe_measures_inputs_with_moving_statistics():
    model = conv_model()
    for layer in batch_norm_layers(model):
        layer.moving_mean.assign(np.full(layer.moving_mean.shape, 0.5))
        layer.moving_variance.assign(np.full(layer.moving_mean.shape, 4.0))
    x = images(70)
    layers = batch_norm_layers(model)
    before = all_weights(model)
    measured = _probe.measure_inputs(
        model, x, layers, training=False, verbose=0
    )
    assert_weights_bitwise_equal(before, all_weights(model))
    probe = keras.Model(model.inputs, [layer.input for layer in layers])
    values = [
        to_numpy(v).astype("float64") for v in probe.predict(x, verbose=0)
    ]
    for layer, stats, value in zip(layers, measured, values, strict=True):
        axes = tuple(a for a in range(4) if a != layer.axis % 4)
        per_feature = value.size // value.shape[layer.axis]
        np.testing.assert_array_equal(stats.count, per_feature)
        np.testing.assert_allclose(stats.mean, value.mean(axes), **TOLERANCE)
        np.testing.assert_allclose(stats.variance, value.var(axes), **TOLERANCE)


def test_probe_in_both_modes_measures_the_first_and_returns_both_outputs():
    model = keras.Sequential(
        [
            keras.Input((8, 8, 3)),
            keras.layers.Conv2D(4, 3),
            keras.layers.BatchNormalization(),
            keras.layers.GlobalAveragePooling2D(),
        ]
    )
    layers = batch_norm_layers(model)
    x = images(40)
    before = all_weights(model)
    probe = _probe.Probe(model, layers, training=(False, True))
    measured, (inference, training) = probe.run(
        x, batch_size=16, verbose=0, return_outputs=True
    )
    assert_weights_bitwise_equal(before, all_weights(model))
    alone = _probe.measure_inputs(
        model, x, layers, training=False, batch_size=16, verbose=0
    )
    for stats, expected in zip(measured, alone, strict=True):
        np.testing.assert_array_equal(stats.count, expected.count)
        np.testing.assert_array_equal(stats.mean, expected.mean)
        np.testing.assert_array_equal(stats.variance, expected.variance)
    batches = [x[start : start + 16] for start in range(0, len(x), 16)]
    for mode, outputs in ((False, inference), (True, training)):
        expected = [to_numpy(model(batch, training=mode)) for batch in batches]
        np.testing.assert_allclose(
            outputs, np.concatenate(expected), rtol=1e-5, atol=1e-6
        )


# keras-hub backbones: subclassed Functional models; MobileNetV3 holds its
# BNs inside custom block layers, where `layer.input` is not recorded.


def keras_reference_statistics(model, x, batch_size):
    """Population statistics of every BN input, from Keras's own BN code.

    Independent of frozen_bn's probe, and it reaches BNs inside custom
    layers: with `momentum = 0`, a trainable BN called in training mode sets
    its moving statistics to the mean and population variance of its
    inputs in the batch. The model runs batch by batch, eagerly, every BN
    normalizing with batch statistics (as `recalibrate` has them do); numpy
    combines the batches in float64 (weighted means, total variance). The
    model's weights, `momentum` and `trainable` flags are put back.
    """
    layers = batch_norm_layers(model)
    saved = model.get_weights()
    settings = [(layer.momentum, layer.trainable) for layer in layers]
    batches = []
    try:
        for layer in layers:
            layer.momentum, layer.trainable = 0.0, True
        for start in range(0, len(x), batch_size):
            batch = x[start : start + batch_size]
            model(batch, training=True)
            batches.append((len(batch), moving_statistics(model)))
    finally:
        model.set_weights(saved)
        for layer, (momentum, trainable) in zip(layers, settings, strict=True):
            layer.momentum, layer.trainable = momentum, trainable
    counts = np.array([count for count, _ in batches], "float64")[:, None]
    statistics = []
    for index in range(len(layers)):
        means = np.stack([b[index][0] for _, b in batches]).astype("float64")
        variances = np.stack([b[index][1] for _, b in batches])
        variances = variances.astype("float64")
        mean = (counts * means).sum(0) / counts.sum()
        variance = (counts * (variances + (means - mean) ** 2)).sum(0)
        statistics.append((mean, variance / counts.sum()))
    return statistics


def hub_images(count=10, seed=9, scale=3.0):
    rng = np.random.default_rng(seed)
    shape = (count, *keras_hub_models.IMAGE_SHAPE)
    return rng.normal(1.0, scale, shape).astype("float32")


@keras_hub_models.requires_keras_hub
@pytest.mark.parametrize("name", sorted(keras_hub_models.BACKBONES))
def test_keras_hub_backbone_gets_population_statistics(name):
    model = keras_hub_models.shared_backbone(name)
    saved = model.get_weights()
    before, before_flags = all_weights(model), flags(model)
    x = hub_images()  # Batches of 4, 4 and 2.
    try:
        expected = keras_reference_statistics(model, x, batch_size=4)
        frozen_bn.recalibrate(model, x, batch_size=4, verbose=0)
        recalibrated, after = moving_statistics(model), all_weights(model)
    finally:
        model.set_weights(saved)
    assert_statistics_close(recalibrated, expected)
    statistics = ("moving_mean", "moving_variance")

    def others(weights):
        return [(p, v) for p, v in weights if not p.endswith(statistics)]

    assert_weights_bitwise_equal(others(before), others(after))
    assert flags(model) == before_flags


@keras_hub_models.requires_keras_hub
def test_keras_hub_task_preprocesses_each_batch():
    # The preprocessor scales pixels by 1/255, as `fit()` applies it; a
    # direct call of the model (the reference's) does not.
    scale = np.float32(1 / 255)
    classifier = keras_hub_models.image_classifier(scale=scale)
    pixels = np.random.default_rng(10).uniform(0, 255, (10, 32, 32, 3))
    pixels = pixels.astype("float32")
    expected = keras_reference_statistics(classifier, pixels * scale, 4)
    frozen_bn.recalibrate(classifier, pixels, batch_size=4, verbose=0)
    assert_statistics_close(moving_statistics(classifier), expected)


def test_verbose_shows_a_progress_bar(capsys):
    model = keras.Sequential(
        [keras.Input((3,)), keras.layers.BatchNormalization()]
    )
    x = np.ones((10, 3), "float32")
    frozen_bn.recalibrate(model, x, batch_size=5, verbose=0)
    assert capsys.readouterr().out == ""
    frozen_bn.recalibrate(model, x, batch_size=5, verbose=1)
    assert "2/2" in capsys.readouterr().out


def test_rejects_a_non_model():
    with pytest.raises(TypeError, match="Expected `model` to be a keras.Model"):
        frozen_bn.recalibrate("model.keras", np.ones((2, 3)))


def test_rejects_an_unbuilt_model():
    model = keras.Sequential([keras.layers.BatchNormalization()])
    with pytest.raises(ValueError, match="Expected `model` to be built"):
        frozen_bn.recalibrate(model, np.ones((2, 3)))


def test_rejects_layers_that_are_not_batch_norm_of_the_model():
    model = conv_model()
    with pytest.raises(ValueError, match="`layers`.*'conv_a' is not one"):
        frozen_bn.recalibrate(model, images(70), layers=["bn_a", "conv_a"])


def test_rejects_bad_verbose():
    model = conv_model()
    with pytest.raises(ValueError, match="Received: verbose=3"):
        frozen_bn.recalibrate(model, images(70), verbose=3)


def test_rejects_empty_data_and_restores_the_model():
    model = conv_model()
    before = all_weights(model)
    with pytest.raises(ValueError, match="at least one batch"):
        frozen_bn.recalibrate(model, iter([]), verbose=0)
    assert_weights_bitwise_equal(before, all_weights(model))
    assert "call" not in vars(model.get_layer("bn_b"))
