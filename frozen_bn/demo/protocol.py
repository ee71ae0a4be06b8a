"""The demo's experiment: its schedule, its settings and what it measures.

The 2018 "Keras BN layer is broken" experiment (Datumbox) fine-tunes a
pretrained ResNet50 in two stages and evaluates it three ways; the demo
does the same with a small network on scikit-learn's digits. This module
holds the fixed choices: the training schedule (`Protocol`), the ways of
fine-tuning (`SETTINGS`), the BatchNormalization implementations each runs
with and the evaluation modes.
"""

import dataclasses

# Part of the cache file name: change it whenever `models.build_base`
# changes.
ARCHITECTURE = "vgg6-16px-v1"
IMAGE_SIZE = 16
SHIFT = (0.4, 0.5)  # target images: x' = 0.4 x + 0.5
# The layers of the base that stage 2 fine-tunes (the 2018 experiment: the
# layers after 139 of ResNet50's 175, i.e. its last stage).
FINE_TUNED_BLOCK = "block3"
MODES = ("dynamic", "inference", "training")
MODE_LABELS = {
    "dynamic": "Dynamic (predict)",
    "inference": "inference mode",
    "training": "training mode",
}
IMPLEMENTATIONS = {
    "stock": "stock",
    "patched": "frozen_bn",
    "recalibrated": "frozen_bn + recalibrate",
    "precise": "frozen_bn + PreciseBN",
}


@dataclasses.dataclass(frozen=True)
class Protocol:
    """The experiment's schedule; printed with every run."""

    pretrain_epochs: int = 12
    stage1_epochs: int = 10
    stage2_epochs: int = 5
    # RMSprop for stage 1 (the 2018 experiment: RMSprop with its default
    # 1e-3).
    stage1_learning_rate: float = 1e-3
    # SGD with momentum 0.9 for stage 2 (the 2018 experiment: 1e-4). Our
    # target set is ~450 images, 15 steps an epoch: 1e-4 would barely move
    # the net.
    stage2_learning_rate: float = 3e-3
    # BN momentum of the architecture (the 2018 experiment's ResNet50:
    # 0.99). The statistics of the layers fine-tuned in stage 2 must settle
    # in its ~75 steps; with 0.99 half of the source statistics would remain.
    bn_momentum: float = 0.9
    batch_size: int = 32

    def describe(self):
        """The schedule in a few lines of text."""
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
    # Runs added to ours: "recalibrated" (`frozen_bn.recalibrate`, AdaBN,
    # before training) and "precise" (the `PreciseBN` callback in stage 2).
    extra_runs: tuple = ()

    def implementations(self):
        """The keys of `IMPLEMENTATIONS` this setting runs, in order."""
        return ["stock", "patched", *self.extra_runs]


SETTINGS = (
    Setting(
        "tf_keras_graph",
        "tf_keras, TF1 graph mode (the 2018 experiment's setting)",
        base_training=None,
        graph_mode=True,
    ),
    Setting(
        "keras3_guide",
        "Keras 3, the guide's pattern: base(x, training=False), then "
        "base.trainable = True",
        base_training=False,
        extra_runs=("recalibrated",),
    ),
    Setting(
        "keras3_trainable",
        "Keras 3, trainable=False only (stock is right here)",
        base_training=None,
        extra_runs=("precise",),
    ),
)
GRAPH_MODE_SETTING = next(s for s in SETTINGS if s.graph_mode)
