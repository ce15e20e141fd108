"""RFC 6962 Merkle hashing and proofs against independent references.

References: the certificate-transparency test vectors (8 leaves, roots per size), a naive
recursive implementation of RFC 6962 §2.1 written here, and tlog-scales' RFC 9162 proof
checkers (a second, independent implementation).
"""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tlog_scales.tlog import (
    ConsistencyProof,
    ConsistencyProofInvalid,
    InclusionProof,
    InclusionProofInvalid,
)

from bot.errors import EvidenceError
from bot.evidence import merkle
from bot.evidence.audit import CompactRange

LEAVES = [
    bytes.fromhex(h)
    for h in [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ]
]
# certificate-transparency merkle_tree_test.cc: roots of the first 1..8 leaves
ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]


def sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def mth(leaves: list[bytes]) -> bytes:
    """RFC 6962 §2.1 MTH, written from the RFC text (independent of bot.evidence.merkle)."""
    n = len(leaves)
    if n == 0:
        return sha(b"")
    if n == 1:
        return sha(b"\x00" + leaves[0])
    k = 1
    while k * 2 < n:
        k *= 2
    return sha(b"\x01" + mth(leaves[:k]) + mth(leaves[k:]))


def naive_path(m: int, leaves: list[bytes]) -> list[bytes]:
    """RFC 6962 §2.1.1 PATH(m, D[n])."""
    n = len(leaves)
    if n == 1:
        return []
    k = 1
    while k * 2 < n:
        k *= 2
    if m < k:
        return [*naive_path(m, leaves[:k]), mth(leaves[k:])]
    return [*naive_path(m - k, leaves[k:]), mth(leaves[:k])]


def naive_subproof(m: int, leaves: list[bytes], whole: bool) -> list[bytes]:
    """RFC 6962 §2.1.2 SUBPROOF(m, D[n], b)."""
    n = len(leaves)
    if m == n:
        return [] if whole else [mth(leaves)]
    k = 1
    while k * 2 < n:
        k *= 2
    if m <= k:
        return [*naive_subproof(m, leaves[:k], whole), mth(leaves[k:])]
    return [*naive_subproof(m - k, leaves[k:], False), mth(leaves[:k])]


class Tree:
    """A NodeGetter over in-memory leaves, as a store would keep the perfect subtrees."""

    def __init__(self, leaves: list[bytes]) -> None:
        self.leaves = leaves
        self.nodes: dict[tuple[int, int], bytes] = {}
        for i, leaf in enumerate(leaves):
            for level, idx, h in merkle.completed_nodes(i, merkle.leaf_hash(leaf), self.get):
                self.nodes[(level, idx)] = h

    def get(self, level: int, index: int) -> bytes:
        return self.nodes[(level, index)]


def test_known_roots_for_every_size() -> None:
    tree = Tree(LEAVES)
    for size in range(1, 9):
        assert merkle.root(size, tree.get).hex() == ROOTS[size - 1]
        assert mth(LEAVES[:size]).hex() == ROOTS[size - 1]
    assert merkle.root(0, tree.get) == sha(b"") == merkle.EMPTY_ROOT


def test_compact_range_gives_the_same_roots() -> None:
    compact = CompactRange()
    assert compact.root() == merkle.EMPTY_ROOT
    for size, leaf in enumerate(LEAVES, start=1):
        compact.append(merkle.leaf_hash(leaf))
        assert compact.root().hex() == ROOTS[size - 1]


