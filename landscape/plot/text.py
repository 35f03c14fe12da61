"""Text from files and users, made safe to hand to matplotlib."""

from __future__ import annotations


def plain(text: object) -> str:
    """``text`` as matplotlib draws it literally: every ``$`` escaped.

    Matplotlib reads a string holding an even number of unescaped ``$`` as mathtext, so a model,
    parameter, quantity or file name such as ``$\\frac{$`` would be parsed (and fail to parse
    when the figure is drawn). With each ``$`` written ``\\$`` no mathtext is left, and
    matplotlib draws ``\\$`` as ``$``: the name appears exactly as it is.
    """
    return str(text).replace("$", r"\$")
