"""A callback's one line per epoch, printed after Keras's own.

`fit()` appends its progress bar (`ProgbarLogger`) after the callbacks it
is given, on Keras 3 and tf_keras alike, and the bar ends an epoch's line
in its own `on_epoch_end`: a line printed in a callback's `on_epoch_end`
would land inside Keras's line. So a callback holds its line and prints it
when the next epoch begins or training ends, below Keras's.
"""


class EpochLine:
    """The line a callback holds for the epoch, labelled with its name.

    Args:
        label: The callback's name, which starts the line.
    """

    def __init__(self, label):
        self.label = label
        self._text = None

    def hold(self, text):
        """Holds `text` for this epoch, in place of what was held."""
        self._text = text

    def print(self):
        """Prints the held line, if any; called at `on_epoch_begin` and
        `on_train_end`."""
        if self._text is not None:
            print(f"{self.label}: {self._text}", flush=True)
            self._text = None
