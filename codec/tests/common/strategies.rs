// Proptest strategies for every PDU body, within the bounds the codec accepts on the wire.
//
// C-octet strings are at most their maximum minus the NUL and never contain a NUL; short_message
// is at most 254 octets; TLV areas mix known tags at lengths their definition allows with vendor
// tags (0x1400..=0x3FFF) carrying arbitrary values.

use bytes::Bytes;
use proptest::collection::vec;
use proptest::prelude::*;
use smppgw_codec::pdu::max;
use smppgw_codec::{
    Address, AlertNotification, Bind, BindResp, Body, CancelSm, CommandStatus, DataSm, DataSmResp,
    DestAddress, MessageIdResp, Outbind, Pdu, QuerySm, QuerySmResp, ReplaceSm, SHORT_MESSAGE_MAX,
    SubmitMulti, SubmitMultiResp, SubmitSm, Tlvs, UnsuccessSme, tag,
};

/// A C-octet string value (without its NUL) for a field of `max_with_nul` octets.
/// Empty one time in four, because empty fields take special paths (error responses).
pub fn cstr(max_with_nul: usize) -> impl Strategy<Value = Bytes> {
    prop_oneof![
        1 => Just(Bytes::new()),
        3 => vec(1u8..=255, 0..max_with_nul).prop_map(Bytes::from),
    ]
}

/// A time field (schedule_delivery_time, validity_period, final_date): empty or exactly 16
/// characters, the only lengths SMPP 3.4 7.1.1 allows (the decoder refuses any other). Empty one
/// time in four, as in [`cstr`]; the characters are any non-NUL octets, since only the length is
/// checked on the wire.
pub fn time() -> impl Strategy<Value = Bytes> {
    prop_oneof![
        1 => Just(Bytes::new()),
        3 => vec(1u8..=255, max::TIME_LEN).prop_map(Bytes::from),
    ]
}

/// An octet field: zero one time in four, for the same reason.
pub fn byte() -> impl Strategy<Value = u8> {
    prop_oneof![1 => Just(0u8), 3 => any::<u8>()]
}

/// A C-octet string of 0..=`max_len` printable ASCII characters: what every implementation takes.
pub fn ascii(max_len: usize) -> impl Strategy<Value = Bytes> {
    vec(0x20u8..=0x7E, 0..=max_len).prop_map(Bytes::from)
}

/// An address of TON, NPI and up to `max_with_nul - 1` octets.
pub fn address(max_with_nul: usize) -> impl Strategy<Value = Address> {
    (byte(), byte(), cstr(max_with_nul)).prop_map(|(ton, npi, addr)| Address { ton, npi, addr })
}

pub fn short_message() -> impl Strategy<Value = Bytes> {
    prop_oneof![
        vec(any::<u8>(), 0..=40).prop_map(Bytes::from),
        vec(any::<u8>(), 0..=SHORT_MESSAGE_MAX).prop_map(Bytes::from),
        vec(any::<u8>(), SHORT_MESSAGE_MAX..=SHORT_MESSAGE_MAX).prop_map(Bytes::from),
    ]
}

