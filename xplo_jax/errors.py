"""User-facing errors.

Every error a user can cause with bad input is an ``XploError``: its message names
the file, the line or field, and what was expected. Entry points catch it, print
``error: <message>`` to stderr and exit with status 2 (see ``cli_main``).
"""

from __future__ import annotations

import logging
import sys
from typing import Callable

__all__ = ["XploError", "DataError", "ConfigError", "ShardError", "cli_main"]


class XploError(Exception):
  """Base class of the errors caused by input, not by a bug."""


class DataError(XploError, ValueError):
  """A data file is missing, empty or malformed.

  Args:
    message: what is wrong and what was expected.
    path: the file (or folder) concerned.
    line: 1-based line number in ``path``, when known.
    field: the column or field name, when known.
  """

  def __init__(self, message: str, *, path=None, line: int | None = None,
               field: str | None = None):
    self.path = None if path is None else str(path)
    self.line = line
    self.field = field
    self.reason = message
    where = ""
    if self.path is not None:
      where = self.path
      if line is not None:
        where += f":{line}"
      where += ": "
    if field is not None:
      where += f"field '{field}': "
    super().__init__(where + message)


class ConfigError(XploError, ValueError):
  """A configuration value is out of range or inconsistent."""


class ShardError(XploError):
  """A preprocessed shard directory is corrupted, incomplete or from another config."""


def cli_main(main: Callable[[list[str] | None], int | None],
             argv: list[str] | None = None) -> int:
  """Runs ``main(argv)``; turns an ``XploError`` into a message and exit code 2."""
  logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s",
                      stream=sys.stderr)
  for noisy in ("absl", "orbax", "jax._src"):      # library chatter stays at WARNING
    logging.getLogger(noisy).setLevel(logging.WARNING)
  try:
    return int(main(argv) or 0)
  except XploError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  except KeyboardInterrupt:
    print("interrupted", file=sys.stderr)
    return 130
