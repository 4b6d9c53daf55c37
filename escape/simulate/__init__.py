"""Monte-Carlo simulation of optimizer particles."""

from ._engine import EscapeResult as EscapeResult, escape_times as escape_times, passage_masks as passage_masks