/// Known tags with the value lengths their definition allows (inclusive).
pub const KNOWN_TLVS: &[(u16, usize, usize)] = &[
    (tag::DEST_ADDR_SUBUNIT, 1, 1),
    (tag::DEST_NETWORK_TYPE, 1, 1),
    (tag::DEST_TELEMATICS_ID, 2, 2),
    (tag::SOURCE_TELEMATICS_ID, 1, 2),
    (tag::QOS_TIME_TO_LIVE, 4, 4),
    (tag::PAYLOAD_TYPE, 1, 1),
    (tag::ADDITIONAL_STATUS_INFO_TEXT, 1, 256),
    (tag::RECEIPTED_MESSAGE_ID, 1, 66),
    (tag::MS_MSG_WAIT_FACILITIES, 1, 1),
    (tag::PRIVACY_INDICATOR, 1, 1),
    (tag::SOURCE_SUBADDRESS, 2, 23),
    (tag::DEST_SUBADDRESS, 2, 23),
    (tag::USER_MESSAGE_REFERENCE, 2, 2),
    (tag::SOURCE_PORT, 2, 2),
    (tag::DESTINATION_PORT, 2, 2),
    (tag::SAR_MSG_REF_NUM, 2, 2),
    (tag::SAR_TOTAL_SEGMENTS, 1, 1),
    (tag::SAR_SEGMENT_SEQNUM, 1, 1),
    (tag::SC_INTERFACE_VERSION, 1, 1),
    (tag::CALLBACK_NUM_ATAG, 0, 65),
    (tag::CALLBACK_NUM, 4, 19),
    (tag::MS_AVAILABILITY_STATUS, 1, 1),
    (tag::NETWORK_ERROR_CODE, 3, 3),
    (tag::MESSAGE_PAYLOAD, 0, 300),
    (tag::DELIVERY_FAILURE_REASON, 1, 1),
    (tag::MORE_MESSAGES_TO_SEND, 1, 1),
    (tag::MESSAGE_STATE, 1, 1),
    (tag::CONGESTION_STATE, 1, 1),
    (tag::USSD_SERVICE_OP, 1, 1),
    (tag::BILLING_IDENTIFICATION, 0, 64),
    (tag::MS_VALIDITY, 1, 4),
    (tag::ITS_SESSION_INFO, 2, 2),
];

/// One TLV: a known tag at a valid length, or a vendor tag with any value.
pub fn tlv() -> impl Strategy<Value = (u16, Vec<u8>)> {
    let known = proptest::sample::select(KNOWN_TLVS)
        .prop_flat_map(|(t, min, max)| (Just(t), vec(any::<u8>(), min..=max)));
    let vendor = (0x1400u16..=0x3FFF, vec(any::<u8>(), 0..48));
    prop_oneof![3 => known, 1 => vendor]
}

/// A TLV area of up to `n` parameters, built with [`Tlvs::builder`].
pub fn tlvs_up_to(n: usize) -> impl Strategy<Value = Tlvs> {
    vec(tlv(), 0..=n).prop_map(|list| list.iter().fold(Tlvs::builder(), |b, (t, v)| b.bytes(*t, v)).build())
}

pub fn tlvs() -> impl Strategy<Value = Tlvs> {
    tlvs_up_to(5)
}

pub fn bind() -> impl Strategy<Value = Bind> {
    (
        cstr(max::SYSTEM_ID),
        cstr(max::PASSWORD),
        cstr(max::SYSTEM_TYPE),
        byte(),
        byte(),
        byte(),
        cstr(max::ADDRESS_RANGE),
    )
        .prop_map(
            |(system_id, password, system_type, interface_version, addr_ton, addr_npi, address_range)| Bind {
                system_id,
                password,
                system_type,
                interface_version,
                addr_ton,
                addr_npi,
                address_range,
            },
        )
}

pub fn bind_resp() -> impl Strategy<Value = BindResp> {
    (cstr(max::SYSTEM_ID), tlvs_up_to(2)).prop_map(|(system_id, tlvs)| BindResp { system_id, tlvs })
}

/// submit_sm and deliver_sm share this layout.
pub fn submit_sm() -> impl Strategy<Value = SubmitSm> {
    (
        (cstr(max::SERVICE_TYPE), address(max::ADDR), address(max::ADDR)),
        (byte(), byte(), byte()),
        (time(), time()),
        (byte(), byte(), byte(), byte()),
        (short_message(), tlvs()),
    )
        .prop_map(
            |(
                (service_type, source, dest),
                (esm_class, protocol_id, priority_flag),
                (schedule_delivery_time, validity_period),
                (registered_delivery, replace_if_present_flag, data_coding, sm_default_msg_id),
                (short_message, tlvs),
            )| SubmitSm {
                service_type,
                source,
                dest,
                esm_class,
                protocol_id,
                priority_flag,
                schedule_delivery_time,
                validity_period,
                registered_delivery,
                replace_if_present_flag,
                data_coding,
                sm_default_msg_id,
                short_message,
                tlvs,
            },
        )
}

