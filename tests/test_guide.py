"""The Keras transfer-learning guide's end-to-end code, with frozen_bn.

Our own copy of the steps of keras-io's `guides/transfer_learning.py`
(augmentation, an Xception base without weights on small inputs,
`base_model(x, training=False)`, a Dropout head, a first fit, then
`base_model.trainable = True`, compile and fit again), with frozen_bn added
at each place a user will add it. The one-line recipe must be right on
every Keras; every other placement must warn, at `fit()`, with that line.
What is right is stated from the release: see `tests/guide_pattern.py`.
"""

import re
import warnings

import keras
import numpy as np
import pytest

import frozen_bn
from tests.guide_pattern import (
    FIT_CALL_CONTEXT_NAMES_THE_MODEL,
    HONOURS_TRAINING_FALSE,
    LEAKS_TRAINING_FALSE,
)
from tests.helpers import moving_statistics

SIZE = 71  # The smallest input Xception accepts.
RECIPE = r"frozen_bn\.patch_model\(model, inplace=True\)"


def guide(placement):
    """Runs the guide's steps with frozen_bn added as `placement` says.

    Returns:
        The fitted model, its base (the object the guide's `base_model`
        handle points at), and the findings: which fits kept the base's
        statistics, whether the head's Dropout dropped in a training-mode
        call (as under `fit()`), how many weights fine-tuning trained and
        whether the base's weights moved, and the warnings each fit gave.
    """
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (8, SIZE, SIZE, 3)).astype("float32")
    y = rng.integers(0, 2, (8, 1)).astype("float32")
    base_model = keras.applications.Xception(
        weights=None, input_shape=(SIZE, SIZE, 3), include_top=False
    )
    if placement == "base_before_building":
        frozen_bn.patch_model(base_model, inplace=True)
    base_model.trainable = False
    augmentation = keras.Sequential(
        [
            keras.layers.RandomFlip("horizontal"),
            keras.layers.RandomRotation(0.1),
        ]
    )
    inputs = keras.Input((SIZE, SIZE, 3))
    h = augmentation(inputs)
    h = keras.layers.Rescaling(scale=1 / 127.5, offset=-1)(h)
    h = base_model(h, training=False)
    h = keras.layers.GlobalAveragePooling2D()(h)
    h = keras.layers.Dropout(0.5, name="head_dropout")(h)
    model = keras.Model(inputs, keras.layers.Dense(1)(h))
    if placement == "recipe":
        frozen_bn.patch_model(model, inplace=True)
    elif placement == "copy":
        model = frozen_bn.patch_model(model)
    fitted_base = model.get_layer(base_model.name)
    kernel = fitted_base.get_layer("block1_conv1").kernel
    findings = {"dropout_rate": dropout_rate(model, x)}

    def fit(learning_rate):
        before = [moving_statistics(bn) for bn in batch_norms(fitted_base)]
        kernel_before = keras.ops.convert_to_numpy(kernel).copy()
        model.compile(
            optimizer=keras.optimizers.Adam(learning_rate),
            loss=keras.losses.BinaryCrossentropy(from_logits=True),
            run_eagerly=True,  # One step: tracing it would take longer.
        )
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model.fit(x, y, batch_size=8, epochs=1, verbose=0)
        after = [moving_statistics(bn) for bn in batch_norms(fitted_base)]
        kept = all(
            np.array_equal(a, b)
            for pair_a, pair_b in zip(before, after, strict=True)
            for a, b in zip(pair_a, pair_b, strict=True)
        )
        moved = not np.array_equal(
            kernel_before, keras.ops.convert_to_numpy(kernel)
        )
        messages = [str(w.message) for w in caught]
        return kept, moved, messages

    findings["first"] = fit(1e-3)
    base_model.trainable = True  # The guide's handle.
    findings["trained_weights"] = len(model.trainable_weights)
    # What the guide means to train: the base's weights and the head's 2.
    findings["meant_weights"] = len(base_model.trainable_weights) + 2
    findings["fine_tune"] = fit(1e-5)
    return findings


def batch_norms(model):
    return [
        layer
        for layer in model.layers
        if isinstance(layer, keras.layers.BatchNormalization)
    ]


def dropout_rate(model, x):
    """The fraction of the head's features that its Dropout zeroes.

    Zeros in a training-mode call (as `fit()` makes) less those in an
    inference-mode one: some pooled features are zero in both.
    """
    upto = keras.Model(model.inputs, model.get_layer("head_dropout").output)
    zeros = [
        np.mean(keras.ops.convert_to_numpy(upto(x, training=mode)) == 0.0)
        for mode in (True, False)
    ]
    return float(zeros[0] - zeros[1])


def test_the_recipe_is_right_on_this_keras():
    findings = guide("recipe")

    first_kept, _, first_warnings = findings["first"]
    tune_kept, tune_moved, tune_warnings = findings["fine_tune"]
    assert first_kept and tune_kept
    assert 0.3 < findings["dropout_rate"] < 0.7
    assert findings["trained_weights"] == findings["meant_weights"] > 100
    assert tune_moved
    assert not [m for m in first_warnings + tune_warnings if "frozen_bn" in m]


needs_fit_context = pytest.mark.skipif(
    not FIT_CALL_CONTEXT_NAMES_THE_MODEL,
    reason="Keras <= 3.15 on JAX does not say which model fit() trains",
)


@needs_fit_context
def test_a_base_patched_before_building_warns_with_the_recipe():
    findings = guide("base_before_building")

    _, _, first_warnings = findings["first"]
    tune_kept, _, tune_warnings = findings["fine_tune"]
    warned = [m for m in first_warnings + tune_warnings if "inplace=True" in m]
    # 3.15 overrides training=False once the base is unfrozen; 3.16 keeps
    # it, and passes it on to the head's Dropout from the first fit.
    assert tune_kept is HONOURS_TRAINING_FALSE
    assert (abs(findings["dropout_rate"]) < 0.1) is LEAKS_TRAINING_FALSE
    assert warned
    assert all(re.search(RECIPE, m) for m in warned)


def test_a_copy_whose_original_changes_warns_with_the_recipe():
    findings = guide("copy")

    _, tune_moved, tune_warnings = findings["fine_tune"]
    assert findings["trained_weights"] == 2 < findings["meant_weights"]
    assert not tune_moved
    assert any(
        "does not see them" in m and "inplace=True" in m for m in tune_warnings
    )
