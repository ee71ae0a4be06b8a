"""What patching warns of: a stale copy at `fit()`, a traced training step.

A copy that `patch_model` returned is reported when the `trainable` flags
of its original change afterwards, however soon Python collects the
original. A model patched, unpatched or frozen in place is reported only
where `fit()` would run a training step it traced before, which is measured
here against what the next `fit()` does.
"""

import gc
import re
import warnings
import weakref

import keras
import numpy as np
import pytest

import frozen_bn
from tests.helpers import moving_statistics

RECIPE = r"frozen_bn\.patch_model\(model, inplace=True\)"
SIZE = 32  # The smallest input MobileNet accepts.


def fit_warnings(model, x, y):
    """The messages of the warnings a `fit()` of `model` gives."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(x, y, batch_size=4, epochs=1, verbose=0)
    return [str(w.message) for w in caught]


def guide_steps(inplace):
    """The guide's steps, with `gc.collect()` after patching.

    Returns the messages of the fine-tuning fit's warnings, whether the
    model that `patch_model` was given was collected, and how many weights
    fine-tuning trains and the guide means to train.
    """
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (4, SIZE, SIZE, 3)).astype("float32")
    y = rng.integers(0, 2, (4, 1)).astype("float32")
    base_model = keras.applications.MobileNet(
        weights=None, input_shape=(SIZE, SIZE, 3), include_top=False, alpha=0.25
    )
    base_model.trainable = False
    inputs = keras.Input((SIZE, SIZE, 3))
    h = base_model(inputs, training=False)
    h = keras.layers.GlobalAveragePooling2D()(h)
    model = keras.Model(inputs, keras.layers.Dense(1)(h))
    original = weakref.ref(model)
    if inplace:
        frozen_bn.patch_model(model, inplace=True)
    else:
        model = frozen_bn.patch_model(model)
    gc.collect()
    base_model.trainable = True  # The guide's handle.
    model.compile(optimizer="sgd", loss="mse")
    messages = fit_warnings(model, x, y)
    meant = len(base_model.trainable_weights) + 2
    return messages, original() is None, len(model.trainable_weights), meant


def test_copy_warns_after_its_original_was_collected():
    messages, collected, trained, meant = guide_steps(inplace=False)

    assert collected
    assert trained == 2 < meant  # The copy trains only the head.
    stale = [m for m in messages if "does not see them" in m]
    assert stale and all(re.search(RECIPE, m) for m in stale)


def test_patch_in_place_gives_no_stale_copy_warning():
    messages, collected, trained, meant = guide_steps(inplace=True)

    assert not collected
    assert trained == meant > 2
    assert not [m for m in messages if "frozen_bn" in m]


def bn_net():
    """`Dense -> BN -> Dense` on 4 features, with a stock BN layer."""
    inputs = keras.Input((4,))
    x = keras.layers.Dense(4, name="dense")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    return keras.Model(inputs, keras.layers.Dense(1, name="head")(x))


def data():
    rng = np.random.default_rng(0)
    x = rng.normal(3.0, 2.0, (32, 4)).astype("float32")
    return x, rng.normal(size=(32, 1)).astype("float32")


def statistics_move_under_fit(model):
    """Whether a `fit()` of `model` changes its BN moving statistics."""
    before = moving_statistics(model)
    model.fit(*data(), batch_size=8, epochs=1, verbose=0)
    after = moving_statistics(model)
    return not all(
        np.array_equal(a, b)
        for pair_a, pair_b in zip(before, after, strict=True)
        for a, b in zip(pair_a, pair_b, strict=True)
    )


def patch_frozen(model):
    return frozen_bn.patch_model(model, inplace=True, freeze_moving_stats=True)


def freeze_bn(model):
    return frozen_bn.freeze(model, up_to="bn", inplace=True)


def unpatch(model):
    frozen_bn.patch_model(model, inplace=True)
    return frozen_bn.unpatch_model(model, inplace=True)


CHANGES = {"patch": patch_frozen, "freeze": freeze_bn, "unpatch": unpatch}
# How `compile()` may choose to run the training step.
STEPS = {
    "default": {},
    "run_eagerly": {"run_eagerly": True},
    "jit_compile": {"jit_compile": True},
    "no_jit_compile": {"jit_compile": False},
}
# torch.compile takes a minute and more on a CPU.
STEP_PARAMS = [
    pytest.param(
        step,
        marks=[pytest.mark.slow]
        if step == "jit_compile" and keras.backend.backend() == "torch"
        else [],
    )
    for step in STEPS
]


def changed_with_warnings(change, model):
    """Runs `change(model)`; the warnings that ask for `compile()`."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        change(model)
    return [str(w.message) for w in caught if "compile()" in str(w.message)]


@pytest.mark.parametrize("change", list(CHANGES))
def test_a_compiled_model_never_fitted_needs_no_compile(change):
    model = bn_net()
    model.compile(optimizer="sgd", loss="mse")

    messages = changed_with_warnings(CHANGES[change], model)

    assert not messages
    # The step `fit()` builds now has the layers as they are.
    assert statistics_move_under_fit(model) is (change == "unpatch")


@pytest.mark.parametrize("step", STEP_PARAMS)
def test_a_fitted_model_warns_where_its_next_fit_keeps_the_old_step(step):
    model = bn_net()
    model.compile(optimizer="sgd", loss="mse", **STEPS[step])
    assert statistics_move_under_fit(model)  # The stock layer trains.

    messages = changed_with_warnings(patch_frozen, model)

    # Measured: does the next `fit()` run the stock layer still?
    kept_the_old_step = statistics_move_under_fit(model)
    assert bool(messages) is kept_the_old_step
    model.compile(optimizer="sgd", loss="mse", **STEPS[step])
    assert not statistics_move_under_fit(model)


def test_the_warning_fires_where_tracing_is_the_default():
    model = bn_net()
    model.compile(optimizer="sgd", loss="mse")
    model.fit(*data(), batch_size=8, epochs=1, verbose=0)

    messages = changed_with_warnings(patch_frozen, model)

    # TensorFlow traces the step, JAX jits it; torch runs it eagerly.
    assert bool(messages) is (keras.backend.backend() != "torch")


@pytest.mark.parametrize("change", ["freeze", "unpatch"])
def test_freeze_and_unpatch_warn_after_fit(change):
    model = bn_net()
    model.compile(optimizer="sgd", loss="mse")
    model.fit(*data(), batch_size=8, epochs=1, verbose=0)

    messages = changed_with_warnings(CHANGES[change], model)

    assert bool(messages) is (keras.backend.backend() != "torch")


def test_a_copy_of_a_fitted_model_needs_no_compile_warning():
    model = bn_net()
    model.compile(optimizer="sgd", loss="mse")
    model.fit(*data(), batch_size=8, epochs=1, verbose=0)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        copy = frozen_bn.patch_model(model)

    assert not [w for w in caught if "compile()" in str(w.message)]
    assert not copy.compiled  # `fit()` on it asks for `compile()` itself.
