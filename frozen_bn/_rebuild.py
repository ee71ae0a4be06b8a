"""Keeps a patch in models that build their BatchNormalization layers in code.

A Functional or Sequential model saves each layer's class and config, so a
patched layer comes back from a `.keras` file as a frozen_bn layer. Models
that create their layers in a constructor (keras-hub backbones and tasks,
custom blocks, subclassed models) save their constructor arguments instead:
loading runs the constructor again, and it creates stock layers.

For such a model, patching gives the model object a class of its own: a
subclass of its class with the same name, whose config is the original
config plus the patch (every layer's `trainable` flag and every BN layer's
`freeze_moving_stats`, in model order). All such classes are saved under one
registered name, `frozen_bn>PatchedModel`, whose `from_config` rebuilds the
original model and patches it again.
"""

import functools

import keras

from frozen_bn import _copying, _walk
from frozen_bn.layers import BatchNormalization

REGISTERED_NAME = "frozen_bn>PatchedModel"


@keras.saving.register_keras_serializable(
    package="frozen_bn", name="PatchedModel"
)
class PatchedModel:
    """What every patched model class adds to the class it extends."""

    def get_config(self):
        original = type(self).original_class
        return {
            "model": {
                "module": original.__module__,
                "class_name": original.__name__,
                "config": super().get_config(),
                "registered_name": keras.saving.get_registered_name(original),
            },
            "trainable": [layer.trainable for layer in _walk.iter_layers(self)],
            "freeze_moving_stats": [
                getattr(layer, "freeze_moving_stats", None)
                for layer in _walk.batch_norm_layers(self)
            ],
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        model = keras.saving.deserialize_keras_object(
            config["model"], custom_objects=custom_objects
        )
        for layer, freeze in zip(
            _walk.batch_norm_layers(model),
            config["freeze_moving_stats"],
            strict=True,
        ):
            if freeze is not None:
                BatchNormalization._adopt(layer)
                layer.freeze_moving_stats = freeze
        _copying.set_trainable(
            zip(_walk.iter_layers(model), config["trainable"], strict=True)
        )
        keep_patch(model)
        return model


@functools.cache
def _patched_class(cls):
    patched = type(
        cls.__name__,
        (PatchedModel, cls),
        {
            "__module__": cls.__module__,
            "__qualname__": cls.__qualname__,
            "__doc__": cls.__doc__,
            "original_class": cls,
        },
    )
    # Every patched class is saved under the one registered name; whichever
    # of them the registry holds, its `from_config` is `PatchedModel`'s.
    return keras.saving.register_keras_serializable(
        package="frozen_bn", name="PatchedModel"
    )(patched)


def keep_patch(model):
    """Makes `model` keep its frozen_bn layers through a save and a load.

    Needed only where a BN layer would be created again by code on loading;
    other models are left as they are.
    """
    if isinstance(model, PatchedModel) or not any(
        isinstance(layer, BatchNormalization)
        for layer in _walk.layers_built_in_code(model)
    ):
        return
    model.__class__ = _patched_class(type(model))


def release(model):
    """Gives every patched model inside `model` back its original class."""
    for layer in (model, *_walk.iter_layers(model)):
        if isinstance(layer, PatchedModel):
            layer.__class__ = type(layer).original_class
