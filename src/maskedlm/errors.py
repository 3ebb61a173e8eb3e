"""The one exception type for user errors.

The CLI turns a :class:`MaskedLMError` into a single line on stderr and exit code 2;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class MaskedLMError(Exception):
    """A user error: bad input, a missing file, an impossible setting.

    The message must name the file/line/field at fault, in one line.

    >>> raise MaskedLMError("corpus.txt: empty corpus")  # doctest: +SKIP
    """
