//! Logging as runc does it: `--log FILE` with `--log-format text|json`, where JSON lines
//! carry `level`, `msg` and `time`, the fields containerd's shim reads back on failure.

use std::fmt::Write as _;
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

/// Where log lines go and how they look.
struct LogLayer {
    out: Mutex<Box<dyn Write + Send>>,
    json: bool,
    max: Level,
}

struct Message(String);

impl Visit for Message {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.0, "{value:?}");
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }
}

impl<S: Subscriber> Layer<S> for LogLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let level = *event.metadata().level();
        if level > self.max {
            return;
        }
        let mut msg = Message(String::new());
        event.record(&mut msg);
        let time = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
        let lvl = level.as_str().to_ascii_lowercase();
        let line = if self.json {
            serde_json::json!({"level": lvl, "msg": msg.0, "time": time}).to_string()
        } else {
            format!(
                "time=\"{time}\" level={lvl} msg=\"{}\"",
                msg.0.replace('"', "\\\"")
            )
        };
        if let Ok(mut out) = self.out.lock() {
            let _ = writeln!(out, "{line}");
        }
    }
}

/// Install the logger. Without `--log`, warnings and errors go to stderr.
pub fn init(path: Option<&Path>, format: &str, debug: bool) -> anyhow::Result<()> {
    let out: Box<dyn Write + Send> = match path {
        Some(path) => Box::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| anyhow::anyhow!("--log {}: {e}", path.display()))?,
        ),
        None => Box::new(std::io::stderr()),
    };
    let json = match format {
        "json" => true,
        "text" => false,
        other => anyhow::bail!("--log-format: expected text or json, got {other:?}"),
    };
    let layer = LogLayer {
        out: Mutex::new(out),
        json,
        max: if debug { Level::DEBUG } else { Level::WARN },
    };
    let subscriber = tracing_subscriber::registry().with(layer);
    tracing::subscriber::set_global_default(subscriber)?;
    Ok(())
}
