"""Tests for `frozen_bn.BatchNormalization` (Keras 3, every backend)."""

import itertools

import keras
import ml_dtypes
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import frozen_bn
from tests.helpers import (
    all_weights,
    assert_weights_bitwise_equal,
    moving_statistics,
    to_numpy,
)

BACKEND = keras.backend.backend()


def numpy_batch_norm(x, mean, variance, gamma, beta, epsilon, axis):
    """The BN formula written out in numpy, broadcasting along `axis`."""
    shape = [1] * x.ndim
    shape[axis] = -1
    x = x.astype("float64")

    def stat(v):
        return np.reshape(np.asarray(v, "float64"), shape)

    out = (x - stat(mean)) / np.sqrt(stat(variance) + epsilon)
    return out * stat(gamma) + stat(beta)


def built_pair(input_shape, **config):
    """A stock and a frozen_bn layer with the same non-trivial weights."""
    stock = keras.layers.BatchNormalization(**config)
    ours = frozen_bn.BatchNormalization(**config)
    stock.build(input_shape)
    ours.build(input_shape)
    rng = np.random.default_rng(0)
    weights = []
    for v in stock.weights:
        value = rng.uniform(0.5, 2.0, v.shape)
        if "mean" in v.path or "beta" in v.path:
            value -= 1.25
        weights.append(value.astype(v.dtype))
    stock.set_weights(weights)
    ours.set_weights(weights)
    return stock, ours


def random_inputs(shape, seed=1, scale=3.0, shift=2.0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(shape) * scale + shift).astype("float32")


def expected_with(layer, x, mean, variance):
    return numpy_batch_norm(
        x,
        mean,
        variance,
        to_numpy(layer.gamma),
        to_numpy(layer.beta),
        layer.epsilon,
        layer.axis,
    )


@pytest.mark.parametrize(
    "training, trainable, freeze_moving_stats",
    list(itertools.product([True, False, None], [True, False], [True, False])),
)
def test_behavior_table(training, trainable, freeze_moving_stats):
    x = random_inputs((16, 5))
    stock, layer = built_pair(x.shape, momentum=0.9)
    layer.trainable = trainable
    layer.freeze_moving_stats = freeze_moving_stats
    before = moving_statistics(layer)[0]

    out = to_numpy(layer(x, training=training))

    if training and trainable and not freeze_moving_stats:
        mean, variance = x.mean(axis=0), x.var(axis=0)
        np.testing.assert_allclose(
            out, expected_with(layer, x, mean, variance), rtol=1e-4, atol=1e-4
        )
        expected_stats = [
            0.9 * s + 0.1 * b
            for s, b in zip(before, [mean, variance], strict=True)
        ]
        np.testing.assert_allclose(
            moving_statistics(layer)[0], expected_stats, rtol=1e-5
        )
    else:
        # Frozen: the stock layer's inference computation, to the bit.
        np.testing.assert_array_equal(out, to_numpy(stock(x, training=False)))
        np.testing.assert_allclose(
            out, expected_with(layer, x, *before), rtol=1e-5, atol=1e-5
        )
        for stat, old in zip(moving_statistics(layer)[0], before, strict=True):
            np.testing.assert_array_equal(stat, old)


def test_is_a_stock_batch_normalization():
    layer = frozen_bn.BatchNormalization()
    assert isinstance(layer, keras.layers.BatchNormalization)
    assert layer.freeze_moving_stats is False


def test_defaults_match_the_stock_layer():
    ours = frozen_bn.BatchNormalization().get_config()
    stock = keras.layers.BatchNormalization().get_config()
    ours.pop("freeze_moving_stats")
    for config in (ours, stock):
        config.pop("name")
    assert ours == stock


@pytest.mark.parametrize(
    "input_shape, axis",
    [((8, 6), -1), ((4, 5, 5, 3), -1), ((4, 3, 5, 5), 1), ((4, 5, 3, 5), 2)],
)
@pytest.mark.parametrize("training", [True, False])
def test_unfrozen_matches_stock_bitwise(input_shape, axis, training):
    stock, ours = built_pair(input_shape, axis=axis, momentum=0.5)
    x = random_inputs(input_shape)
    for _ in range(2):
        expected = to_numpy(stock(x, training=training))
        np.testing.assert_array_equal(
            to_numpy(ours(x, training=training)), expected
        )
    assert_weights_bitwise_equal(all_weights(stock), all_weights(ours))


@pytest.mark.parametrize("axis", [-1, 1])
def test_frozen_training_output_equals_inference_output(axis):
    shape = (6, 3, 4, 4) if axis == 1 else (6, 4, 4, 3)
    _, layer = built_pair(shape, axis=axis)
    layer.freeze_moving_stats = True
    x = random_inputs(shape)
    np.testing.assert_array_equal(
        to_numpy(layer(x, training=True)), to_numpy(layer(x, training=False))
    )


