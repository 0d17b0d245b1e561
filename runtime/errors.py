"""The exception vpkl raises for bad user input, and the warning it gives for doubtful input."""


class VpklInputError(ValueError):
    """Bad user input: a file, an array, a bundle or a query that vpkl cannot use.

    The message always names the input (a path or an argument name) and what was
    expected, so that the CLI can print it as one line.
    """


class VpklWarning(UserWarning):
    """Input vpkl uses but doubts (e.g. stereo channels that cancel when mixed to mono).

    Given through Python's :mod:`warnings`; the message names the input, and the CLI prints it
    as one line ``vpkl: warning: ...`` on stderr.
    """
