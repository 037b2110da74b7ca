"""The exceptions the engine raises for a run that cannot go on; how every failure ends a process (one line and
an exit code, or a traceback for a bug) is decided in one place, backbones/errors.py."""
from backbones.errors import Refusal


class TrainingError(Refusal, RuntimeError):
    """A run that cannot go on (bad settings, non-finite loss, too many unreadable images): exit 1."""


class SettingsError(TrainingError):
    """Settings that can only be judged once the model is built (a parameter filter that matches nothing, a
    method without its teacher, ...): refused before the first step, as a bad command line is: exit 2."""
    exit_code = 2
