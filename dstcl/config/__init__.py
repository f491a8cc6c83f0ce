"""The configuration of a run: declared sections, flat names, presets, config files, one validation.

* :mod:`.sections` — ``RunConfig`` and its sections (each field declared once);
* :mod:`.fields` — the flat names users write (``--sparsity``, ``width: 20``) and the run's result fields;
* :mod:`.resolve` — defaults < data set < preset < file < flags, and :func:`validate`.
"""

from .fields import (FIELD_NAMES, FLAT, NEUTRAL_DEFAULTS, NON_RESULT_FIELDS, RESOLVED, SPARSITY, all_option_names, check_field,
                     result_keys, saved_settings)
from .protocol import PROTOCOL, PROTOCOLS, protocol_label, protocol_values, switches
from .resolve import PRESETS, from_flat, load_config_file, replace, resolve, validate
from .runconfig import RunConfig
from .sections import SECTIONS, DataSettings, ModelSettings, RunSettings

__all__ = [
    "FIELD_NAMES", "FLAT", "PROTOCOL", "PROTOCOLS", "protocol_label", "protocol_values", "switches", "NEUTRAL_DEFAULTS", "NON_RESULT_FIELDS", "PRESETS", "RESOLVED", "saved_settings", "SECTIONS", "SPARSITY", "DataSettings", "ModelSettings",
    "RunConfig", "RunSettings", "all_option_names", "check_field", "from_flat", "load_config_file", "replace",
    "resolve", "result_keys", "validate",
]