pub fn dest_address() -> impl Strategy<Value = DestAddress> {
    prop_oneof![
        3 => address(max::ADDR).prop_map(DestAddress::Sme),
        1 => cstr(max::DL_NAME).prop_map(DestAddress::DistributionList),
    ]
}

/// submit_multi with 1..=255 destinations (mostly few, sometimes the full 255).
pub fn submit_multi() -> impl Strategy<Value = SubmitMulti> {
    let dests = prop_oneof![4 => vec(dest_address(), 1..=8), 1 => vec(dest_address(), 1..=255), 1 => vec(dest_address(), 255..=255)];
    (submit_sm(), dests).prop_map(|(s, dests)| SubmitMulti {
        service_type: s.service_type,
        source: s.source,
        dests,
        esm_class: s.esm_class,
        protocol_id: s.protocol_id,
        priority_flag: s.priority_flag,
        schedule_delivery_time: s.schedule_delivery_time,
        validity_period: s.validity_period,
        registered_delivery: s.registered_delivery,
        replace_if_present_flag: s.replace_if_present_flag,
        data_coding: s.data_coding,
        sm_default_msg_id: s.sm_default_msg_id,
        short_message: s.short_message,
        tlvs: s.tlvs,
    })
}

pub fn submit_multi_resp() -> impl Strategy<Value = SubmitMultiResp> {
    let unsuccess = || {
        (address(max::ADDR), any::<u32>())
            .prop_map(|(addr, code)| UnsuccessSme { addr, error_status: CommandStatus(code) })
    };
    let list = prop_oneof![4 => vec(unsuccess(), 0..=6), 1 => vec(unsuccess(), 0..=255)];
    (cstr(max::MESSAGE_ID), list).prop_map(|(message_id, unsuccess)| SubmitMultiResp {
        message_id,
        unsuccess,
        tlvs: Default::default(),
    })
}

pub fn data_sm() -> impl Strategy<Value = DataSm> {
    (cstr(max::SERVICE_TYPE), address(max::ADDR_65), address(max::ADDR_65), byte(), byte(), byte(), tlvs())
        .prop_map(|(service_type, source, dest, esm_class, registered_delivery, data_coding, tlvs)| DataSm {
            service_type,
            source,
            dest,
            esm_class,
            registered_delivery,
            data_coding,
            tlvs,
        })
}

pub fn replace_sm() -> impl Strategy<Value = ReplaceSm> {
    (
        cstr(max::MESSAGE_ID),
        address(max::ADDR),
        time(),
        time(),
        byte(),
        byte(),
        short_message(),
        tlvs_up_to(2),
    )
        .prop_map(
            |(
                message_id,
                source,
                schedule_delivery_time,
                validity_period,
                registered_delivery,
                sm_default_msg_id,
                short_message,
                tlvs,
            )| ReplaceSm {
                message_id,
                source,
                schedule_delivery_time,
                validity_period,
                registered_delivery,
                sm_default_msg_id,
                short_message,
                tlvs,
            },
        )
}

