//! command_status: every SMPP 3.4 code (and the SMPP 5.0 additions) with its name.

use std::fmt;

/// A command_status value. A newtype rather than an enum because peers send codes outside the
/// specification (vendor-specific ranges 0x400..0x4FF and worse) and those must round-trip.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct CommandStatus(pub u32);

macro_rules! statuses {
    ($($name:ident = $code:expr, $desc:expr;)*) => {
        impl CommandStatus {
            $(#[doc = $desc] pub const $name: CommandStatus = CommandStatus($code);)*

            /// The specification's name (`ESME_RTHROTTLED`), or `None` for a code it does not define.
            pub const fn name(self) -> Option<&'static str> {
                match self.0 {
                    $($code => Some(stringify!($name)),)*
                    _ => None,
                }
            }

            /// The specification's description of the code.
            pub const fn description(self) -> Option<&'static str> {
                match self.0 {
                    $($code => Some($desc),)*
                    _ => None,
                }
            }

            /// Every code the specification defines, in numeric order.
            pub const ALL: &'static [CommandStatus] = &[$(CommandStatus($code),)*];
        }
    };
}

statuses! {
    ESME_ROK = 0x0000_0000, "No error";
    ESME_RINVMSGLEN = 0x0000_0001, "Message length is invalid";
    ESME_RINVCMDLEN = 0x0000_0002, "Command length is invalid";
    ESME_RINVCMDID = 0x0000_0003, "Invalid command ID";
    ESME_RINVBNDSTS = 0x0000_0004, "Incorrect bind status for given command";
    ESME_RALYBND = 0x0000_0005, "ESME already in bound state";
    ESME_RINVPRTFLG = 0x0000_0006, "Invalid priority flag";
    ESME_RINVREGDLVFLG = 0x0000_0007, "Invalid registered delivery flag";
    ESME_RSYSERR = 0x0000_0008, "System error";
    ESME_RINVSRCADR = 0x0000_000A, "Invalid source address";
    ESME_RINVDSTADR = 0x0000_000B, "Invalid destination address";
    ESME_RINVMSGID = 0x0000_000C, "Message ID is invalid";
    ESME_RBINDFAIL = 0x0000_000D, "Bind failed";
    ESME_RINVPASWD = 0x0000_000E, "Invalid password";
    ESME_RINVSYSID = 0x0000_000F, "Invalid system ID";
    ESME_RCANCELFAIL = 0x0000_0011, "Cancel SM failed";
    ESME_RREPLACEFAIL = 0x0000_0013, "Replace SM failed";
    ESME_RMSGQFUL = 0x0000_0014, "Message queue full";
    ESME_RINVSERTYP = 0x0000_0015, "Invalid service type";
    ESME_RINVNUMDESTS = 0x0000_0033, "Invalid number of destinations";
    ESME_RINVDLNAME = 0x0000_0034, "Invalid distribution list name";
    ESME_RINVDESTFLAG = 0x0000_0040, "Destination flag is invalid (submit_multi)";
    ESME_RINVSUBREP = 0x0000_0042, "Invalid submit with replace request";
    ESME_RINVESMCLASS = 0x0000_0043, "Invalid esm_class field data";
    ESME_RCNTSUBDL = 0x0000_0044, "Cannot submit to distribution list";
    ESME_RSUBMITFAIL = 0x0000_0045, "submit_sm or submit_multi failed";
    ESME_RINVSRCTON = 0x0000_0048, "Invalid source address TON";
    ESME_RINVSRCNPI = 0x0000_0049, "Invalid source address NPI";
    ESME_RINVDSTTON = 0x0000_0050, "Invalid destination address TON";
    ESME_RINVDSTNPI = 0x0000_0051, "Invalid destination address NPI";
    ESME_RINVSYSTYP = 0x0000_0053, "Invalid system_type field";
    ESME_RINVREPFLAG = 0x0000_0054, "Invalid replace_if_present flag";
    ESME_RINVNUMMSGS = 0x0000_0055, "Invalid number of messages";
    ESME_RTHROTTLED = 0x0000_0058, "Throttling error (ESME has exceeded allowed message limits)";
    ESME_RINVSCHED = 0x0000_0061, "Invalid scheduled delivery time";
    ESME_RINVEXPIRY = 0x0000_0062, "Invalid message validity period (expiry time)";
    ESME_RINVDFTMSGID = 0x0000_0063, "Predefined message invalid or not found";
    ESME_RX_T_APPN = 0x0000_0064, "ESME receiver temporary app error code";
    ESME_RX_P_APPN = 0x0000_0065, "ESME receiver permanent app error code";
    ESME_RX_R_APPN = 0x0000_0066, "ESME receiver reject message error code";
    ESME_RQUERYFAIL = 0x0000_0067, "query_sm request failed";
    ESME_RINVOPTPARSTREAM = 0x0000_00C0, "Error in the optional part of the PDU body";
    ESME_ROPTPARNOTALLWD = 0x0000_00C1, "Optional parameter not allowed";
    ESME_RINVPARLEN = 0x0000_00C2, "Invalid parameter length";
    ESME_RMISSINGOPTPARAM = 0x0000_00C3, "Expected optional parameter missing";
    ESME_RINVOPTPARAMVAL = 0x0000_00C4, "Invalid optional parameter value";
    ESME_RDELIVERYFAILURE = 0x0000_00FE, "Delivery failure (used for data_sm_resp)";
    ESME_RUNKNOWNERR = 0x0000_00FF, "Unknown error";
    ESME_RSERTYPUNAUTH = 0x0000_0100, "ESME not authorised to use specified service_type (SMPP 5.0)";
    ESME_RPROHIBITED = 0x0000_0101, "ESME prohibited from using specified operation (SMPP 5.0)";
    ESME_RSERTYPUNAVAIL = 0x0000_0102, "Specified service_type is unavailable (SMPP 5.0)";
    ESME_RSERTYPDENIED = 0x0000_0103, "Specified service_type is denied (SMPP 5.0)";
    ESME_RINVDCS = 0x0000_0104, "Invalid data coding scheme (SMPP 5.0)";
    ESME_RINVSRCADDRSUBUNIT = 0x0000_0105, "Source address sub unit is invalid (SMPP 5.0)";
    ESME_RINVDSTADDRSUBUNIT = 0x0000_0106, "Destination address sub unit is invalid (SMPP 5.0)";
    ESME_RINVBCASTFREQINT = 0x0000_0107, "Broadcast frequency interval is invalid (SMPP 5.0)";
    ESME_RINVBCASTALIAS_NAME = 0x0000_0108, "Broadcast alias name is invalid (SMPP 5.0)";
    ESME_RINVBCASTAREAFMT = 0x0000_0109, "Broadcast area format is invalid (SMPP 5.0)";
    ESME_RINVNUMBCAST_AREAS = 0x0000_010A, "Number of broadcast areas is invalid (SMPP 5.0)";
    ESME_RINVBCASTCNTTYPE = 0x0000_010B, "Broadcast content type is invalid (SMPP 5.0)";
    ESME_RINVBCASTMSGCLASS = 0x0000_010C, "Broadcast message class is invalid (SMPP 5.0)";
    ESME_RBCASTFAIL = 0x0000_010D, "broadcast_sm operation failed (SMPP 5.0)";
    ESME_RBCASTQUERYFAIL = 0x0000_010E, "query_broadcast_sm operation failed (SMPP 5.0)";
    ESME_RBCASTCANCELFAIL = 0x0000_010F, "cancel_broadcast_sm operation failed (SMPP 5.0)";
    ESME_RINVBCAST_REP = 0x0000_0110, "Number of repeated broadcasts is invalid (SMPP 5.0)";
    ESME_RINVBCASTSRVGRP = 0x0000_0111, "Broadcast service group is invalid (SMPP 5.0)";
    ESME_RINVBCASTCHANIND = 0x0000_0112, "Broadcast channel indicator is invalid (SMPP 5.0)";
}