# certificate-transparency merkle_tree_test.cc: inclusion paths and consistency proofs
KNOWN_INCLUSION = [
    (0, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
    (5, 8, ["bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
    (2, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (1, 5, ["6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]),
]  # fmt: skip
KNOWN_CONSISTENCY = [
    (1, 1, []),
    (1, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
    (6, 8, ["0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
    (2, 5, ["5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]),
]  # fmt: skip


@pytest.mark.parametrize(("index", "size", "path"), KNOWN_INCLUSION)
def test_known_inclusion_paths(index: int, size: int, path: list[str]) -> None:
    tree = Tree(LEAVES)
    proof = merkle.inclusion_proof(index, size, tree.get)
    assert [p.hex() for p in proof] == path
    assert proof == naive_path(index, LEAVES[:size])
    leaf = merkle.leaf_hash(LEAVES[index])
    root = bytes.fromhex(ROOTS[size - 1])
    merkle.verify_inclusion(leaf, index, size, proof, root)
    InclusionProof(index, size, proof).check(leaf, root)


@pytest.mark.parametrize(("old", "new", "path"), KNOWN_CONSISTENCY)
def test_known_consistency_proofs(old: int, new: int, path: list[str]) -> None:
    tree = Tree(LEAVES)
    proof = merkle.consistency_proof(old, new, tree.get)
    assert [p.hex() for p in proof] == path
    old_root, new_root = bytes.fromhex(ROOTS[old - 1]), bytes.fromhex(ROOTS[new - 1])
    merkle.verify_consistency(old, new, old_root, new_root, proof)
    ConsistencyProof(old, new, proof).check(old_root, new_root)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.binary(max_size=8), min_size=1, max_size=70), st.data())
def test_proofs_agree_with_naive_rfc_and_tlog_scales(
    leaves: list[bytes], data: st.DataObject
) -> None:
    tree = Tree(leaves)
    n = len(leaves)
    size = data.draw(st.integers(1, n), label="size")
    index = data.draw(st.integers(0, size - 1), label="index")
    old = data.draw(st.integers(1, size), label="old")
    root = merkle.root(size, tree.get)
    assert root == mth(leaves[:size])

    proof = merkle.inclusion_proof(index, size, tree.get)
    assert proof == naive_path(index, leaves[:size])
    leaf = merkle.leaf_hash(leaves[index])
    merkle.verify_inclusion(leaf, index, size, proof, root)
    InclusionProof(index, size, proof).check(leaf, root)

    cons = merkle.consistency_proof(old, size, tree.get)
    assert cons == (naive_subproof(old, leaves[:size], True) if old < size else [])
    old_root = merkle.root(old, tree.get)
    merkle.verify_consistency(old, size, old_root, root, cons)
    ConsistencyProof(old, size, cons).check(old_root, root)

    if proof:  # a flipped bit must fail both verifiers
        bad = [bytes([proof[0][0] ^ 1]) + proof[0][1:], *proof[1:]]
        with pytest.raises(EvidenceError):
            merkle.verify_inclusion(leaf, index, size, bad, root)
        with pytest.raises(InclusionProofInvalid):
            InclusionProof(index, size, bad).check(leaf, root)
    if cons:
        bad = [*cons[:-1], bytes([cons[-1][0] ^ 1]) + cons[-1][1:]]
        with pytest.raises(EvidenceError):
            merkle.verify_consistency(old, size, old_root, root, bad)
        with pytest.raises(ConsistencyProofInvalid):
            ConsistencyProof(old, size, bad).check(old_root, root)


def test_inclusion_refusals() -> None:
    tree = Tree(LEAVES)
    root = merkle.root(8, tree.get)
    proof = merkle.inclusion_proof(3, 8, tree.get)
    leaf = merkle.leaf_hash(LEAVES[3])
    with pytest.raises(EvidenceError, match="outside"):
        merkle.verify_inclusion(leaf, 8, 8, proof, root)
    with pytest.raises(EvidenceError, match="too short"):
        merkle.verify_inclusion(leaf, 3, 8, proof[:-1], root)
    with pytest.raises(EvidenceError, match="too long"):
        merkle.verify_inclusion(leaf, 3, 8, [*proof, root], root)
    with pytest.raises(EvidenceError, match="does not match"):
        merkle.verify_inclusion(merkle.leaf_hash(b"x"), 3, 8, proof, root)
    with pytest.raises(EvidenceError, match="outside"):
        merkle.inclusion_proof(8, 8, tree.get)


def test_consistency_refusals() -> None:
    tree = Tree(LEAVES)
    r3, r8 = merkle.root(3, tree.get), merkle.root(8, tree.get)
    proof = merkle.consistency_proof(3, 8, tree.get)
    with pytest.raises(EvidenceError, match="backwards"):
        merkle.verify_consistency(8, 3, r8, r3, proof)
    with pytest.raises(EvidenceError, match="different roots"):
        merkle.verify_consistency(8, 8, r3, r8, [])
    with pytest.raises(EvidenceError, match="empty"):
        merkle.verify_consistency(3, 8, r3, r8, [])
    with pytest.raises(EvidenceError, match="size 3"):
        merkle.verify_consistency(3, 8, r8, r8, proof)
    with pytest.raises(EvidenceError, match="size 8"):
        merkle.verify_consistency(3, 8, r3, r3, proof)
    with pytest.raises(EvidenceError):
        merkle.consistency_proof(9, 8, tree.get)
    merkle.verify_consistency(0, 8, merkle.EMPTY_ROOT, r8, [])
