"""The plain-TCP client's PDUs (``dcmtool.net.lean``), without sockets: what it sends is what
pynetdicom reads, what it reads is checked strictly, and its rejection texts are pynetdicom's.
"""

from __future__ import annotations

import struct

import pytest
from pynetdicom.pdu import A_ASSOCIATE_AC, A_ASSOCIATE_RQ
from pynetdicom.pdu_primitives import (
    A_ASSOCIATE,
    ImplementationVersionNameNotification,
    MaximumLengthNotification,
)
from pynetdicom.presentation import PresentationContext

from dcmtool.config import Peer
from dcmtool.dicom.commands import echo_request, parse_command, us
from dcmtool.net import framing, outcomes
from dcmtool.net.lean import pdus
from dcmtool.net.lean.pdus import PduError

VERIFICATION = "1.2.840.10008.1.1"
EXPLICIT, IMPLICIT = "1.2.840.10008.1.2.1", "1.2.840.10008.1.2"
PEER = Peer(label="PACS", host="127.0.0.1", port=104, called_ae_title="PACS",
            calling_ae_title="WS1")


def item(item_type: int, value: bytes) -> bytes:
    return struct.pack(">BBH", item_type, 0, len(value)) + value


def ac_body(*items: bytes) -> bytes:
    """An A-ASSOCIATE-AC body: the fixed 68 bytes, then ``items``."""
    return struct.pack(">HH", 1, 0) + b"PACS".ljust(16) + b"WS1".ljust(16) + bytes(32) \
        + b"".join(items)


def context_item(context_id: int, result: int, *syntaxes: str) -> bytes:
    return item(0x21, bytes([context_id, 0, result, 0])
                + b"".join(item(0x40, s.encode()) for s in syntaxes))


def test_the_association_request_reads_back_in_pynetdicom() -> None:
    encoded = pdus.associate_rq(
        calling_ae_title="WS1", called_ae_title="PACS",
        contexts=[(1, VERIFICATION, (EXPLICIT, IMPLICIT)), (3, "1.2.3", (IMPLICIT,))],
        max_pdu=16384, implementation_class_uid="2.25.1", implementation_version_name="X_1")
    pdu = A_ASSOCIATE_RQ()
    pdu.decode(encoded)
    primitive = pdu.to_primitive()
    assert (primitive.calling_ae_title, primitive.called_ae_title) == ("WS1", "PACS")
    assert primitive.application_context_name == pdus.APPLICATION_CONTEXT
    proposed = [(cx.context_id, str(cx.abstract_syntax), [str(t) for t in cx.transfer_syntax])
                for cx in primitive.presentation_context_definition_list]
    assert proposed == [(1, VERIFICATION, [EXPLICIT, IMPLICIT]), (3, "1.2.3", [IMPLICIT])]
    assert primitive.maximum_length_received == 16384
    assert primitive.implementation_class_uid == "2.25.1"
    assert pdu.user_information is not None
    assert pdu.user_information.implementation_version_name == "X_1"
    assert len(encoded) == 6 + struct.unpack(">I", encoded[2:6])[0]


def test_an_acceptance_from_pynetdicom_parses() -> None:
    primitive = A_ASSOCIATE()
    primitive.result = 0
    primitive.application_context_name = pdus.APPLICATION_CONTEXT
    primitive.calling_ae_title, primitive.called_ae_title = "WS1", "PACS"
    accepted, rejected = PresentationContext(), PresentationContext()
    accepted.context_id, accepted.result = 1, 0
    accepted.abstract_syntax, accepted.transfer_syntax = VERIFICATION, [EXPLICIT]
    rejected.context_id, rejected.result = 3, 3
    rejected.abstract_syntax, rejected.transfer_syntax = "1.2.3", [IMPLICIT]
    primitive.presentation_context_definition_results_list = [accepted, rejected]
    maximum = MaximumLengthNotification()
    maximum.maximum_length_received = 4096
    version = ImplementationVersionNameNotification()
    version.implementation_version_name = "PYNETDICOM_304"
    primitive.user_information = [maximum, version]
    primitive.implementation_class_uid = "1.2.826.0.1.3680043.9.3811.3.0.4"
    pdu = A_ASSOCIATE_AC()
    pdu.from_primitive(primitive)
    encoded = pdu.encode()

    got = pdus.parse_associate_ac(encoded[6:])
    assert got.max_pdu == 4096
    assert got.implementation_class_uid == "1.2.826.0.1.3680043.9.3811.3.0.4"
    assert got.implementation_version_name == "PYNETDICOM_304"
    assert got.contexts == {1: (0, EXPLICIT), 3: (3, IMPLICIT)}


