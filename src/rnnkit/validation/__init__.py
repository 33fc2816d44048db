"""One validation layer for every option of every app (issue #21).

- :mod:`.schema`: how an option is declared (``opt(...)`` field metadata, or ``declare_options`` for a
  dataclass in a file the app does not own) and what it allows;
- :mod:`.checks`: typing and range-checking one value or a mapping (flags, ``--set``, YAML/JSON files,
  config.json read back), unknown keys with "did you mean";
- :mod:`.run_config`: a run directory's config.json read back through its app's schema;
- :mod:`.boundary`: the one place where exceptions that user input can still cause become one line
  and exit 2.
"""

from rnnkit.validation.checks import check_fields, check_mapping, check_value, unknown_option
from rnnkit.validation.schema import Opt, declare_options, opt, option_specs

__all__ = ["Opt", "check_fields", "check_mapping", "check_value", "declare_options", "opt", "option_specs",
           "unknown_option"]
