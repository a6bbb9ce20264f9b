"""The one exception type for problems the user can fix (bad path, bad shapes, bad file)."""


class UserError(Exception):
    """A problem with the user's input, reported as one line without a traceback.

    The message must name what is wrong and, where possible, what to do about it.
    """
