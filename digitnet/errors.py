"""The one exception type the CLI turns into a short message instead of a traceback."""


class DigitnetError(ValueError):
    """Bad input from the user (a missing or corrupt file, a bad setting); the message says what to do."""