impl CommandStatus {
    /// SMPP 5.0 renamed 0x0C0..0x0C4 from the 3.4 names above (`ESME_RINVOPTPARSTREAM` ..
    /// `ESME_RINVOPTPARAMVAL`, which [`CommandStatus::name`] and `Display` give) to TLV names.
    /// The 5.0 names are aliases: SMPP 5.0 name of [`CommandStatus::ESME_RINVOPTPARSTREAM`].
    pub const ESME_RINVTLVSTREAM: CommandStatus = CommandStatus::ESME_RINVOPTPARSTREAM;
    /// SMPP 5.0 name of [`CommandStatus::ESME_ROPTPARNOTALLWD`].
    pub const ESME_RTLVNOTALLWD: CommandStatus = CommandStatus::ESME_ROPTPARNOTALLWD;
    /// SMPP 5.0 name of [`CommandStatus::ESME_RINVPARLEN`].
    pub const ESME_RINVTLVLEN: CommandStatus = CommandStatus::ESME_RINVPARLEN;
    /// SMPP 5.0 name of [`CommandStatus::ESME_RMISSINGOPTPARAM`].
    pub const ESME_RMISSINGTLV: CommandStatus = CommandStatus::ESME_RMISSINGOPTPARAM;
    /// SMPP 5.0 name of [`CommandStatus::ESME_RINVOPTPARAMVAL`].
    pub const ESME_RINVTLVVAL: CommandStatus = CommandStatus::ESME_RINVOPTPARAMVAL;

