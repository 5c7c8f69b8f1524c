"""Deterministic, sticky assignment of guests to variants.

Two independent hashes of (experience seed, guest ref), each mapped to [0, 1):

- the *allocation* hash decides whether the guest takes part: in if it is below the traffic
  allocation. Raising the allocation only adds guests; nobody already in moves out.
- the *variant* hash picks a variant by cumulative weight.

SHA-256 makes the answer the same in every process and on every machine; Python's ``hash()``
would not be.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

BUCKETS = 2**64


def unit_hash(seed: str, ref: str, purpose: str) -> float:
    digest = hashlib.sha256(f"{purpose}:{seed}:{ref}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / BUCKETS


def takes_part(seed: str, guest_ref: str, allocation_percent: int) -> bool:
    return unit_hash(seed, guest_ref, "allocation") < allocation_percent / 100


def variant_pick(seed: str, guest_ref: str, weights: Sequence[int]) -> int:
    """The index of the variant the guest gets, by weight."""
    total = sum(weights)
    if total <= 0:
        raise ValueError("variant weights must add up to more than 0")
    point = unit_hash(seed, guest_ref, "variant") * total
    running = 0
    for index, weight in enumerate(weights):
        running += weight
        if point < running:
            return index
    return len(weights) - 1
