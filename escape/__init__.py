"""escape: how optimizers move through loss landscapes.

Public API by re-export: implementation lives in private modules; the names below are what users touch.
"""

from importlib.metadata import PackageNotFoundError, version as _version

from ._host import configure_cpu as configure_cpu
from . import curvature as curvature
from . import data as data
from . import dynamics as dynamics
from . import landscapes as landscapes
from . import models as models
from . import optim as optim
from . import simulate as simulate
from . import stability as stability
from . import stats as stats
from . import theory as theory
from . import train as train

try:
    __version__ = _version("escape")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0+unknown"
