"""RFC 6962 / RFC 9162 Merkle tree hashing, proofs and proof verification.

Trees are read through a ``NodeGetter``: ``get(level, index)`` returns the hash of the
*perfect* subtree of ``2**level`` leaves that starts at leaf ``index * 2**level`` (level 0
is the leaf hash). Stores keep exactly those nodes, so roots and proofs cost O(log n)
lookups whatever the size of the log.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

from bot.errors import EvidenceError

NodeGetter = Callable[[int, int], bytes]

_LEAF = b"\x00"
_NODE = b"\x01"
EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(data: bytes) -> bytes:
    """RFC 6962 §2.1: MTH({d}) = SHA-256(0x00 || d)."""
    return hashlib.sha256(_LEAF + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """RFC 6962 §2.1: SHA-256(0x01 || left || right)."""
    return hashlib.sha256(_NODE + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two strictly smaller than ``n`` (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


def _is_pow2(n: int) -> bool:
    return n & (n - 1) == 0


def subtree_hash(start: int, n: int, get: NodeGetter) -> bytes:
    """MTH(D[start:start+n]) where ``start`` is a multiple of the largest power of two ≤ n."""
    if n == 0:
        return EMPTY_ROOT
    if _is_pow2(n):
        level = n.bit_length() - 1
        return get(level, start >> level)
    k = _split(n)
    return node_hash(subtree_hash(start, k, get), subtree_hash(start + k, n - k, get))


def root(size: int, get: NodeGetter) -> bytes:
    """Root hash of the first ``size`` leaves."""
    return subtree_hash(0, size, get)


def completed_nodes(index: int, leaf: bytes, get: NodeGetter) -> list[tuple[int, int, bytes]]:
    """Nodes that become perfect when leaf ``index`` is appended: [(level, idx, hash)],
    starting with the leaf itself. ``get`` must already know every earlier node."""
    out = [(0, index, leaf)]
    level, idx, h = 0, index, leaf
    while idx & 1:
        h = node_hash(get(level, idx - 1), h)
        level, idx = level + 1, idx >> 1
        out.append((level, idx, h))
    return out


def inclusion_proof(index: int, size: int, get: NodeGetter) -> list[bytes]:
    """RFC 6962 §2.1.1 audit path for leaf ``index`` in a tree of ``size`` leaves."""
    if not 0 <= index < size:
        raise EvidenceError(f"leaf index {index} is outside a tree of size {size}")
    proof: list[bytes] = []

    def path(m: int, start: int, n: int) -> None:
        if n == 1:
            return
        k = _split(n)
        if m < k:
            path(m, start, k)
            proof.append(subtree_hash(start + k, n - k, get))
        else:
            path(m - k, start + k, n - k)
            proof.append(subtree_hash(start, k, get))

    path(index, 0, size)
    return proof


def consistency_proof(old_size: int, new_size: int, get: NodeGetter) -> list[bytes]:
    """RFC 6962 §2.1.2 consistency proof between tree sizes ``old_size`` ≤ ``new_size``."""
    if not 0 <= old_size <= new_size:
        raise EvidenceError(f"cannot prove consistency from size {old_size} to {new_size}")
    if old_size in (0, new_size):
        return []
    proof: list[bytes] = []

    def sub(m: int, start: int, n: int, whole: bool) -> None:
        if m == n:
            if not whole:
                proof.append(subtree_hash(start, n, get))
            return
        k = _split(n)
        if m <= k:
            sub(m, start, k, whole)
            proof.append(subtree_hash(start + k, n - k, get))
        else:
            sub(m - k, start + k, n - k, False)
            proof.append(subtree_hash(start, k, get))

    sub(old_size, 0, new_size, True)
    return proof


def verify_inclusion(
    leaf: bytes, index: int, size: int, proof: Sequence[bytes], expected_root: bytes
) -> None:
    """RFC 9162 §2.1.3.2. Raises ``EvidenceError`` when the proof does not verify."""
    if not 0 <= index < size:
        raise EvidenceError(f"leaf index {index} is outside a tree of size {size}")
    fn, sn = index, size - 1
    r = leaf
    for p in proof:
        if sn == 0:
            raise EvidenceError("inclusion proof is too long")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise EvidenceError("inclusion proof is too short")
    if r != expected_root:
        raise EvidenceError(f"inclusion proof for leaf {index} does not match the root")


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> None:
    """RFC 9162 §2.1.4.2. Raises ``EvidenceError`` when the proof does not verify."""
    if not 0 <= old_size <= new_size:
        raise EvidenceError(f"tree size went backwards: {old_size} -> {new_size}")
    if old_size == new_size:
        if proof or old_root != new_root:
            raise EvidenceError("equal tree sizes with different roots")
        return
    if old_size == 0:
        if proof:
            raise EvidenceError("consistency proof from an empty tree must be empty")
        return
    if not proof:
        raise EvidenceError("consistency proof is empty")
    path = list(proof)
    if _is_pow2(old_size):
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise EvidenceError("consistency proof is too long")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise EvidenceError("consistency proof is too short")
    if fr != old_root:
        raise EvidenceError(f"consistency proof does not reproduce the root of size {old_size}")
    if sr != new_root:
        raise EvidenceError(f"consistency proof does not reproduce the root of size {new_size}")
