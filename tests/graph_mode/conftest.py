"""Runs these tests in TF1 graph mode, the process-wide setting they need.

`scripts/run_tests.py` runs this directory in its own process ("tf_keras-
graph" suite) and leaves it out of the per-backend runs.
"""

import tensorflow as tf

tf.compat.v1.disable_v2_behavior()

import pytest  # noqa: E402
import tf_keras  # noqa: E402


@pytest.fixture(autouse=True)
def _fresh_tf_keras_graph():
    """Each test builds in a new graph, with a dynamic learning phase."""
    tf_keras.backend.clear_session()
    tf_keras.utils.set_random_seed(1337)
    yield
    tf_keras.backend.clear_session()
