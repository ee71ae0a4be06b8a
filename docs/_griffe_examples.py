"""A griffe extension: docstring examples written `>>>` render as code.

Our docstrings write their examples as Keras's do, `>>>` lines after an
`Example:` line. Markdown would read those lines as nested quotes, so each
run of them (up to the next blank line) is fenced as a `pycon` block.
"""

import re

import griffe

_EXAMPLE = re.compile(r"^(>>> .*(?:\n(?!\s*$).*)*)", re.M)


class DoctestFences(griffe.Extension):
    def on_instance(self, *, obj, **kwargs):
        if obj.docstring is not None and ">>> " in obj.docstring.value:
            obj.docstring.value = _EXAMPLE.sub(
                r"```pycon\n\1\n```", obj.docstring.value
            )
