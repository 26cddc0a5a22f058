"""The one exception type the command line turns into a one-line message."""


class UptError(ValueError):
    """A problem with the user's input (a file, a key, a config value) that the message names.

    The CLI prints ``error: <message>`` and exits with status 1 instead of a traceback, so each
    message must say which file or key is at fault on its own.
    """


class Preempted(Exception):
    """SIGTERM arrived during training; the state was saved and a rerun resumes from it.

    The CLI exits with 128 + SIGTERM, so Snakemake (and Slurm) see a failed job and retry it.
    """
