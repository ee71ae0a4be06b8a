"""The demo's data: scikit-learn's digits, split into a source and a target.

No download: `load_digits` ships with scikit-learn. The source task is the
ten digits as they are; the target task is "is the digit >= 5?" on
low-contrast images, whose statistics differ from the source's.
"""

import numpy as np

from frozen_bn.demo.protocol import IMAGE_SIZE, SHIFT


def load_data(seed):
    """Source and target splits of scikit-learn's digits, fixed by `seed`.

    Returns:
        A dict of `(x, y)` pairs: `"source"` (half of the images, 10
        classes, pixels in [0, 1]), and `"target_train"` / `"target_test"`
        (a quarter each, label `digit >= 5`, images shifted to
        `0.4 x + 0.5`). Images are `IMAGE_SIZE` square, one channel.
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    scale = IMAGE_SIZE // digits.images.shape[1]
    images = digits.images.astype("float32") / 16.0
    images = images.repeat(scale, axis=1).repeat(scale, axis=2)[..., None]
    order = np.random.default_rng(seed).permutation(len(images))
    half, three_quarters = len(order) // 2, 3 * len(order) // 4
    parts = np.split(order, [half, three_quarters])
    source, train, test = ((images[i], digits.target[i]) for i in parts)
    scale, offset = SHIFT

    def target(part):
        x, y = part
        return scale * x + offset, (y >= 5).astype("float32")

    return {
        "source": source,
        "target_train": target(train),
        "target_test": target(test),
    }