@pytest.mark.parametrize(
    "center, scale", [(False, True), (True, False), (False, False)]
)
def test_center_and_scale_off(center, scale):
    stock, ours = built_pair((8, 4), center=center, scale=scale)
    ours.trainable = False
    x = random_inputs((8, 4))
    np.testing.assert_array_equal(
        to_numpy(ours(x, training=True)), to_numpy(stock(x, training=False))
    )
    assert len(ours.trainable_weights) == 0
    assert len(ours.weights) == int(center) + int(scale) + 2


def test_correctness_with_momentum_zero():
    layer = frozen_bn.BatchNormalization(momentum=0.0)
    x = random_inputs((64, 3), scale=5.0, shift=10.0)
    layer(x, training=True)
    np.testing.assert_allclose(
        to_numpy(layer.moving_mean), x.mean(0), rtol=1e-5
    )
    np.testing.assert_allclose(
        to_numpy(layer.moving_variance), x.var(0), rtol=1e-4
    )


@pytest.mark.parametrize("frozen", [True, False])
def test_masking(frozen):
    x = random_inputs((4, 6, 3))
    mask = np.array([[1, 1, 1, 0, 0, 0]] * 4, dtype=bool)
    stock, ours = built_pair(x.shape, momentum=0.0)
    ours.freeze_moving_stats = frozen
    before = moving_statistics(ours)[0]
    out = to_numpy(ours(x, training=True, mask=mask))
    if frozen:
        np.testing.assert_array_equal(out, to_numpy(stock(x, training=False)))
        np.testing.assert_array_equal(moving_statistics(ours)[0][0], before[0])
    else:
        np.testing.assert_array_equal(
            out, to_numpy(stock(x, training=True, mask=mask))
        )
        masked = x[:, :3].reshape(-1, 3)
        np.testing.assert_allclose(
            moving_statistics(ours)[0][0], masked.mean(0), rtol=1e-5
        )


def test_masking_in_a_model():
    inputs = keras.Input((5,), dtype="int32")
    x = keras.layers.Embedding(10, 4, mask_zero=True)(inputs)
    x = frozen_bn.BatchNormalization(momentum=0.0)(x)
    model = keras.Model(inputs, x)
    tokens = np.array([[1, 2, 3, 0, 0], [4, 5, 0, 0, 0]], dtype="int32")
    model(tokens, training=True)
    embedded = to_numpy(model.layers[1](tokens))
    valid = embedded[tokens != 0]
    bn = model.layers[2]
    np.testing.assert_allclose(
        to_numpy(bn.moving_mean), valid.mean(0), rtol=1e-5, atol=1e-6
    )


@pytest.mark.parametrize("frozen", [True, False])
def test_renorm(frozen):
    config = dict(
        renorm=True, renorm_clipping={"rmax": 2.0, "rmin": 0.5, "dmax": 1.0}
    )
    stock, ours = built_pair((8, 3), **config)
    ours.freeze_moving_stats = frozen
    x = random_inputs((8, 3))
    if frozen:
        before = all_weights(ours)
        np.testing.assert_array_equal(
            to_numpy(ours(x, training=True)), to_numpy(stock(x, training=False))
        )
        assert_weights_bitwise_equal(before, all_weights(ours))
    else:
        np.testing.assert_array_equal(
            to_numpy(ours(x, training=True)), to_numpy(stock(x, training=True))
        )
        assert_weights_bitwise_equal(all_weights(stock), all_weights(ours))


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
@pytest.mark.parametrize("training", [True, False])
def test_mixed_precision(policy, training):
    keras.config.set_dtype_policy(policy)
    stock, ours = built_pair((8, 4, 4, 3))
    x = random_inputs((8, 4, 4, 3))
    out = ours(x, training=training)
    assert keras.backend.standardize_dtype(out.dtype) == policy.split("_")[1]
    assert ours.moving_mean.dtype == "float32"
    np.testing.assert_array_equal(
        to_numpy(out), to_numpy(stock(x, training=training))
    )
    ours.freeze_moving_stats = True
    frozen_out = to_numpy(ours(x, training=True))
    np.testing.assert_array_equal(
        frozen_out, to_numpy(stock(x, training=False))
    )


