"""RFC 6962 / RFC 9162 Merkle trees: the tree hash, inclusion and consistency proofs.

Leaves are hashed ``SHA-256(0x00 || data)``, interior nodes ``SHA-256(0x01 || left ||
right)``, and a tree of ``n`` leaves splits at the largest power of two below ``n``
(RFC 6962 section 2.1). The hash functions come from `plugins.audit.verify`, the
standalone verifier, so that one definition serves both (stdlib only).

`MerkleTree` keeps every leaf hash and every complete aligned subtree hash in memory
(about two hashes per leaf): appending costs O(1) amortised, and any root or proof at
any earlier size is built from O(log n) cached subtrees. The proof checks follow
RFC 9162 sections 2.1.3.2 and 2.1.4.2 and take nothing on trust: wrong sizes, indexes,
lengths or extra elements make them return False.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from .verify import EMPTY_ROOT, leaf_hash, node_hash, root_of

__all__ = [
    "EMPTY_ROOT",
    "leaf_hash",
    "node_hash",
    "root_of",
    "MerkleTree",
    "verify_inclusion",
    "verify_consistency",
]

_HASH_LEN = 32


def _split(n: int) -> int:
    """The largest power of two smaller than ``n`` (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


class MerkleTree:
    """An append-only RFC 6962 tree over leaf hashes, with proofs at any past size."""

    def __init__(self, leaf_hashes: Iterable[bytes] = ()) -> None:
        # _levels[h][j]: the hash of leaves [j * 2**h, (j + 1) * 2**h), once complete.
        self._levels: list[list[bytes]] = [[]]
        for leaf in leaf_hashes:
            self.append_hash(leaf)

    @property
    def size(self) -> int:
        return len(self._levels[0])

    def append(self, data: bytes) -> int:
        """Add a leaf with this data; returns its index."""
        return self.append_hash(leaf_hash(data))

    def append_hash(self, leaf: bytes) -> int:
        """Add a leaf by its hash (32 bytes); returns its index."""
        if not isinstance(leaf, bytes) or len(leaf) != _HASH_LEN:
            raise ValueError("a leaf hash is 32 bytes")
        index = self.size
        self._levels[0].append(leaf)
        level, j = 0, index
        while j & 1:  # this node completes its parent's subtree
            parent = node_hash(self._levels[level][j - 1], self._levels[level][j])
            level, j = level + 1, j >> 1
            if level == len(self._levels):
                self._levels.append([])
            self._levels[level].append(parent)
        return index

    def leaf_hash(self, index: int) -> bytes:
        return self._levels[0][self._index(index, self.size)]

    def root(self, size: int | None = None) -> bytes:
        """MTH of the first ``size`` leaves (all of them by default)."""
        return self._subtree(0, self._size(size))

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """RFC 6962 PATH(index, D[size]): the audit path of one leaf in the tree of
        ``size`` leaves."""
        size = self._size(size)
        return self._path(self._index(index, size), 0, size)

    def consistency_proof(self, old_size: int, new_size: int | None = None) -> list[bytes]:
        """RFC 6962 PROOF(old_size, D[new_size]); empty when ``old_size`` is 0 or equal."""
        new_size = self._size(new_size)
        if type(old_size) is not int or not 0 <= old_size <= new_size:
            raise ValueError(f"old size {old_size!r} is not between 0 and {new_size}")
        if old_size in (0, new_size):
            return []
        return self._subproof(old_size, 0, new_size, True)

    def _size(self, size: int | None) -> int:
        if size is None:
            return self.size
        if type(size) is not int or not 0 <= size <= self.size:
            raise ValueError(f"size {size!r} is not between 0 and the tree's {self.size}")
        return size

    @staticmethod
    def _index(index: int, size: int) -> int:
        if type(index) is not int or not 0 <= index < size:
            raise IndexError(f"leaf index {index!r} is not below the size {size}")
        return index

    def _subtree(self, start: int, end: int) -> bytes:
        n = end - start
        if n == 0:
            return EMPTY_ROOT
        if n & (n - 1) == 0 and start % n == 0:  # complete and aligned: cached
            return self._levels[n.bit_length() - 1][start // n]
        k = _split(n)
        return node_hash(self._subtree(start, start + k), self._subtree(start + k, end))

    def _path(self, m: int, start: int, end: int) -> list[bytes]:
        n = end - start
        if n == 1:
            return []
        k = _split(n)
        if m < k:
            return self._path(m, start, start + k) + [self._subtree(start + k, end)]
        return self._path(m - k, start + k, end) + [self._subtree(start, start + k)]

    def _subproof(self, m: int, start: int, end: int, whole: bool) -> list[bytes]:
        n = end - start
        if m == n:
            return [] if whole else [self._subtree(start, end)]
        k = _split(n)
        if m <= k:
            return self._subproof(m, start, start + k, whole) + [self._subtree(start + k, end)]
        return self._subproof(m - k, start + k, end, False) + [self._subtree(start, start + k)]


def _hashes(*values: object) -> bool:
    return all(isinstance(v, bytes) and len(v) == _HASH_LEN for v in values)


def _sizes(*values: object) -> bool:
    return all(type(v) is int and v >= 0 for v in values)


def verify_inclusion(leaf: bytes, index: int, size: int, proof: Sequence[bytes],
                     root: bytes) -> bool:
    """Whether ``proof`` shows the leaf hash ``leaf`` at ``index`` in the tree of ``size``
    leaves whose root is ``root`` (RFC 9162 section 2.1.3.2)."""
    if not (_sizes(index, size) and index < size and _hashes(leaf, root, *proof)):
        return False
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and r == root


def verify_consistency(old_size: int, new_size: int, old_root: bytes, new_root: bytes,
                       proof: Sequence[bytes]) -> bool:
    """Whether ``proof`` shows the tree of ``old_size`` leaves with root ``old_root`` is a
    prefix of the tree of ``new_size`` leaves with root ``new_root`` (RFC 9162 section
    2.1.4.2). Equal sizes need equal roots and an empty proof; an empty old tree is a
    prefix of every tree (its proof is empty)."""
    if not (_sizes(old_size, new_size) and old_size <= new_size and _hashes(old_root, new_root, *proof)):
        return False
    if old_size == new_size:
        return not proof and old_root == new_root
    if old_size == 0:
        return not proof
    if not proof:
        return False
    path = list(proof)
    if old_size & (old_size - 1) == 0:  # the old tree is a complete subtree: its root starts the path
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    return fr == old_root and sr == new_root and sn == 0
