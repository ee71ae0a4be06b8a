"""Tests for `frozen_bn.cache_features` (Keras 3, every backend)."""

import os

import keras
import numpy as np
import pytest

import frozen_bn
from tests import keras_hub_models
from tests.helpers import all_weights, assert_weights_bitwise_equal, to_numpy

BATCH = 4
COUNT = 10  # Not a multiple of BATCH: the last batch is smaller.

# (keras-hub backbone, cut): one per backbone, and for the graphs holding
# `keras.ops` calls a cut right after one (`keras_hub_models.cut_name`).
HUB_CUTS = [
    ("resnet_v1", "stack1_block0_1_relu"),  # the base hands over 2 tensors
    ("resnet_v2", "ops.pad"),
    ("resnet_vd", "stack0_block0_out"),
    ("mobilenet_v3", "block_1_0"),
    ("efficientnet", "block2a_project_bn"),
    ("cspnet", "ops.split"),  # its two halves
    ("densenet", "transition1_pool"),
    ("xception", "block1_pool"),
]


def residual_model():
    """Conv+BN+ReLU blocks with a shortcut around the second one."""
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", name="conv1")(inputs)
    x = keras.layers.BatchNormalization(name="bn1")(x)
    x = keras.layers.ReLU(name="relu1")(x)
    y = keras.layers.Conv2D(4, 3, padding="same", name="conv2")(x)
    y = keras.layers.BatchNormalization(name="bn2")(y)
    x = keras.layers.Add(name="add")([x, y])
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = keras.layers.Dense(3, name="dense")(x)
    model = keras.Model(inputs, outputs)
    rng = np.random.default_rng(0)
    for bn in (model.get_layer("bn1"), model.get_layer("bn2")):
        bn.moving_mean.assign(rng.uniform(-1, 1, 4).astype("float32"))
        bn.moving_variance.assign(rng.uniform(0.5, 2, 4).astype("float32"))
    return model


def dataset():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((COUNT, 8, 8, 3)).astype("float32")
    y = rng.integers(0, 3, COUNT)
    return x, y


def base_at(at):
    base, _ = frozen_bn.split_model(residual_model(), at)
    return base


def expected_features(base, x):
    return base.predict(x, batch_size=BATCH, verbose=0)


def hub_images():
    """One batch of 32x32 images: on JAX, each batch shape compiles."""
    rng = np.random.default_rng(2)
    return rng.standard_normal((BATCH, 32, 32, 3)).astype("float32")


