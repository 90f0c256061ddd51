"""Test double (tests/test_publish_faults.py), imported by every Python process started with this
folder on PYTHONPATH: publishing into a path named in SAERAND_REFUSE_PUBLISHING (os.pathsep
between them), or under one, fails as a job killed at that moment would; each refused destination
is appended to the file SAERAND_REFUSALS. Every rule publishes by os.rename or os.replace."""

import errno
import os

_TARGETS = [os.path.abspath(path) for path in os.environ.get("SAERAND_REFUSE_PUBLISHING", "").split(os.pathsep) if path]


def _is_target(destination) -> bool:
    path = os.path.abspath(os.fspath(destination))
    return any(path == target or path.startswith(target + os.sep) for target in _TARGETS)


def _refusing(move):
    def move_unless_target(source, destination, *args, **kwargs):
        if _is_target(destination):
            with open(os.environ["SAERAND_REFUSALS"], "a") as refusals:
                refusals.write(os.path.abspath(os.fspath(destination)) + "\n")
            raise OSError(errno.EIO, "publishing refused by tests/publish_faults", os.fspath(destination))
        return move(source, destination, *args, **kwargs)

    return move_unless_target


if _TARGETS:
    os.rename = _refusing(os.rename)
    os.replace = _refusing(os.replace)