@pytest.mark.parametrize(("body", "message"), [
    pytest.param(ac_body()[:60], "a malformed A-ASSOCIATE-AC (length 60, shorter than its "
                 "fixed 68-byte header)", id="short-header"),
    pytest.param(ac_body(context_item(1, 0, EXPLICIT))[:-3],
                 "a malformed A-ASSOCIATE-AC (item 0x21 of length 27 runs past the end of "
                 "what holds it (24 bytes left))", id="item-past-end"),
    pytest.param(ac_body(context_item(1, 0, EXPLICIT)) + b"\x50\x00",
                 "a malformed A-ASSOCIATE-AC (2 stray bytes after the last item)",
                 id="stray-bytes"),
    pytest.param(ac_body(item(0x21, b"\x01\x00")),
                 "a malformed A-ASSOCIATE-AC (a presentation context item of length 2)",
                 id="short-context"),
    pytest.param(ac_body(item(0x21, b"\x01\x00\x00\x00" + b"\x40\x00\x00\x09123")),
                 "a malformed A-ASSOCIATE-AC (item 0x40 of length 9 runs past the end of "
                 "what holds it (3 bytes left))", id="syntax-past-context"),
    pytest.param(ac_body(context_item(1, 0)),
                 "a malformed A-ASSOCIATE-AC (accepted presentation context 1 with 0 "
                 "transfer syntaxes (PS3.8: one))", id="accepted-without-syntax"),
    pytest.param(ac_body(context_item(1, 0, EXPLICIT), item(0x50, item(0x51, b"\x00\x10"))),
                 "a malformed A-ASSOCIATE-AC (a maximum length sub-item of length 2)",
                 id="short-max-length"),
])
def test_a_malformed_acceptance_says_what_is_wrong(body: bytes, message: str) -> None:
    with pytest.raises(PduError) as error:
        pdus.parse_associate_ac(body)
    assert str(error.value) == message


def test_unknown_items_of_an_acceptance_are_skipped() -> None:
    body = ac_body(item(0x10, b"1.2.840.10008.3.1.1.1"), item(0x77, b"future"),
                   context_item(1, 0, EXPLICIT),
                   item(0x50, item(0x51, struct.pack(">I", 0)) + item(0x59, b"\x00\x00")))
    got = pdus.parse_associate_ac(body)
    assert got.contexts == {1: (0, EXPLICIT)}
    assert got.max_pdu == 0  # unlimited
    assert got.implementation_class_uid is None


@pytest.mark.parametrize(("pdu_type", "length", "max_data", "message"), [
    (0x09, 4, 0, "an unknown PDU type 0x09"),
    (pdus.ABORT, 6, 0, "an A-ABORT of length 6 (PS3.8: 4)"),
    (pdus.ASSOCIATE_RJ, 3, 0, "an A-ASSOCIATE-RJ of length 3 (PS3.8: 4)"),
    (pdus.RELEASE_RP, 0, 0, "an A-RELEASE-RP of length 0 (PS3.8: 4)"),
    (pdus.P_DATA_TF, 16385, 16384, "a P-DATA-TF of 16385 bytes, more than the 16384 allowed"),
    (pdus.ASSOCIATE_AC, (1 << 20) + 1, 0,
     "an A-ASSOCIATE-AC of 1048577 bytes, more than the 1048576 allowed"),
])
def test_a_header_that_cannot_be_is_refused_before_its_body(
        pdu_type: int, length: int, max_data: int, message: str) -> None:
    with pytest.raises(PduError) as error:
        pdus.check_header(pdu_type, length, max_data)
    assert str(error.value) == message


def test_a_data_pdu_within_our_maximum_is_read() -> None:
    pdus.check_header(pdus.P_DATA_TF, 16384, 16384)
    pdus.check_header(pdus.P_DATA_TF, 1 << 20, 0)  # 0: we set no maximum


