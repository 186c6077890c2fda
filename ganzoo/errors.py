"""The one exception type a user can cause.

The CLI turns a UserError into one line on stderr and a non-zero exit, with no
traceback. Anything else is a bug and keeps its traceback.
"""


class UserError(Exception):
    """Bad input from the user: a name, key, value, path or file. The message names it."""

    # True where another process reports the same error: every rank of a run raises it alike and rank 0 alone
    # says it, so the launcher shows one line. The CLI then exits 1 without a message.
    quiet: bool = False
