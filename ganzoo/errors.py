"""The one exception type a user can cause.

The CLI turns a UserError into one line on stderr and a non-zero exit, with no
traceback. Anything else is a bug and keeps its traceback.
"""


class UserError(Exception):
    """Bad input from the user: a name, key, value, path or file. The message names it."""
