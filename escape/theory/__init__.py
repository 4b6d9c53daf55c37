"""Closed-form and quadrature results used as oracles (THEORY 5-6)."""

from ._kramers import eyring_kramers_time as eyring_kramers_time, mean_first_passage_1d as mean_first_passage_1d