/// Every body variant with valid contents.
pub fn body() -> impl Strategy<Value = Body> {
    let message_id = || {
        cstr(max::MESSAGE_ID).prop_map(|message_id| MessageIdResp { message_id, tlvs: Default::default() })
    };
    prop_oneof![
        bind().prop_map(Body::BindTransmitter),
        bind_resp().prop_map(Body::BindTransmitterResp),
        bind().prop_map(Body::BindReceiver),
        bind_resp().prop_map(Body::BindReceiverResp),
        bind().prop_map(Body::BindTransceiver),
        bind_resp().prop_map(Body::BindTransceiverResp),
        (cstr(max::SYSTEM_ID), cstr(max::PASSWORD))
            .prop_map(|(system_id, password)| Body::Outbind(Outbind { system_id, password })),
        Just(Body::Unbind),
        Just(Body::UnbindResp),
        Just(Body::GenericNack),
        Just(Body::EnquireLink),
        Just(Body::EnquireLinkResp),
        submit_sm().prop_map(Body::SubmitSm),
        message_id().prop_map(Body::SubmitSmResp),
        submit_sm().prop_map(Body::DeliverSm),
        message_id().prop_map(Body::DeliverSmResp),
        submit_multi().prop_map(Body::SubmitMulti),
        submit_multi_resp().prop_map(Body::SubmitMultiResp),
        data_sm().prop_map(Body::DataSm),
        (cstr(max::MESSAGE_ID), tlvs_up_to(3))
            .prop_map(|(message_id, tlvs)| Body::DataSmResp(DataSmResp { message_id, tlvs })),
        (cstr(max::MESSAGE_ID), address(max::ADDR))
            .prop_map(|(message_id, source)| Body::QuerySm(QuerySm { message_id, source })),
        (cstr(max::MESSAGE_ID), time(), byte(), byte()).prop_map(
            |(message_id, final_date, message_state, error_code)| Body::QuerySmResp(QuerySmResp {
                message_id,
                final_date,
                message_state,
                error_code
            })
        ),
        (cstr(max::SERVICE_TYPE), cstr(max::MESSAGE_ID), address(max::ADDR), address(max::ADDR)).prop_map(
            |(service_type, message_id, source, dest)| Body::CancelSm(CancelSm {
                service_type,
                message_id,
                source,
                dest
            })
        ),
        Just(Body::CancelSmResp),
        replace_sm().prop_map(Body::ReplaceSm),
        Just(Body::ReplaceSmResp),
        (address(max::ADDR_65), address(max::ADDR_65), tlvs_up_to(2)).prop_map(|(source, esme, tlvs)| {
            Body::AlertNotification(AlertNotification { source, esme, tlvs })
        }),
    ]
}

/// A response body whose fields are all empty or zero: what an error response carries.
pub fn empty_response_body() -> impl Strategy<Value = Body> {
    proptest::sample::select(vec![
        Body::BindTransmitterResp(BindResp::default()),
        Body::BindReceiverResp(BindResp::default()),
        Body::BindTransceiverResp(BindResp::default()),
        Body::SubmitSmResp(MessageIdResp::default()),
        Body::DeliverSmResp(MessageIdResp::default()),
        Body::SubmitMultiResp(SubmitMultiResp::default()),
        Body::DataSmResp(DataSmResp::default()),
        Body::QuerySmResp(QuerySmResp::default()),
        Body::UnbindResp,
        Body::EnquireLinkResp,
        Body::CancelSmResp,
        Body::ReplaceSmResp,
        Body::GenericNack,
    ])
}

/// A command_status: mostly ESME_ROK, sometimes a defined error, sometimes any 32-bit value.
pub fn status() -> impl Strategy<Value = CommandStatus> {
    prop_oneof![
        3 => Just(CommandStatus::ESME_ROK),
        1 => proptest::sample::select(CommandStatus::ALL),
        1 => any::<u32>().prop_map(CommandStatus),
    ]
}

/// A non-zero command_status.
pub fn error_status() -> impl Strategy<Value = CommandStatus> {
    prop_oneof![proptest::sample::select(&CommandStatus::ALL[1..]), (1u32..=u32::MAX).prop_map(CommandStatus),]
}

/// Any PDU: every body with any status, plus error responses with empty bodies.
pub fn pdu() -> impl Strategy<Value = Pdu> {
    prop_oneof![
        4 => (status(), any::<u32>(), body()).prop_map(|(s, seq, b)| Pdu::with_status(seq, s, b)),
        1 => (error_status(), any::<u32>(), empty_response_body()).prop_map(|(s, seq, b)| Pdu::with_status(seq, s, b)),
    ]
}
