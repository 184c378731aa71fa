"""Hostile variants of valid inputs, for the fuzz tests: bytes changed at random, and DER
changed inside its structure with every length kept right, so a mutation gets past the
outer parser and reaches the code that reads the fields.

``mutated(base)`` and ``der_mutated(der)`` are Hypothesis strategies; the plain functions
under them apply one list of edits, so a failing example shrinks to a few edits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from hypothesis import strategies as st

#: Byte values that sit on edges: zero, the top bit, all ones, small lengths.
_EDGES: Final = (0x00, 0x01, 0x02, 0x7F, 0x80, 0x81, 0x82, 0xFE, 0xFF)

#: One edit of a byte string: (kind, position, length or value, bytes to insert).
Edit = tuple[str, int, int, bytes]

_byte = st.sampled_from(_EDGES) | st.integers(0, 255)
edits: st.SearchStrategy[Edit] = st.tuples(
    st.sampled_from(["set", "flip", "delete", "insert", "repeat", "truncate"]),
    st.integers(0, 1 << 20),
    st.integers(0, 255) | _byte,
    st.binary(max_size=16),
)


def apply_edits(data: bytes, changes: list[Edit]) -> bytes:
    """`data` with each edit applied in turn; positions wrap around the current length."""
    out = bytearray(data)
    for kind, position, number, insert in changes:
        at = position % (len(out) + 1)
        if kind == "set" and out:
            out[at % len(out)] = number
        elif kind == "flip" and out:
            out[at % len(out)] ^= 1 << (number % 8)
        elif kind == "delete":
            del out[at : at + 1 + number % 16]
        elif kind == "insert":
            out[at:at] = insert or bytes([number])
        elif kind == "repeat":
            out[at:at] = out[at : at + 1 + number]
        elif kind == "truncate":
            del out[at:]
    return bytes(out)


def mutated(base: bytes, max_edits: int = 4) -> st.SearchStrategy[bytes]:
    """`base` with up to `max_edits` byte edits (none at all is one of the examples)."""
    return st.lists(edits, max_size=max_edits).map(lambda changes: apply_edits(base, changes))


# --- DER ---------------------------------------------------------------------------------


@dataclass(eq=False)
class Node:
    """One TLV of a DER structure: constructed nodes hold children, primitive ones bytes."""

    tag: int
    content: bytes = b""
    children: list[Node] | None = None

    def encode(self) -> bytes:
        body = (
            b"".join(c.encode() for c in self.children)
            if self.children is not None
            else self.content
        )
        return bytes([self.tag]) + encode_length(len(body)) + body

    def walk(self) -> list[Node]:
        """This node and every node under it, in order."""
        found = [self]
        for child in self.children or ():
            found += child.walk()
        return found


def encode_length(length: int) -> bytes:
    if length < 0x80:
        return bytes([length])
    raw = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def parse_der(data: bytes) -> Node:
    """The TLV tree of one DER value (single-byte tags, definite lengths: certificates)."""
    node, end = _parse(data, 0)
    if end != len(data):
        raise ValueError("bytes after the DER value")
    return node


def _parse(data: bytes, pos: int) -> tuple[Node, int]:
    tag = data[pos]
    first = data[pos + 1]
    pos += 2
    if first < 0x80:
        length = first
    else:
        count = first & 0x7F
        length = int.from_bytes(data[pos : pos + count], "big")
        pos += count
    end = pos + length
    if end > len(data):
        raise ValueError("DER value longer than the data")
    if not tag & 0x20:
        return Node(tag, data[pos:end]), end
    children = []
    while pos < end:
        child, pos = _parse(data, pos)
        children.append(child)
    return Node(tag, children=children), end


#: One structural edit of a DER tree: (kind, node index, a number, bytes).
DerEdit = tuple[str, int, int, bytes]

#: What a DER edit may do to a node.
DER_EDIT_KINDS = ("content", "tag", "drop", "double", "swap", "grow", "cut", "integer")

der_edits: st.SearchStrategy[DerEdit] = st.tuples(
    st.sampled_from(DER_EDIT_KINDS),
    st.integers(0, 1 << 16),
    st.integers(0, 255) | _byte,
    st.binary(max_size=24),
)


def apply_der_edits(der: bytes, changes: list[DerEdit]) -> bytes:
    """`der` with each edit made inside its tree, then encoded again with right lengths."""
    root = parse_der(der)
    for kind, index, number, data in changes:
        nodes = root.walk()
        node = nodes[index % len(nodes)]
        _edit(root, node, kind, number, data)
    return root.encode()


def _edit(root: Node, node: Node, kind: str, number: int, data: bytes) -> None:
    parent = next(
        (n for n in root.walk() if n.children and any(c is node for c in n.children)), None
    )
    if kind == "content" and node.children is None:
        node.content = data
    elif kind == "tag":
        node.tag = number & ~0x20 if node.children is None else number | 0x20
    elif kind == "drop" and parent is not None and parent.children is not None:
        parent.children.remove(node)
    elif kind == "double" and parent is not None and parent.children is not None:
        parent.children.insert(parent.children.index(node), parse_der(node.encode()))
    elif kind == "swap" and node.children and len(node.children) > 1:
        node.children.reverse()
    elif kind == "grow" and node.children is None:
        node.content += data or bytes([number]) * (1 + number)
    elif kind == "cut" and node.children is None:
        node.content = node.content[: number % (len(node.content) + 1)]
    elif kind == "integer" and node.children is None:
        # Edge integers: zero, negative, huge, a leading zero too many.
        node.content = [b"\x00", b"\xff", b"\x80" + bytes(40), b"\x00\x01", bytes([number])][
            number % 5
        ]


def der_mutated(der: bytes, max_edits: int = 3) -> st.SearchStrategy[bytes]:
    """`der` with up to `max_edits` structural edits, then maybe a few byte edits on top."""
    return st.tuples(st.lists(der_edits, max_size=max_edits), st.lists(edits, max_size=2)).map(
        lambda pair: apply_edits(apply_der_edits(der, pair[0]), pair[1])
    )
