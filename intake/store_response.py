"""The gateway's C-STORE responses, encoded directly.

pynetdicom builds every C-STORE-RSP through a pydicom Dataset: a deep copy of a template command set,
then the whole set written twice (once to measure the Command Group Length, once to send it). That is
about a millisecond of one core per instance, as much as the gateway spends storing the instance
itself. A response holds at most eight short elements of Implicit VR Little Endian (PS3.7 6.3.1, E.1),
so ``encode_store_response`` writes them straight into bytes, the same bytes pydicom writes (tested
against it), and ``StoreResponse`` sends them as pynetdicom's own message would: one P-DATA with one
PDV whose message control header says "command, last fragment" (PS3.8 E.2).

``install()`` makes pynetdicom use ``StoreResponse`` for every C-STORE-RSP this process sends; a
response this module does not cover (an Offending Element list, text beyond ASCII, a peer whose
maximum PDU cannot hold it) and any attribute a handler asks of the message are left to pynetdicom's
own class, so nothing changes on the wire but the cost.
"""

import struct

from pynetdicom import dimse
from pynetdicom.dimse_messages import C_STORE_RSP
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.pdu_primitives import P_DATA

COMMAND_FIELD_C_STORE_RSP = 0x8001
NO_DATA_SET = 0x0101
PDV_HEADER_BYTES = 6  # item length (4), presentation context ID (1), message control header (1)
LAST_COMMAND_FRAGMENT = b"\x03"


def _element(element: int, value: bytes) -> bytes:
    """One command element of group 0000, Implicit VR Little Endian: tag, 32-bit length, value."""
    return struct.pack("<HHI", 0x0000, element, len(value)) + value


def _uid(value: str) -> bytes:
    data = value.encode("ascii")
    return data + b"\x00" if len(data) % 2 else data


def encode_store_response(primitive: C_STORE) -> bytes | None:
    """The command set of a C-STORE-RSP for ``primitive``, or None when it needs pynetdicom's encoder."""
    if primitive.OffendingElement is not None:
        return None
    comment = primitive.ErrorComment
    try:
        comment_bytes = None if comment is None else comment.encode("ascii")
        elements = b"".join([
            *([_element(0x0002, _uid(primitive.AffectedSOPClassUID))]
              if primitive.AffectedSOPClassUID is not None else []),
            _element(0x0100, struct.pack("<H", COMMAND_FIELD_C_STORE_RSP)),
            _element(0x0120, struct.pack("<H", primitive.MessageIDBeingRespondedTo)),
            _element(0x0800, struct.pack("<H", NO_DATA_SET)),
            *([_element(0x0900, struct.pack("<H", primitive.Status))] if primitive.Status is not None else []),
            *([_element(0x0902, comment_bytes + b" " if len(comment_bytes) % 2 else comment_bytes)]
              if comment_bytes is not None else []),
            *([_element(0x1000, _uid(primitive.AffectedSOPInstanceUID))]
              if primitive.AffectedSOPInstanceUID is not None else []),
        ])
    except (UnicodeEncodeError, struct.error):
        return None
    return _element(0x0000, struct.pack("<I", len(elements))) + elements


class StoreResponse(C_STORE_RSP):
    """pynetdicom's C-STORE-RSP message, with the command set encoded by ``encode_store_response``.

    The template Dataset pynetdicom's messages start from is built only when something asks for it
    (an event handler reading ``command_set``, or a response the direct encoder does not cover).
    """

    def __init__(self) -> None:  # deliberately not DIMSEMessage.__init__: that builds the template
        self.context_id = None
        self._primitive: C_STORE | None = None
        self._encoded: bytes | None = None
        self._message: C_STORE_RSP | None = None

    def _full(self) -> C_STORE_RSP:
        if self._message is None:
            self._message = C_STORE_RSP()
            self._message.primitive_to_message(self._primitive)
        return self._message

    def __getattr__(self, name: str):
        # only for attributes this object does not have: everything else of pynetdicom's message
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._full(), name)

    def primitive_to_message(self, primitive: C_STORE) -> None:
        self._primitive = primitive
        self._encoded = encode_store_response(primitive)

    def encode_msg(self, context_id: int, max_pdu_length: int):
        self.context_id = context_id
        encoded = self._encoded
        if encoded is None or (max_pdu_length and len(encoded) > max_pdu_length - PDV_HEADER_BYTES):
            yield from self._full().encode_msg(context_id, max_pdu_length)
            return
        pdata = P_DATA()
        pdata.presentation_data_value_list.append((context_id, LAST_COMMAND_FRAGMENT + encoded))
        yield pdata


def install() -> None:
    """Send this process's C-STORE responses through ``StoreResponse`` (idempotent)."""
    dimse._RSP_TO_MESSAGE[C_STORE] = StoreResponse
