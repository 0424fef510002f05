//! The v1 `Status` an exec ends with on the error channel, as the kubelet words it, and
//! the exit code a client reads back from it.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Status, StatusCause, StatusDetails};

/// The reason of a Status for a command that ran and exited non-zero.
pub const NON_ZERO_EXIT_CODE: &str = "NonZeroExitCode";
/// The cause type that carries the exit code.
pub const EXIT_CODE_CAUSE: &str = "ExitCode";

/// The command exited 0.
pub fn success() -> Status {
    Status {
        status: Some("Success".into()),
        ..Status::default()
    }
}

/// The command ran and exited with `code` (non-zero).
pub fn exit_code(command: &[String], code: i32) -> Status {
    Status {
        status: Some("Failure".into()),
        reason: Some(NON_ZERO_EXIT_CODE.into()),
        message: Some(format!(
            "command terminated with non-zero exit code: error executing command [{}], exit code {code}",
            command.join(" ")
        )),
        details: Some(StatusDetails {
            causes: Some(vec![StatusCause {
                reason: Some(EXIT_CODE_CAUSE.into()),
                message: Some(code.to_string()),
                field: None,
            }]),
            ..StatusDetails::default()
        }),
        ..Status::default()
    }
}

/// The command could not be run at all (500 InternalError, as the kubelet reports it).
pub fn internal(message: &str) -> Status {
    Status {
        status: Some("Failure".into()),
        reason: Some("InternalError".into()),
        code: Some(500),
        message: Some(format!("error executing command in container: {message}")),
        ..Status::default()
    }
}

/// What an exec's final Status says happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The command ran; its exit code (0 for Success).
    Exited(i32),
    /// The command did not run (or the Status is not understood): the Status's message.
    Failed(String),
}

/// Read an exec's final Status, as kubectl does.
pub fn outcome(status: &Status) -> Outcome {
    if status.status.as_deref() == Some("Success") {
        return Outcome::Exited(0);
    }
    if status.reason.as_deref() == Some(NON_ZERO_EXIT_CODE) {
        let code = status
            .details
            .as_ref()
            .and_then(|d| d.causes.as_ref())
            .into_iter()
            .flatten()
            .filter(|c| c.reason.as_deref() == Some(EXIT_CODE_CAUSE))
            .find_map(|c| c.message.as_deref()?.parse().ok());
        if let Some(code) = code {
            return Outcome::Exited(code);
        }
    }
    Outcome::Failed(
        status
            .message
            .clone()
            .unwrap_or_else(|| "the command failed (no message)".into()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_travel_as_the_kubelet_words_them() {
        let command = vec!["sh".to_string(), "-c".into(), "exit 3".into()];
        let status = exit_code(&command, 3);
        let json = serde_json::to_value(&status).unwrap();
        assert_eq!(json["status"], "Failure");
        assert_eq!(json["reason"], "NonZeroExitCode");
        assert_eq!(
            json["details"]["causes"],
            serde_json::json!([{"reason": "ExitCode", "message": "3"}])
        );
        assert_eq!(
            json["message"],
            "command terminated with non-zero exit code: error executing command [sh -c exit 3], exit code 3"
        );
        let back: Status = serde_json::from_value(json).unwrap();
        assert_eq!(outcome(&back), Outcome::Exited(3));
    }

    #[test]
    fn success_and_failures_read_back() {
        assert_eq!(outcome(&success()), Outcome::Exited(0));
        let failed = internal("container abc does not exist");
        assert_eq!(
            outcome(&failed),
            Outcome::Failed(
                "error executing command in container: container abc does not exist".into()
            )
        );
        let no_code = Status {
            reason: Some(NON_ZERO_EXIT_CODE.into()),
            message: Some("odd".into()),
            ..Status::default()
        };
        assert_eq!(outcome(&no_code), Outcome::Failed("odd".into()));
    }
}