class Batches(keras.utils.PyDataset):
    def __init__(self, x, y):
        super().__init__()
        self.x, self.y = x, y

    def __len__(self):
        return -(-len(self.x) // BATCH)

    def __getitem__(self, index):
        window = slice(index * BATCH, (index + 1) * BATCH)
        return self.x[window], self.y[window]


def generator(x, y):
    for start in range(0, len(x), BATCH):
        yield x[start : start + BATCH], y[start : start + BATCH]


def tf_dataset(x, y):
    import tensorflow as tf

    return tf.data.Dataset.from_tensor_slices((x, y)).batch(BATCH)


DATA_FORMS = {
    "numpy": lambda x, y: x,
    "tuple": lambda x, y: (x, y),
    "tf.data": tf_dataset,
    "PyDataset": Batches,
    "generator": generator,
}


@pytest.mark.parametrize("form", sorted(DATA_FORMS))
def test_features_equal_base_predict(form):
    base = base_at("relu1")
    x, y = dataset()

    features = frozen_bn.cache_features(
        base, DATA_FORMS[form](x, y), batch_size=BATCH, verbose=0
    )

    assert type(features) is np.ndarray
    np.testing.assert_array_equal(features, expected_features(base, x))


@keras_hub_models.requires_keras_hub
@pytest.mark.slow
@pytest.mark.parametrize("name, at", HUB_CUTS)
def test_keras_hub_features_equal_base_outputs(name, at):
    model = keras_hub_models.shared_backbone(name)
    base, _ = frozen_bn.split_model(model, keras_hub_models.cut_name(model, at))
    x = hub_images()

    features = frozen_bn.cache_features(base, x, batch_size=BATCH, verbose=0)

    cached = keras.tree.flatten(features)
    predicted = keras.tree.flatten(expected_features(base, x))
    called = keras.tree.flatten(base(x, training=False))
    assert len(cached) == len(base.outputs)
    for ours, by_predict, by_call in zip(
        cached, predicted, called, strict=True
    ):
        np.testing.assert_array_equal(ours, by_predict)
        # `predict` runs compiled and a call eagerly: the two may round
        # differently (MobileNetV3 on TensorFlow does).
        np.testing.assert_allclose(
            ours, to_numpy(by_call), rtol=1e-5, atol=1e-6
        )


@keras_hub_models.requires_keras_hub
@pytest.mark.slow
def test_keras_hub_backbone_is_cached_whole():
    backbone = keras_hub_models.shared_backbone("resnet_v2")
    x = hub_images()

    features = frozen_bn.cache_features(
        backbone, x, batch_size=BATCH, verbose=0
    )

    np.testing.assert_array_equal(features, expected_features(backbone, x))


@keras_hub_models.requires_keras_hub
@pytest.mark.slow
def test_keras_hub_cached_halves_feed_the_head():
    model = keras_hub_models.shared_backbone("cspnet")
    base, head = frozen_bn.split_model(
        model, keras_hub_models.cut_name(model, "ops.split")
    )
    x = hub_images()

    features = frozen_bn.cache_features(base, x, batch_size=BATCH, verbose=0)

    assert len(features) == 2
    np.testing.assert_array_equal(
        head.predict(features, batch_size=BATCH, verbose=0),
        model.predict(x, batch_size=BATCH, verbose=0),
    )


def test_cut_inside_block_caches_every_tensor():
    base = base_at("bn2")  # The shortcut from relu1 crosses this cut.
    x, _ = dataset()

    features = frozen_bn.cache_features(base, x, batch_size=BATCH, verbose=0)

    expected = expected_features(base, x)
    assert len(features) == len(expected) == 2
    for cached, direct in zip(features, expected, strict=True):
        np.testing.assert_array_equal(cached, direct)


def test_path_writes_memmapped_npy_files(tmp_path):
    base = base_at("bn2")
    x, _ = dataset()
    path = tmp_path / "cache"

    features = frozen_bn.cache_features(
        base, x, batch_size=BATCH, path=path, verbose=0
    )

    assert sorted(os.listdir(path)) == ["features_0.npy", "features_1.npy"]
    for index, (cached, direct) in enumerate(
        zip(features, expected_features(base, x), strict=True)
    ):
        assert isinstance(cached, np.memmap)
        assert not cached.flags.writeable
        np.testing.assert_array_equal(cached, direct)
        reopened = np.load(path / f"features_{index}.npy", mmap_mode="r")
        np.testing.assert_array_equal(reopened, direct)


def test_path_handles_data_of_unknown_length(tmp_path):
    base = base_at("relu1")
    x, y = dataset()

    features = frozen_bn.cache_features(
        base, generator(x, y), path=tmp_path, verbose=0
    )

    assert isinstance(features, np.memmap)
    np.testing.assert_array_equal(features, expected_features(base, x))


def test_path_removes_its_files_when_caching_fails(tmp_path):
    base = base_at("bn2")
    x, y = dataset()

    def failing():
        yield x[:BATCH]
        raise OSError("disk went away")

    with pytest.raises(OSError, match="disk went away"):
        frozen_bn.cache_features(base, failing(), path=tmp_path, verbose=0)
    assert os.listdir(tmp_path) == []


def test_a_failed_call_leaves_the_files_of_an_earlier_one(tmp_path):
    base = base_at("bn2")  # Two outputs: two files.
    x, _ = dataset()
    frozen_bn.cache_features(base, x, path=tmp_path, verbose=0)
    names = sorted(os.listdir(tmp_path))
    before = [(tmp_path / name).read_bytes() for name in names]

    def failing():
        yield x[:BATCH]
        raise OSError("disk went away")

    with pytest.raises(OSError, match="disk went away"):
        frozen_bn.cache_features(base, failing(), path=tmp_path, verbose=0)
    assert sorted(os.listdir(tmp_path)) == names
    assert [(tmp_path / name).read_bytes() for name in names] == before


def test_a_second_call_keeps_the_arrays_of_the_first(tmp_path):
    base = base_at("bn2")
    x, _ = dataset()
    first = frozen_bn.cache_features(base, x, path=tmp_path, verbose=0)
    kept = [np.array(features) for features in first]
    second = frozen_bn.cache_features(
        base, x[:BATCH] + 1.0, path=tmp_path, verbose=0
    )
    # The first memmaps read the files they were opened from, not their
    # successors.
    for features, values in zip(first, kept, strict=True):
        np.testing.assert_array_equal(features, values)
    for features, expected in zip(
        second, expected_features(base, x[:BATCH] + 1.0), strict=True
    ):
        np.testing.assert_array_equal(features, expected)


def test_caching_does_not_change_base():
    base = base_at("relu1")
    before = all_weights(base)

    frozen_bn.cache_features(base, dataset()[0], verbose=0)

    assert_weights_bitwise_equal(before, all_weights(base))


def test_head_trained_on_cache_matches_model_with_frozen_base():
    x, y = dataset()
    model = residual_model()
    reference = keras.models.clone_model(model)
    reference.set_weights(model.get_weights())
    for at in range(1, 4):  # conv1, bn1, relu1: the frozen bottom
        reference.layers[at].trainable = False
    base, head = frozen_bn.split_model(model, "relu1")
    base.trainable = False
    features = frozen_bn.cache_features(base, x, verbose=0)
    for trained, inputs in ((head, features), (reference, x)):
        trained.compile(keras.optimizers.SGD(0.1), "mse")
        trained.fit(inputs, np.eye(3)[y], epochs=2, shuffle=False, verbose=0)

    for ours, theirs in zip(
        all_weights(model), all_weights(reference), strict=True
    ):
        np.testing.assert_allclose(ours[1], theirs[1], rtol=1e-5, atol=1e-6)


def test_verbose_shows_a_progress_bar(capsys):
    base = base_at("relu1")
    x, _ = dataset()

    frozen_bn.cache_features(base, x, batch_size=BATCH, verbose=0)
    silent = capsys.readouterr().out
    frozen_bn.cache_features(base, x, batch_size=BATCH, verbose=1)
    shown = capsys.readouterr().out

    assert silent == ""
    assert "3/3" in shown


def test_rejects_non_model_base():
    with pytest.raises(TypeError, match=r"Received: base=\[1, 2\]"):
        frozen_bn.cache_features([1, 2], dataset()[0])


@keras_hub_models.requires_keras_hub
def test_rejects_model_class():
    with pytest.raises(
        TypeError,
        match=r"Expected `base` to be a keras.Model. "
        r"Received: base=<class '.*\.ResNetBackbone'>",
    ):
        frozen_bn.cache_features(
            keras_hub_models.keras_hub.models.ResNetBackbone, hub_images()
        )


def test_rejects_bad_verbose():
    with pytest.raises(ValueError, match=r"Received: verbose=3"):
        frozen_bn.cache_features(base_at("relu1"), dataset()[0], verbose=3)


def test_rejects_empty_data():
    with pytest.raises(
        ValueError, match=r"Expected `data` to yield at least one batch"
    ):
        frozen_bn.cache_features(base_at("relu1"), iter([]), verbose=0)


def test_rejects_bad_batch_size():
    with pytest.raises(ValueError, match=r"Received: batch_size=0"):
        frozen_bn.cache_features(base_at("relu1"), dataset()[0], batch_size=0)


def test_cached_features_feed_the_head():
    x, _ = dataset()
    model = residual_model()
    base, head = frozen_bn.split_model(model, "bn2")

    features = frozen_bn.cache_features(base, x, verbose=0)

    np.testing.assert_allclose(
        head.predict(features, verbose=0),
        to_numpy(model(x, training=False)),
        rtol=1e-5,
        atol=1e-6,
    )
