"""The gateway's directly encoded C-STORE responses are the bytes pynetdicom itself would send."""

import pytest
from pynetdicom import dimse
from pynetdicom.dimse_messages import C_STORE_RSP
from pynetdicom.dimse_primitives import C_STORE

from intake.store_response import StoreResponse, encode_store_response, install

CT = "1.2.840.10008.5.1.4.1.1.2"


def _primitive(*, status=0x0000, comment=None, sop_class=CT, sop_instance="1.2.826.0.1.3680043.8.498.10",
               message_id=7, offending=None) -> C_STORE:
    primitive = C_STORE()
    primitive.MessageIDBeingRespondedTo = message_id
    primitive.AffectedSOPClassUID = sop_class
    primitive.AffectedSOPInstanceUID = sop_instance
    primitive.Status = status
    primitive.ErrorComment = comment
    primitive.OffendingElement = offending
    return primitive


def _sent(message_class, primitive: C_STORE, *, max_pdu: int = 1 << 20) -> list:
    message = message_class()
    message.primitive_to_message(primitive)
    return [pdata.presentation_data_value_list for pdata in message.encode_msg(3, max_pdu)]


@pytest.mark.parametrize("primitive", [
    _primitive(),
    _primitive(sop_instance="1.2.3"),  # odd length: padded with NUL
    _primitive(sop_instance="1.2.34"),  # even length: no padding
    _primitive(status=0xA700, comment="spool is full"),  # odd length comment: padded with a space
    _primitive(status=0xC211, comment="x" * 64),
    _primitive(status=0xB000, message_id=65535),
    _primitive(sop_class=None),
    _primitive(sop_instance=None),
], ids=["success", "odd-uid", "even-uid", "odd-comment", "long-comment", "warning", "no-class", "no-instance"])
def test_the_bytes_are_pynetdicoms(primitive):
    assert encode_store_response(primitive) is not None
    assert _sent(StoreResponse, primitive) == _sent(C_STORE_RSP, primitive)


@pytest.mark.parametrize("primitive", [
    _primitive(status=0xA900, offending=[0x00100010]),
    _primitive(status=0xC211, comment="Fehler: Ärger"),
], ids=["offending-element", "non-ascii-comment"])
def test_what_the_encoder_does_not_cover_is_left_to_pynetdicom(primitive):
    assert encode_store_response(primitive) is None
    assert _sent(StoreResponse, primitive) == _sent(C_STORE_RSP, primitive)


def test_a_response_larger_than_the_peers_pdu_is_fragmented_as_pynetdicom_does():
    primitive = _primitive(status=0xC211, comment="x" * 64)
    sent = _sent(StoreResponse, primitive, max_pdu=64)
    assert len(sent) > 1
    assert sent == _sent(C_STORE_RSP, primitive, max_pdu=64)


def test_handlers_still_see_the_command_set():
    message = StoreResponse()
    message.primitive_to_message(_primitive(status=0xA700, comment="spool is full"))
    assert message.command_set.Status == 0xA700
    assert message.command_set.ErrorComment == "spool is full"
    assert message.command_set.CommandField == 0x8001


def test_install_routes_c_store_responses_through_it():
    install()
    install()
    assert dimse._RSP_TO_MESSAGE[C_STORE] is StoreResponse
