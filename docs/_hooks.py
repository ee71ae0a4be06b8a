"""mkdocs hooks: render the docs' test markers as plain code.

A fence written "```python notest" (a block the docs runner skips, see
tests/test_docs.py) is shown as an ordinary Python block.
"""

import re

_NOTEST_FENCE = re.compile(r"^(\s*```python)[ \t]+notest[ \t]*$", re.M)


def on_page_markdown(markdown, **kwargs):
    return _NOTEST_FENCE.sub(r"\1", markdown)