def test_regularizers_constraints_and_initializers():
    config = dict(
        gamma_regularizer="l2",
        beta_regularizer=keras.regularizers.L1(0.01),
        gamma_constraint=keras.constraints.NonNeg(),
        beta_constraint=keras.constraints.MaxNorm(1.0),
        moving_mean_initializer=keras.initializers.Constant(0.5),
        moving_variance_initializer=keras.initializers.Constant(2.0),
        freeze_moving_stats=True,
    )
    layer = frozen_bn.BatchNormalization(**config)
    layer.build((4, 3))
    np.testing.assert_array_equal(
        to_numpy(layer.moving_mean), np.full(3, 0.5, "float32")
    )
    np.testing.assert_array_equal(
        to_numpy(layer.moving_variance), np.full(3, 2.0, "float32")
    )
    layer(random_inputs((4, 3)), training=True)
    assert len(layer.losses) == 2
    restored = frozen_bn.BatchNormalization.from_config(layer.get_config())
    assert isinstance(restored.gamma_constraint, keras.constraints.NonNeg)
    assert isinstance(restored.beta_regularizer, keras.regularizers.L1)
    assert restored.freeze_moving_stats is True


@pytest.mark.skipif(BACKEND != "tensorflow", reason="synchronized is TF-only")
def test_synchronized_on_tensorflow():
    stock, ours = built_pair((8, 3), synchronized=True)
    x = random_inputs((8, 3))
    np.testing.assert_array_equal(
        to_numpy(ours(x, training=True)), to_numpy(stock(x, training=True))
    )
    ours.freeze_moving_stats = True
    np.testing.assert_array_equal(
        to_numpy(ours(x, training=True)), to_numpy(stock(x, training=False))
    )


@pytest.mark.skipif(BACKEND == "tensorflow", reason="synchronized works on TF")
def test_synchronized_rejected_off_tensorflow():
    with pytest.raises(ValueError, match="synchronized=True"):
        frozen_bn.BatchNormalization(synchronized=True)


@pytest.mark.parametrize("value", [1, "True", None, np.float32(1.0)])
def test_freeze_moving_stats_must_be_a_bool(value):
    with pytest.raises(
        TypeError, match="Expected `freeze_moving_stats` to be a bool"
    ):
        frozen_bn.BatchNormalization(freeze_moving_stats=value)
    layer = frozen_bn.BatchNormalization()
    with pytest.raises(TypeError, match="Received: freeze_moving_stats="):
        layer.freeze_moving_stats = value


def test_get_config_round_trip():
    layer = frozen_bn.BatchNormalization(
        axis=1, momentum=0.8, epsilon=1e-4, freeze_moving_stats=True, name="bn"
    )
    config = layer.get_config()
    assert config["freeze_moving_stats"] is True
    restored = frozen_bn.BatchNormalization.from_config(config)
    assert restored.get_config() == config