    /// `true` for ESME_ROK.
    pub const fn is_ok(self) -> bool {
        self.0 == 0
    }

    /// Whether a peer answering with this status may accept the same request later or elsewhere:
    /// congestion, throttling and system errors are temporary; everything else is about the message.
    pub const fn is_temporary(self) -> bool {
        matches!(self.0, 0x08 | 0x14 | 0x58 | 0x64)
    }

    /// The 3.4 name, falling back to `0x%08X` for codes the specification does not define.
    pub fn name_or_hex(self) -> std::borrow::Cow<'static, str> {
        match self.name() {
            Some(n) => std::borrow::Cow::Borrowed(n),
            None => std::borrow::Cow::Owned(format!("0x{:08X}", self.0)),
        }
    }
}

impl fmt::Debug for CommandStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => f.write_str(n),
            None => write!(f, "CommandStatus(0x{:08X})", self.0),
        }
    }
}

impl fmt::Display for CommandStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => write!(f, "{n} (0x{:08X})", self.0),
            None => write!(f, "0x{:08X}", self.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_the_reference_table() {
        // Cross-checked against ../shared/smpp-reference.md.
        assert_eq!(CommandStatus(0x58).name(), Some("ESME_RTHROTTLED"));
        assert_eq!(CommandStatus(0x0E).name(), Some("ESME_RINVPASWD"));
        assert_eq!(CommandStatus::ESME_RINVPARLEN.0, 0xC2);
        assert_eq!(CommandStatus(0x0400).name(), None);
        assert_eq!(CommandStatus(0x0400).to_string(), "0x00000400");
        assert!(CommandStatus::ALL.windows(2).all(|w| w[0].0 < w[1].0));
    }

    #[test]
    fn optional_parameter_codes_have_their_smpp_3_4_names() {
        // Goal: 0xC0..0xC4 are named as SMPP 3.4 names them (the 5.0 names are only aliases), in
        // name(), Display, Debug and name_or_hex.
        let names = [
            (0xC0, "ESME_RINVOPTPARSTREAM"),
            (0xC1, "ESME_ROPTPARNOTALLWD"),
            (0xC2, "ESME_RINVPARLEN"),
            (0xC3, "ESME_RMISSINGOPTPARAM"),
            (0xC4, "ESME_RINVOPTPARAMVAL"),
        ];
        for (code, name) in names {
            let st = CommandStatus(code);
            assert_eq!(st.name(), Some(name));
            assert_eq!(st.to_string(), format!("{name} (0x{code:08X})"));
            assert_eq!(format!("{st:?}"), name);
            assert_eq!(st.name_or_hex(), name);
        }
        let aliases = [
            (CommandStatus::ESME_RINVTLVSTREAM, CommandStatus::ESME_RINVOPTPARSTREAM),
            (CommandStatus::ESME_RTLVNOTALLWD, CommandStatus::ESME_ROPTPARNOTALLWD),
            (CommandStatus::ESME_RINVTLVLEN, CommandStatus::ESME_RINVPARLEN),
            (CommandStatus::ESME_RMISSINGTLV, CommandStatus::ESME_RMISSINGOPTPARAM),
            (CommandStatus::ESME_RINVTLVVAL, CommandStatus::ESME_RINVOPTPARAMVAL),
        ];
        for (v5, v34) in aliases {
            assert_eq!(v5, v34);
        }
    }

    #[test]
    fn every_code_in_the_reference_has_its_name() {
        let Ok(text) =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/smpp-reference.md"))
        else {
            panic!("../shared/smpp-reference.md must be beside the checkout");
        };
        let mut seen = 0;
        for line in text.lines() {
            let cols: Vec<&str> = line.split('|').map(str::trim).collect();
            if cols.len() >= 3 && cols[1].starts_with("ESME_") && cols[2].starts_with("0x") {
                let code = u32::from_str_radix(&cols[2][2..], 16).unwrap();
                let st = CommandStatus(code);
                // Every code with its 3.4 name, 0xC0..0xC4 included (not their 5.0 TLV names).
                assert_eq!(st.name(), Some(cols[1]), "code 0x{code:X}");
                seen += 1;
            }
        }
        assert!(seen >= 48, "reference table parsed ({seen} rows)");
    }
}
