"""Names used by experiment configs and the CLI (``landscape = "styblinski-tang"``)."""

import inspect

from ._double_well import DoubleWell
from ._quadratic import Quadratic
from ._styblinski_tang import StyblinskiTang

LANDSCAPES = {"styblinski-tang": StyblinskiTang, "quadratic": Quadratic, "double-well": DoubleWell}


def make_landscape(name: str, **params):
    """Build a landscape by registry name, with a one-line ValueError for unknown names or arguments."""
    if name not in LANDSCAPES:
        raise ValueError(f"landscape: unknown landscape {name!r}; choose one of {', '.join(LANDSCAPES)}")
    cls = LANDSCAPES[name]
    accepted = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    for p in params:
        if p not in accepted:
            raise ValueError(f"landscape: {name} takes no parameter {p!r}; accepted: {', '.join(accepted)}")
    return cls(**params)
