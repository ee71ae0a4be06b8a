"""Draws the diagnose figures of the docs: MobileNetV2 and ResNet50.

Usage: python scripts/diagnose_figures.py [OUT_DIR]  (default: docs/)

Each architecture (`keras.applications`, `weights=None`: nothing is
downloaded) gets its moving statistics from `frozen_bn.recalibrate` on
digits 0-4 of scikit-learn's `load_digits`, as a pretrained model has
them from its source data; its first stage is frozen
(`frozen_bn.freeze`), and it is diagnosed on digits 5-9 drawn brighter and
with less contrast, a shifted target: the frozen layers that drifted are
drawn as drifted, those that will train as at risk. The figures go through
`frozen-bn diagnose --plot`, the command a user runs.
"""

import os
import sys
import tempfile

import keras
import numpy as np
from sklearn.datasets import load_digits

import frozen_bn
from frozen_bn import cli

SIZE = 96
ARCHITECTURES = {
    "mobilenetv2": keras.applications.MobileNetV2,
    "resnet50": keras.applications.ResNet50,
}


def digit_images(digits, count):
    """`count` images of `digits`, 8x8 scaled up to SIZE, 3 channels."""
    x, y = load_digits(return_X_y=True)
    x = x[np.isin(y, digits)][:count].reshape(-1, 8, 8, 1) / 16.0
    x = np.repeat(np.repeat(x, SIZE // 8, axis=1), SIZE // 8, axis=2)
    return np.repeat(x, 3, axis=-1).astype("float32") * 2.0 - 1.0


def main(out_dir):
    keras.utils.set_random_seed(0)
    source = digit_images([0, 1, 2, 3, 4], 256)
    target = 0.4 * digit_images([5, 6, 7, 8, 9], 256) + 0.5
    with tempfile.TemporaryDirectory() as work:
        data = os.path.join(work, "target.npz")
        np.savez(data, x=target)
        for name, architecture in ARCHITECTURES.items():
            model = architecture(weights=None, input_shape=(SIZE, SIZE, 3))
            frozen_bn.recalibrate(model, source, verbose=0)
            model = frozen_bn.freeze(
                frozen_bn.patch_model(model), stages=1, batch_norm="train"
            )
            path = os.path.join(work, f"{name}.keras")
            model.save(path)
            plot = os.path.join(out_dir, f"diagnose-{name}.png")
            code = cli.main(["diagnose", path, data, "--plot", plot])
            if code:
                return code
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "docs"))