@pytest.mark.parametrize(("body", "message"), [
    (b"", "an empty P-DATA-TF"),
    (b"\x00\x00\x00\x01\x01\x03", "a malformed P-DATA-TF (a PDV of length 1 in 6 bytes)"),
    (b"\x00\x00\x00\x09\x01\x03abc", "a malformed P-DATA-TF (a PDV of length 9 in 9 bytes)"),
    (b"\x00\x00\x00\x03\x01\x03a\x00\x00",
     "a malformed P-DATA-TF (2 stray bytes after its last PDV)"),
])
def test_a_malformed_data_pdu_says_what_is_wrong(body: bytes, message: str) -> None:
    with pytest.raises(PduError) as error:
        pdus.parse_p_data(body)
    assert str(error.value) == message


def test_the_echo_request_is_a_command_set_framed_in_one_pdv() -> None:
    command = echo_request(7)
    framed = framing.p_data_tf(1, 0x03, command)
    assert framed[0] == pdus.P_DATA_TF
    [(context_id, control, data)] = pdus.parse_p_data(framed[6:])
    assert (context_id, control, data) == (1, 0x03, command)
    fields = parse_command(data)
    assert fields is not None
    assert fields[0x0002] == b"1.2.840.10008.1.1\x00"
    assert (us(fields, 0x0100), us(fields, 0x0110), us(fields, 0x0800)) == (0x30, 7, 0x0101)


def test_release_and_abort_pdus() -> None:
    assert pdus.release_rq() == b"\x05\x00\x00\x00\x00\x04\x00\x00\x00\x00"
    assert pdus.release_rp() == b"\x06\x00\x00\x00\x00\x04\x00\x00\x00\x00"
    assert pdus.abort(pdus.ABORT_PROVIDER, pdus.UNEXPECTED_PDU) == \
        b"\x07\x00\x00\x00\x00\x04\x00\x00\x02\x02"


# ---------------------------------------------------------------------------------------------
# One set of rejection texts for both clients: pynetdicom's


VALID_REJECTIONS = [(result, source, reason) for result in (1, 2) for source in (1, 2, 3)
                    for reason in (1, 2, 3, 7)]


@pytest.mark.parametrize(("result", "source", "reason"), VALID_REJECTIONS)
def test_rejection_texts_are_pynetdicoms(result: int, source: int, reason: int) -> None:
    primitive = A_ASSOCIATE()
    primitive.result, primitive.result_source, primitive.diagnostic = result, source, reason
    error = outcomes.rejection(PEER, result, source, reason)
    kind = "permanently" if result == 1 else "transiently"
    assert error.message == (
        f"association rejected {kind} by PACS: {primitive.reason_str.lower()} "
        f"(source: {primitive.source_str.lower()})")
    assert outcomes.rejection_lines(result, source, reason) == [
        "Association Rejected",
        f"Result: {primitive.result_str}, Source: {primitive.source_str}",
        f"Reason: {primitive.reason_str}"]
    assert outcomes.rejection_problem(result, source, reason) is None


@pytest.mark.parametrize(("result", "source", "reason"), [(3, 1, 1), (1, 0, 1), (1, 4, 1),
                                                          (1, 1, 0), (2, 3, 5)])
def test_a_rejection_pynetdicom_refuses_is_malformed_in_its_words(
        result: int, source: int, reason: int) -> None:
    primitive = A_ASSOCIATE()
    with pytest.raises(ValueError) as refused:
        primitive.result, primitive.result_source, primitive.diagnostic = result, source, reason
    assert outcomes.rejection_problem(result, source, reason) == str(refused.value)


def test_a_rejection_that_says_accepted_is_malformed() -> None:
    assert outcomes.rejection_problem(0, 1, 1) == "Unknown A_ASSOCIATE.result value"


def test_rejections_a_user_can_act_on_have_hints() -> None:
    calling = outcomes.rejection(PEER, 1, 1, 3)
    assert calling.hint is not None and "calling AE title 'WS1'" in calling.hint
    assert calling.setting == "calling_ae_title"
    called = outcomes.rejection(PEER, 1, 1, 7)
    assert called.hint is not None and "not called 'PACS'" in called.hint
    assert called.setting == "called_ae_title"
    assert int(called.exit_code) == 4
