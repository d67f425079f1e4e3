"""Configuration: the typed models of ``keymoments.yaml`` and their loader."""

from .loader import CONFIG_FILE, load_config, load_config_text
from .models import (
    KEY_MOMENTS,
    RATING_SCALES,
    STAGES,
    Config,
    EventSpec,
    FieldSpec,
    IdentityConfig,
    SourceSpec,
    Taxonomy,
)

__all__ = [
    "CONFIG_FILE",
    "load_config",
    "load_config_text",
    "KEY_MOMENTS",
    "RATING_SCALES",
    "STAGES",
    "Config",
    "EventSpec",
    "FieldSpec",
    "IdentityConfig",
    "SourceSpec",
    "Taxonomy",
]
