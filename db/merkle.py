"""The Merkle Tree Hash of RFC 6962, section 2.1, over which an audit
checkpoint commits to the loan heads it covers (db/audit_checkpoint.py).

    MTH({})      = SHA-256()
    MTH({d0})    = SHA-256(0x00 || d0)
    MTH(D[n])    = SHA-256(0x01 || MTH(D[0:k]) || MTH(D[k:n]))

where k is the largest power of two smaller than n. The 0x00 / 0x01 prefixes
keep a leaf from ever passing for an inner node (the second-preimage attack
the RFC guards against), and the fixed split lets anyone recompute the root
from the same leaves in the same order, with any RFC 6962 implementation.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

LEAF = b"\x00"
NODE = b"\x01"


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(LEAF + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(NODE + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two smaller than n (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


def root(leaves: Sequence[bytes]) -> bytes:
    """MTH of `leaves` (their data, not yet hashed), in the order given."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    # Bottom up with the RFC's split: the hashes of a level are paired left to
    # right and an odd last one is carried up as it is, which builds exactly
    # the tree the recursive definition does, without recursion on big inputs.
    level = [leaf_hash(leaf) for leaf in leaves]
    while len(level) > 1:
        paired = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            paired.append(level[-1])
        level = paired
    return level[0]
