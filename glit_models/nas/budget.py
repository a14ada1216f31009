"""Budgets of the search and their command-line form: FLOPs (the authors' convention or all
multiply-adds), parameters, or latency (ms) measured on the running device."""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

from ..utils.errors import GlitError

__all__ = ['BUDGET_KINDS', 'Budget', 'BudgetError', 'format_amount', 'format_count', 'parse_amount', 'parse_latency']

BUDGET_KINDS = ('flops', 'macs', 'params', 'latency')
"""flops: the authors' FLOPs formula (the paper's budgets); macs: all multiply-adds; params; latency (ms)."""
_UNITS = {'': 1, 'k': 1e3, 'm': 1e6, 'g': 1e9, 't': 1e12}
_TIME_UNITS = {'': 1, 'ms': 1, 's': 1e3, 'us': 1e-3}


class BudgetError(GlitError, ValueError):
    """A budget that cannot be parsed, or that no candidate of the space meets."""


def parse_amount(text: str, flag: str = '--budget-flops') -> float:
    """'1.4G', '1400M', '7.2M', '500k', '1.4e9' -> a count."""
    found = re.fullmatch(r'\s*((?:\d+\.?\d*|\.\d+)(?:e[+-]?\d+)?)\s*([kmgt]?)\s*', str(text), re.IGNORECASE)
    if not found or float(found[1]) <= 0:
        raise BudgetError(f'{flag} {text!r}: expected a positive number with an optional K, M, G or T suffix, '
                          'e.g. 1.4G or 1400M')
    return float(found[1]) * _UNITS[found[2].lower()]


def parse_latency(text: str, flag: str = '--budget-latency') -> float:
    """'12ms', '12' (ms), '0.012s', '800us' -> milliseconds."""
    found = re.fullmatch(r'\s*((?:\d+\.?\d*|\.\d+)(?:e[+-]?\d+)?)\s*(ms|s|us)?\s*', str(text), re.IGNORECASE)
    if not found or float(found[1]) <= 0:
        raise BudgetError(f'{flag} {text!r}: expected a positive time such as 12ms, 0.012s or 800us')
    return float(found[1]) * _TIME_UNITS[(found[2] or '').lower()]


def format_count(count: float) -> str:
    """6560 -> '6,560'; past a million, three digits ('1.68e+06'), which a reader compares at a glance."""
    return f'{int(count):,}' if count < 1e6 else f'{count:.3g}'


def format_amount(value: float, kind: str = 'flops') -> str:
    """1.3325e9 -> '1.33G FLOPs'; latency in ms."""
    if kind == 'latency':
        return f'{value:.3g} ms'
    unit = {'flops': ' FLOPs', 'macs': ' MACs', 'params': ' params'}[kind]
    for suffix, scale in (('G', 1e9), ('M', 1e6), ('K', 1e3)):
        if abs(value) >= scale:
            return f'{value / scale:.3g}{suffix}{unit}'
    return f'{value:.3g}{unit}'


@dataclass(frozen=True)
class Budget:
    """The largest cost a candidate may have, of one kind (BUDGET_KINDS)."""

    kind: str
    limit: float

    def __post_init__(self) -> None:
        if self.kind not in BUDGET_KINDS:
            raise BudgetError(f'unknown budget kind {self.kind!r}; choose one of {", ".join(BUDGET_KINDS)}')
        if isinstance(self.limit, bool) or not isinstance(self.limit, (int, float)) or not math.isfinite(self.limit) \
                or self.limit <= 0:
            raise BudgetError(f'budget {self.limit!r}: must be a positive number')

    def __str__(self) -> str:
        return format_amount(self.limit, self.kind)
