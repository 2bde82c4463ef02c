"""plugins.audit.merkle: RFC 6962 tree hashes and RFC 9162 proofs.

The reference values are the certificate-transparency test vectors (as in
transparency-dev/merkle ``proof/verify_test.go`` and ``rfc6962/rfc6962_test.go``): the
eight leaves below, the roots of their first 1..8 leaves, and their inclusion and
consistency proofs.
"""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from plugins.audit.merkle import (
    EMPTY_ROOT,
    MerkleTree,
    leaf_hash,
    node_hash,
    root_of,
    verify_consistency,
    verify_inclusion,
)

h = bytes.fromhex

LEAVES = [h(x) for x in ("", "00", "10", "2021", "3031", "40414243", "5051525354555657",
                         "606162636465666768696a6b6c6d6e6f")]
ROOTS = [h(x) for x in (
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
)]  # ROOTS[n]: the root of the first n leaves

# (leaf index from 0, tree size, proof)
INCLUSION = [
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
    (0, 1, []),
]

# (old size, new size, proof)
CONSISTENCY = [
    (1, 1, []),
    (1, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
    (6, 8, ["0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
    (2, 5, ["5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]),
    (6, 7, ["0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
]

SOME_HASH = h("abacaba000000000000000000000000000000000000000000060061e00123456")


@pytest.fixture(scope="module")
def tree() -> MerkleTree:
    t = MerkleTree()
    for data in LEAVES:
        t.append(data)
    return t


def test_hash_functions_match_the_reference():
    assert EMPTY_ROOT == ROOTS[0] == hashlib.sha256(b"").digest()
    assert leaf_hash(b"") == ROOTS[1]  # a one-leaf tree's root is its leaf hash
    assert leaf_hash(b"L123456") == h("395aa064aa4c29f7010acfe3f25db9485bbd4b91897b6ad7ad547639252b4d56")
    assert node_hash(b"N123", b"N456") == h("aa217fe888e47007fa15edab33c2b492a722cb106c64667fc2b044444de66bbb")
    # the empty tree is not the tree with one empty leaf
    assert leaf_hash(b"") != EMPTY_ROOT


def test_roots_of_every_prefix_match_the_reference(tree):
    assert [tree.root(n) for n in range(9)] == ROOTS
    assert [root_of([leaf_hash(d) for d in LEAVES[:n]]) for n in range(9)] == ROOTS
    assert tree.root() == ROOTS[8] and tree.size == 8
    assert MerkleTree().root() == EMPTY_ROOT


@pytest.mark.parametrize("index, size, proof", INCLUSION)
def test_inclusion_proofs_match_the_reference(tree, index, size, proof):
    proof = [h(p) for p in proof]
    assert tree.inclusion_proof(index, size) == proof
    leaf = leaf_hash(LEAVES[index])
    root = ROOTS[size]
    assert verify_inclusion(leaf, index, size, proof, root)
    # the probes of transparency-dev's corruptInclusionProof: each must fail
    probes = [
        (leaf, index - 1, size, proof, root), (leaf, index + 1, size, proof, root),
        (leaf, index ^ 2, size, proof, root), (leaf, index, size * 2, proof, root),
        (leaf, index, size // 2, proof, root), (leaf_hash(b"WrongLeaf"), index, size, proof, root),
        (leaf, index, size, proof, EMPTY_ROOT), (leaf, index, size, proof, SOME_HASH),
        (leaf, index, size, proof + [b""], root), (leaf, index, size, proof + [root], root),
        (leaf, index, size, [b""] + proof, root), (leaf, index, size, [root] + proof, root),
    ]
    for i in range(len(proof)):
        bad = list(proof)
        bad[i] = bytes([bad[i][0] ^ 8]) + bad[i][1:]
        probes.append((leaf, index, size, bad, root))
    if proof:
        probes.append((leaf, index, size, proof[:-1], root))
    if len(proof) > 1:
        probes.append((leaf, index, size, [proof[0], SOME_HASH] + proof[1:], root))
    for probe in probes:
        assert not verify_inclusion(*probe), probe


@pytest.mark.parametrize("old, new, proof", CONSISTENCY)
def test_consistency_proofs_match_the_reference(tree, old, new, proof):
    proof = [h(p) for p in proof]
    assert tree.consistency_proof(old, new) == proof
    r1, r2 = ROOTS[old], ROOTS[new]
    assert verify_consistency(old, new, r1, r2, proof)
    if not proof:
        assert not verify_consistency(old, new, r1, SOME_HASH, proof)
        return
    probes = [
        (old - 1, new, r1, r2, proof), (old + 1, new, r1, r2, proof), (old ^ 2, new, r1, r2, proof),
        (old, new * 2, r1, r2, proof), (old, new // 2, r1, r2, proof),
        (old, new, SOME_HASH, r2, proof), (old, new, r1, SOME_HASH, proof), (old, new, r2, r1, proof),
        (old, new, r1, r2, []), (old, new, r1, r2, proof + [b""]), (old, new, r1, r2, proof + [r1]),
        (old, new, r1, r2, proof + [r2]), (old, new, r1, r2, [b""] + proof),
        (old, new, r1, r2, [r1] + proof), (old, new, r1, r2, [r2] + proof),
        (old, new, r1, r2, [proof[0]] + proof), (old, new, r1, r2, proof[:-1]),
    ]
    for i in range(len(proof)):
        bad = list(proof)
        bad[i] = bytes([bad[i][0] ^ 16]) + bad[i][1:]
        probes.append((old, new, r1, r2, bad))
    for probe in probes:
        assert not verify_consistency(*probe), probe


def test_edge_cases_of_the_checks():
    leaf = leaf_hash(b"data")
    assert verify_inclusion(leaf, 0, 1, [], leaf)
    for index, size in ((0, 0), (1, 0), (2, 1), (-1, 1)):
        assert not verify_inclusion(SOME_HASH, index, size, [], EMPTY_ROOT)
    assert not verify_inclusion(b"", 0, 1, [], b"")  # wrong hash lengths
    assert verify_consistency(0, 0, EMPTY_ROOT, EMPTY_ROOT, [])
    assert verify_consistency(0, 5, EMPTY_ROOT, SOME_HASH, [])
    assert not verify_consistency(0, 1, EMPTY_ROOT, SOME_HASH, [EMPTY_ROOT])
    assert not verify_consistency(1, 0, SOME_HASH, EMPTY_ROOT, [])  # time travel
    assert not verify_consistency(1, 1, SOME_HASH, EMPTY_ROOT, [])
    assert not verify_consistency(1, 1, SOME_HASH, SOME_HASH, [EMPTY_ROOT])


def test_bad_arguments_are_refused(tree):
    with pytest.raises(IndexError):
        tree.inclusion_proof(8)
    with pytest.raises(ValueError):
        tree.root(9)
    with pytest.raises(ValueError):
        tree.consistency_proof(5, 3)
    with pytest.raises(ValueError):
        MerkleTree().append_hash(b"short")
    assert tree.consistency_proof(0, 8) == [] and tree.consistency_proof(8) == []


def _tree_of(n: int) -> MerkleTree:
    return MerkleTree(leaf_hash(i.to_bytes(4, "big")) for i in range(n))


def _flip(value: bytes, at: int) -> bytes:
    return value[:at] + bytes([value[at] ^ 0x01]) + value[at + 1:]


@settings(max_examples=150, deadline=None)
@given(st.data(), st.integers(min_value=1, max_value=140))
def test_every_inclusion_proof_verifies_and_any_change_fails(data, size):
    tree = _tree_of(size + data.draw(st.integers(0, 20)))  # proofs at a past size too
    index = data.draw(st.integers(0, size - 1))
    proof, root, leaf = tree.inclusion_proof(index, size), tree.root(size), tree.leaf_hash(index)
    assert root == root_of(tree.leaf_hash(i) for i in range(size))
    assert verify_inclusion(leaf, index, size, proof, root)
    byte = data.draw(st.integers(0, 31))
    for i in range(len(proof)):
        assert not verify_inclusion(leaf, index, size, proof[:i] + [_flip(proof[i], byte)] + proof[i + 1:], root)
    assert not verify_inclusion(_flip(leaf, byte), index, size, proof, root)
    assert not verify_inclusion(leaf, index, size, proof, _flip(root, byte))
    assert not verify_inclusion(leaf, index, size * 2, proof, root)
    if index < size // 2:
        assert not verify_inclusion(leaf, index, size // 2, proof, root)
    if size > 1:
        assert not verify_inclusion(leaf, (index + 1) % size, size, proof, root)


@settings(max_examples=150, deadline=None)
@given(st.data(), st.integers(min_value=1, max_value=140))
def test_every_consistency_proof_verifies_and_any_change_fails(data, new):
    tree = _tree_of(new)
    old = data.draw(st.integers(1, new))
    proof = tree.consistency_proof(old, new)
    r1, r2 = tree.root(old), tree.root(new)
    assert verify_consistency(old, new, r1, r2, proof)
    byte = data.draw(st.integers(0, 31))
    for i in range(len(proof)):
        assert not verify_consistency(old, new, r1, r2, proof[:i] + [_flip(proof[i], byte)] + proof[i + 1:])
    assert not verify_consistency(old, new, _flip(r1, byte), r2, proof)
    assert not verify_consistency(old, new, r1, _flip(r2, byte), proof)
    # The hashes of a proof do not bind every size: (1, 3) and (1, 4) walk the same path,
    # so only size changes that change the path are probed (in the log, sizes are signed).
    if old < new:
        assert not verify_consistency(old, new * 2, r1, r2, proof)
        assert not verify_consistency(old + 1, new, r1, r2, proof)
        if old > 1:
            assert not verify_consistency(old - 1, new, r1, r2, proof)


def test_incremental_roots_agree_with_the_definition():
    tree = MerkleTree()
    hashes = []
    for i in range(70):
        hashes.append(leaf_hash(bytes([i])))
        assert tree.append(bytes([i])) == i
        assert tree.root() == root_of(hashes)
