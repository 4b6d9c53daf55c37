"""Type aliases with named axes, shared by every module (after diffrax's ``_custom_types.py``)."""

from typing import TypeAlias

from jaxtyping import Array, ArrayLike, Bool, Float, Int, PRNGKeyArray, Shaped, UInt32

Scalar: TypeAlias = Float[Array, ""]
ScalarLike: TypeAlias = float | Float[ArrayLike, ""]
Point: TypeAlias = Float[Array, " dim"]
Points: TypeAlias = Float[Array, "particles dim"]
Words: TypeAlias = UInt32[Array, " words"]
Steps: TypeAlias = Int[Array, " particles"]
Mask: TypeAlias = Bool[Array, " particles"]
Key: TypeAlias = PRNGKeyArray

__all__ = [
    "Array",
    "ArrayLike",
    "Bool",
    "Float",
    "Int",
    "Key",
    "Mask",
    "Point",
    "Points",
    "Scalar",
    "ScalarLike",
    "Shaped",
    "Steps",
    "UInt32",
    "Words",
]