def small_conv_net(bn_kwargs, name="net"):
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, use_bias=False)(inputs)
    x = frozen_bn.BatchNormalization(name="bn", **bn_kwargs)(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(1)(x)
    return keras.Model(inputs, outputs, name=name)


def fit_once(model, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(3.0, 2.0, (32, 8, 8, 3)).astype("float32")
    y = rng.normal(size=(32, 1)).astype("float32")
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    model.fit(x, y, batch_size=8, epochs=2, verbose=0)


@pytest.mark.parametrize("mode", ["trainable_false", "freeze_moving_stats"])
def test_fit_leaves_frozen_statistics_bitwise_unchanged(mode):
    model = small_conv_net({"momentum": 0.5})
    bn = model.get_layer("bn")
    if mode == "trainable_false":
        bn.trainable = False
    else:
        bn.freeze_moving_stats = True
    bn_before = all_weights(bn)
    kernel_before = to_numpy(model.layers[1].kernel)
    fit_once(model)
    if mode == "trainable_false":
        assert_weights_bitwise_equal(bn_before, all_weights(bn))
    else:
        # gamma/beta train, the statistics stay.
        after = dict(all_weights(bn))
        for path, value in bn_before:
            if "moving" in path:
                np.testing.assert_array_equal(after[path], value)
            else:
                assert not np.array_equal(after[path], value), path
    assert not np.array_equal(to_numpy(model.layers[1].kernel), kernel_before)


def test_fit_updates_statistics_when_not_frozen():
    model = small_conv_net({"momentum": 0.5})
    before = moving_statistics(model.get_layer("bn"))[0]
    fit_once(model)
    after = moving_statistics(model.get_layer("bn"))[0]
    assert not np.array_equal(before[0], after[0])


def test_saves_and_loads_without_custom_objects(tmp_path):
    model = small_conv_net({"freeze_moving_stats": True, "momentum": 0.7})
    fit_once(model)
    path = tmp_path / "model.keras"
    model.save(path)
    restored = keras.models.load_model(path)
    bn = restored.get_layer("bn")
    assert type(bn) is frozen_bn.BatchNormalization
    assert bn.freeze_moving_stats is True
    assert_weights_bitwise_equal(all_weights(model), all_weights(restored))
    x = random_inputs((4, 8, 8, 3))
    np.testing.assert_array_equal(
        to_numpy(restored(x, training=True)), to_numpy(model(x, training=True))
    )


@settings(max_examples=15, deadline=None)
@given(
    data=st.data(),
    rank=st.integers(2, 4),
    momentum=st.floats(0.0, 0.999),
    epsilon=st.floats(1e-5, 1e-1),
    center=st.booleans(),
    scale=st.booleans(),
    # float64 is left out: JAX without x64 computes it in float32.
    dtype=st.sampled_from(["float32", "float16", "bfloat16"]),
)
def test_property_frozen_uses_stored_statistics(
    data, rank, momentum, epsilon, center, scale, dtype
):
    shape = data.draw(
        hnp.array_shapes(min_dims=rank, max_dims=rank, min_side=2, max_side=5)
    )
    axis = data.draw(st.integers(-rank, rank - 1))
    elements = st.floats(-10, 10, width=32)
    x = data.draw(hnp.arrays("float32", shape, elements=elements))
    config = dict(
        axis=axis,
        momentum=momentum,
        epsilon=epsilon,
        center=center,
        scale=scale,
        dtype=dtype,
    )
    stock, layer = built_pair(shape, **config)
    layer.freeze_moving_stats = data.draw(st.booleans())
    layer.trainable = not layer.freeze_moving_stats or data.draw(st.booleans())
    if layer.trainable and not layer.freeze_moving_stats:
        layer.trainable = False
    before = all_weights(layer)

    train_out = to_numpy(layer(x, training=True))

    np.testing.assert_array_equal(train_out, to_numpy(layer(x, training=False)))
    np.testing.assert_array_equal(train_out, to_numpy(stock(x, training=False)))
    gamma = to_numpy(layer.gamma) if scale else 1.0
    beta = to_numpy(layer.beta) if center else 0.0
    stats = moving_statistics(layer)[0]
    x_in_dtype = x.astype(ml_dtypes.finfo(dtype).dtype).astype("float32")
    reference = numpy_batch_norm(x_in_dtype, *stats, gamma, beta, epsilon, axis)
    # The output is rounded to `dtype` once, after float32 arithmetic.
    rtol = max(float(ml_dtypes.finfo(dtype).eps), 1e-5)
    np.testing.assert_allclose(
        train_out.astype("float64"), reference, rtol=rtol, atol=1e-4
    )
    assert_weights_bitwise_equal(before, all_weights(layer))


@settings(max_examples=15, deadline=None)
@given(
    data=st.data(),
    rank=st.integers(2, 4),
    momentum=st.floats(0.0, 0.999),
    center=st.booleans(),
    scale=st.booleans(),
)
def test_property_unfrozen_is_bitwise_stock(
    data, rank, momentum, center, scale
):
    shape = data.draw(
        hnp.array_shapes(min_dims=rank, max_dims=rank, min_side=2, max_side=5)
    )
    axis = data.draw(st.integers(-rank, rank - 1))
    x = data.draw(
        hnp.arrays("float32", shape, elements=st.floats(-10, 10, width=32))
    )
    stock, ours = built_pair(
        shape, axis=axis, momentum=momentum, center=center, scale=scale
    )
    for training in (True, False, True):
        np.testing.assert_array_equal(
            to_numpy(ours(x, training=training)),
            to_numpy(stock(x, training=training)),
        )
    assert_weights_bitwise_equal(all_weights(stock), all_weights(ours))


@settings(max_examples=5, deadline=None)
@given(
    momentum=st.floats(0.0, 0.99),
    axis=st.sampled_from([-1, 1]),
    trainable_false=st.booleans(),
)
def test_property_fit_never_moves_frozen_statistics(
    momentum, axis, trainable_false
):
    shape = (8, 3, 4, 4) if axis == 1 else (8, 4, 4, 3)
    inputs = keras.Input(shape[1:])
    bn = frozen_bn.BatchNormalization(axis=axis, momentum=momentum)
    outputs = keras.layers.Dense(1)(keras.layers.Flatten()(bn(inputs)))
    model = keras.Model(inputs, outputs)
    if trainable_false:
        bn.trainable = False
    else:
        bn.freeze_moving_stats = True
    before = moving_statistics(bn)[0]
    model.compile(optimizer="sgd", loss="mse")
    model.fit(random_inputs(shape), np.ones((8, 1)), epochs=1, verbose=0)
    for stat, old in zip(moving_statistics(bn)[0], before, strict=True):
        np.testing.assert_array_equal(stat, old)
