"""The one exception type a user can cause.

The CLI turns a UserError into one line on stderr and a non-zero exit, with no
traceback. Anything else is a bug and keeps its traceback.
"""

import re

# A lone surrogate: how Python holds a byte of a file name that is not UTF-8 (surrogateescape, U+DC80..U+DCFF),
# or one that came from elsewhere (JSON's "\ud800"). Neither can be encoded for a terminal or a log.
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def printable(text: str) -> str:
    r"""``text`` with each lone surrogate written as an escape: a name's byte 0xff as \xff (as ``ls -b`` and
    Python's repr of bytes show it), any other as \udXXX. Names are bytes on Linux; a message about one
    that is not UTF-8 stays readable and never fails to print."""
    def escape(match: re.Match) -> str:
        code = ord(match.group())
        return f"\\x{code - 0xdc00:02x}" if 0xdc80 <= code <= 0xdcff else f"\\u{code:04x}"

    return _LONE_SURROGATE.sub(escape, text)


class UserError(Exception):
    """Bad input from the user: a name, key, value, path or file. The message names it (printably)."""

    # True where another process reports the same error: every rank of a run raises it alike and rank 0 alone
    # says it, so the launcher shows one line. The CLI then exits 1 without a message.
    quiet: bool = False

    def __init__(self, *args):
        if args and isinstance(args[0], str):
            args = (printable(args[0]), *args[1:])
        super().__init__(*args)
