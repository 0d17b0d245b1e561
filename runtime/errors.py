"""The one exception type vpkl raises for bad user input."""


class VpklInputError(ValueError):
    """Bad user input: a file, an array, a bundle or a query that vpkl cannot use.

    The message always names the input (a path or an argument name) and what was
    expected, so that the CLI can print it as one line.
    """
