"""The project's error types: problems a user can fix, each reported as one line naming the file, key or value.

`src/infra/runtime.py` `run_main` turns any of them into `<program>: error: <message>` on stderr and the error's
`exit_status` (2, a usage error: the input has to change; 1 for a run that failed on the way, TrainingError), without
a traceback unless --debug=True; everything else is a bug and keeps its traceback.
"""

USAGE_STATUS = 2
FAILURE_STATUS = 1


class FasterRcnnError(ValueError):
    """Base of the errors below."""

    exit_status = USAGE_STATUS


class ConfigError(FasterRcnnError):
    """A configuration file or value that cannot be used; the message names the key."""


class DataError(FasterRcnnError):
    """A data set, annotation or image that cannot be used; the message names the file (and line or field)."""


class CheckpointError(FasterRcnnError):
    """A checkpoint that cannot be read or does not fit the network; the message names the file and parameters."""


class DeviceError(FasterRcnnError):
    """A device target this MindSpore installation cannot run."""


class ExportError(FasterRcnnError):
    """An export request that cannot be honoured (format, target); raised before any work."""


class InferError(FasterRcnnError):
    """An unusable MINDIR, image folder or image; the message names it."""


class OutputError(FasterRcnnError):
    """An output folder that cannot be written (missing permission, read-only, full) or that another live run
    holds; raised before any work."""


class WriteError(FasterRcnnError):
    """A write that failed after the work was done (disk full, folder removed); the message names the file, the
    operating system's reason and what was kept."""

    exit_status = FAILURE_STATUS


class TrainingError(FasterRcnnError):
    """Training that had to stop (divergence); the message names the step and the last good checkpoint."""

    exit_status = FAILURE_STATUS
