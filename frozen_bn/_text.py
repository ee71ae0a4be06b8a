"""Plain-text pieces of frozen_bn's reports: aligned tables, percents, lists.

A table is a list of lines, columns separated by two spaces and a rule of
dashes under the header: it reads the same in a terminal, a log file and a
pipe, however wide, and a long layer path never wraps.
"""


def format_table(header, rows, numeric=frozenset()):
    """Lines of an aligned text table; columns in `numeric` right-aligned."""
    widths = [
        max(len(row[i]) for row in (header, *rows)) for i in range(len(header))
    ]

    def line(cells):
        return "  ".join(
            cell.rjust(width) if i in numeric else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    return [line(header), line(["-" * width for width in widths])] + [
        line(row) for row in rows
    ]


def percent(value):
    """`0.1234` as `"12.3%"`."""
    return f"{100.0 * value:.1f}%"


def names(items, shown=8):
    """The first `shown` of `items` (strings), then how many more."""
    text = ", ".join(items[:shown])
    more = len(items) - shown
    return text + (f" and {more} more" if more > 0 else "")
