"""Which layers `frozen_bn.freeze` freezes: its `up_to` and `stages` arguments.

Each form of the argument (a layer name, an index, a `Stage`, a callable, a
number of stages) becomes one flag per layer of `_walk.iter_layers(model)`,
after checks whose errors list the valid values.
"""

import difflib
import numbers
import reprlib

import numpy as np

from frozen_bn import _walk
from frozen_bn._checks import check_layer_index, check_rule_result
from frozen_bn.architecture import Stage
from frozen_bn.architecture import stages as model_stages


def frozen_layers(model, up_to, stages):
    """Whether each layer of `iter_layers(model)` is in the frozen part."""
    if (up_to is None) == (stages is None):
        raise ValueError(
            "Expected exactly one of `up_to` and `stages`. "
            f"Received: up_to={reprlib.repr(up_to)}, stages={stages!r}"
        )
    pairs = list(_walk.iter_layers_with_parents(model))
    layers = [layer for layer, _ in pairs]
    if stages is not None:
        last = _last_of_stages(model, stages)
        if last is None:
            return [False] * len(pairs)
        return _up_to_position(pairs, _position(layers, last))
    if isinstance(up_to, bool | np.bool_):
        raise _type_error(up_to)
    if isinstance(up_to, numbers.Integral):
        index = check_layer_index(up_to, "up_to", model)
        return _up_to_position(pairs, _position(layers, index))
    if isinstance(up_to, str):
        return _up_to_position(pairs, _named(model, layers, up_to))
    if isinstance(up_to, Stage):
        last = _checked_stage(model, up_to)
        return _up_to_position(pairs, _position(layers, last))
    if callable(up_to):
        chosen = {id(layer) for layer in layers if _chosen(up_to, layer)}
        return [
            any(id(item) in chosen for item in (*parents, layer))
            for layer, parents in pairs
        ]
    raise _type_error(up_to)


def _type_error(up_to):
    return TypeError(
        "Expected `up_to` to be a layer name, an index into `model.layers`, "
        "a `frozen_bn.Stage` or a callable `layer -> bool`. "
        f"Received: up_to={reprlib.repr(up_to)} of type {type(up_to).__name__}"
    )


def _up_to_position(pairs, position):
    """Frozen: up to `position` and inside it; not what spans past it."""
    last = position
    inside = pairs[position][0]
    while last + 1 < len(pairs) and any(
        parent is inside for parent in pairs[last + 1][1]
    ):
        last += 1  # The layers inside the layer at `position`.
    frozen = {
        id(layer): index <= last for index, (layer, _) in enumerate(pairs)
    }
    for _, parents in pairs[last + 1 :]:
        for parent in parents:  # A layer spanning the boundary.
            frozen[id(parent)] = False
    return [frozen[id(layer)] for layer, _ in pairs]


def _position(layers, layer):
    return next(i for i, item in enumerate(layers) if item is layer)


def _named(model, layers, name):
    for position, layer in enumerate(layers):
        if layer.name == name:
            return position
    close = difflib.get_close_matches(name, [layer.name for layer in layers])
    hint = f" Did you mean {' or '.join(map(repr, close))}?" if close else ""
    raise ValueError(
        f"Expected `up_to` to be the name of a layer of `model`, which has "
        f"{len(layers)} layers (nested ones included).{hint} "
        f"Received: up_to={name!r}"
    )


def _stage_list(found):
    return "; ".join(
        f"{count}: up to {stage.name}" for count, stage in enumerate(found, 1)
    )


def _last_of_stages(model, count):
    if isinstance(count, bool | np.bool_) or not isinstance(
        count, numbers.Integral
    ):
        raise TypeError(
            "Expected `stages` to be an int, the number of stages to freeze. "
            f"Received: stages={reprlib.repr(count)} of type "
            f"{type(count).__name__}"
        )
    count = int(count)
    found = model_stages(model)
    if not 0 <= count <= len(found):
        raise ValueError(
            f"Expected `stages` to be from 0 (nothing frozen) to {len(found)}"
            f" ({_stage_list(found)}). Received: stages={count}"
        )
    return model.get_layer(found[count - 1].last) if count else None


def _checked_stage(model, stage):
    found = model_stages(model)
    if stage not in found:
        raise ValueError(
            "Expected `up_to` to be one of `frozen_bn.stages(model)` "
            f"({_stage_list(found)}). Received: up_to={stage!r}"
        )
    return model.get_layer(stage.last)


def _chosen(rule, layer):
    return check_rule_result(rule(layer), "up_to", layer)
