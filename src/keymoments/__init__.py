"""keymoments: customer journeys and the key moments that define them.

>>> import keymoments as km
>>> issubclass(km.ConfigError, km.KeymomentsError)
True
"""

from .config import Config, load_config
from .errors import (
    ConfigError,
    KeymomentsError,
    MissingExtraError,
    NotFoundError,
    OutputError,
    SourceError,
    WorkspaceError,
)
from .results import Result
from .sources.ingest import LoadReport
from .store.workspace import Workspace, init
# the API functions shadow their subpackages' names on purpose: km.journeys(ws)
from .journey.query import journeys, moment_summary, moments  # noqa: E402
from .store.workspace import open_workspace as open  # noqa: A001 (km.open is the API)
from .paths import (  # noqa: E402
    JourneyFilter,
    channel_switching,
    conformance,
    consistency,
    export_log,
    process_map,
    variants,
)
from .insights import (  # noqa: E402
    churn, drivers, funnel, metrics, predicted_experience, probability_alive, recurrence, root_causes,
)

__version__ = "0.1.0"

__all__ = [
    "Config",
    "ConfigError",
    "KeymomentsError",
    "LoadReport",
    "MissingExtraError",
    "NotFoundError",
    "OutputError",
    "Result",
    "SourceError",
    "Workspace",
    "WorkspaceError",
    "init",
    "journeys",
    "moment_summary",
    "moments",
    "load_config",
    "open",
    "__version__",
    "JourneyFilter",
    "channel_switching",
    "conformance",
    "consistency",
    "export_log",
    "process_map",
    "variants",
    "churn",
    "drivers",
    "funnel",
    "metrics",
    "predicted_experience",
    "probability_alive",
    "recurrence",
    "root_causes",
]
