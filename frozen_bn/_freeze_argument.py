"""The `freeze_moving_stats` argument, shared by the layers of both Kerases.

`frozen_bn.BatchNormalization` (Keras 3) and the `frozen_bn.tf_keras`
layers extend different stock classes; this mixin, listed before the stock
class, gives both the same argument, property, check and config entry.
"""

from typing import Any

from frozen_bn._checks import check_bool


class FreezeMovingStatsArgument:
    """Adds `freeze_moving_stats` to a BatchNormalization class."""

    def __init__(
        self, *args: Any, freeze_moving_stats: bool = False, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.freeze_moving_stats = freeze_moving_stats

    @property
    def freeze_moving_stats(self):
        """Whether the moving statistics are fixed while the layer trains."""
        return self._freeze_moving_stats

    @freeze_moving_stats.setter
    def freeze_moving_stats(self, value):
        self._freeze_moving_stats = check_bool(value, "freeze_moving_stats")
        self._freeze_moving_stats_changed()

    def _freeze_moving_stats_changed(self):
        """Called whenever the flag is set; a class may act on it."""

    def get_config(self):
        base_config = super().get_config()
        config = {"freeze_moving_stats": self.freeze_moving_stats}
        return {**base_config, **config}
