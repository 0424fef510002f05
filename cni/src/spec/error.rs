//! The CNI error result (`{"cniVersion","code","msg","details"}`) and the spec's well-known codes.

use serde::{Deserialize, Serialize};
use std::fmt;

/// An error code from SPEC.md "Well-known Error Codes", or a plugin-specific one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Code {
    /// 1: the config's CNI version is not supported by the plugin.
    IncompatibleVersion,
    /// 2: a field in the network configuration is not supported (message names key and value).
    UnsupportedField,
    /// 3: the container is unknown or does not exist; the runtime need not call DEL.
    UnknownContainer,
    /// 4: a necessary environment variable is invalid or missing (message names it).
    InvalidEnvironment,
    /// 5: an I/O failure, e.g. reading stdin or plugin state.
    Io,
    /// 6: content could not be decoded, e.g. malformed JSON.
    Decode,
    /// 7: the network configuration failed validation.
    InvalidConfig,
    /// 11: a transient condition; the runtime should retry later.
    TryAgainLater,
    /// 50: the plugin cannot service ADD requests (STATUS).
    NotAvailable,
    /// 51: not available, and existing containers may have limited connectivity (STATUS).
    NotAvailableLimitedConnectivity,
    /// Any other code: 100 and above are plugin-specific (999 is "internal", as the reference uses).
    Other(u32),
}

impl Code {
    /// The catch-all plugin error code the reference plugins use (999).
    pub const INTERNAL: Code = Code::Other(999);

    /// The numeric value written in the error JSON.
    pub fn as_u32(self) -> u32 {
        match self {
            Code::IncompatibleVersion => 1,
            Code::UnsupportedField => 2,
            Code::UnknownContainer => 3,
            Code::InvalidEnvironment => 4,
            Code::Io => 5,
            Code::Decode => 6,
            Code::InvalidConfig => 7,
            Code::TryAgainLater => 11,
            Code::NotAvailable => 50,
            Code::NotAvailableLimitedConnectivity => 51,
            Code::Other(n) => n,
        }
    }

    /// The code for a numeric value read from an error JSON.
    pub fn from_u32(n: u32) -> Code {
        match n {
            1 => Code::IncompatibleVersion,
            2 => Code::UnsupportedField,
            3 => Code::UnknownContainer,
            4 => Code::InvalidEnvironment,
            5 => Code::Io,
            6 => Code::Decode,
            7 => Code::InvalidConfig,
            11 => Code::TryAgainLater,
            50 => Code::NotAvailable,
            51 => Code::NotAvailableLimitedConnectivity,
            n => Code::Other(n),
        }
    }
}

/// A CNI error: what a plugin prints on stdout (with a non-zero exit) when a verb fails.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    /// The well-known or plugin-specific code.
    pub code: Code,
    /// A short message.
    pub msg: String,
    /// A longer explanation; empty when there is none.
    pub details: String,
}

impl Error {
    /// An error with a code and a short message.
    pub fn new(code: Code, msg: impl Into<String>) -> Self {
        Self {
            code,
            msg: msg.into(),
            details: String::new(),
        }
    }

    /// The same error with a longer explanation attached.
    pub fn with_details(mut self, details: impl Into<String>) -> Self {
        self.details = details.into();
        self
    }

    /// The wire form of this error, stamped with the CNI version of the request.
    pub fn to_result(&self, cni_version: &str) -> ErrorResult {
        ErrorResult {
            cni_version: cni_version.to_string(),
            code: self.code.as_u32(),
            msg: self.msg.clone(),
            details: self.details.clone(),
        }
    }

    /// The error JSON as a plugin prints it.
    pub fn to_json(&self, cni_version: &str) -> String {
        serde_json::to_string(&self.to_result(cni_version)).expect("error JSON always serializes")
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.details.is_empty() {
            write!(f, "{} (code {})", self.msg, self.code.as_u32())
        } else {
            write!(
                f,
                "{}: {} (code {})",
                self.msg,
                self.details,
                self.code.as_u32()
            )
        }
    }
}

impl std::error::Error for Error {}

/// The error JSON exactly as on the wire; `details` and `cniVersion` may be absent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorResult {
    /// The CNI version of the request that failed (the reference omits it; we always write it).
    #[serde(
        rename = "cniVersion",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub cni_version: String,
    /// The numeric error code.
    pub code: u32,
    /// The short message.
    pub msg: String,
    /// The long message.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub details: String,
}

impl From<ErrorResult> for Error {
    fn from(r: ErrorResult) -> Self {
        Error {
            code: Code::from_u32(r.code),
            msg: r.msg,
            details: r.details,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip() {
        for n in [1, 2, 3, 4, 5, 6, 7, 11, 50, 51, 999, 120] {
            assert_eq!(Code::from_u32(n).as_u32(), n);
        }
        assert_eq!(Code::INTERNAL.as_u32(), 999);
    }

    #[test]
    fn error_json_has_spec_fields() {
        let e = Error::new(Code::InvalidEnvironment, "missing CNI_NETNS");
        let v: serde_json::Value = serde_json::from_str(&e.to_json("1.1.0")).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"cniVersion":"1.1.0","code":4,"msg":"missing CNI_NETNS"})
        );
        let e = e.with_details("more");
        let v: serde_json::Value = serde_json::from_str(&e.to_json("0.4.0")).unwrap();
        assert_eq!(v["details"], "more");
    }

    #[test]
    fn error_json_parses_reference_form() {
        let r: ErrorResult = serde_json::from_str(r#"{"code":999,"msg":"boom"}"#).unwrap();
        let e: Error = r.into();
        assert_eq!(e.code, Code::INTERNAL);
        assert_eq!(e.msg, "boom");
    }
}
