"""User-facing errors: the CLI prints these as one line, without a traceback."""


class UserError(Exception):
    """Bad input from the user (spec, path, name); the message names the fix."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C, with what is (and is not) saved said in its message."""
