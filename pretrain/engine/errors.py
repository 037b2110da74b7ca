"""The one exception the engine raises for a run that cannot go on."""


class TrainingError(RuntimeError):
    """A run that cannot go on (bad settings, non-finite loss, too many unreadable images)."""
