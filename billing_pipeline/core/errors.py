"""Errors a person can act on.

Every error raised on purpose by the pipeline is a ``BillingError``: its message names what is
wrong, where, and what to do. The command line prints the message (never a traceback) and exits
with ``exit_code``.
"""


class BillingError(Exception):
    """A failure explained in plain words."""

    exit_code = 1


class InputError(BillingError):
    """The caller gave something that cannot be accepted; nothing was written."""

    exit_code = 2


class ConfigurationError(BillingError):
    """The environment does not say how to reach a service, or says it wrongly."""

    exit_code = 3
