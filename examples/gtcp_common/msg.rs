//! The message protocol both gtcp examples speak (the seed's `types.go`
//! and `funcs.go`): a JSON object `{"Act": ..., "Data": ...}` per package.
//! Included by `gtcp_server.rs` and `gtcp_client.rs` with `#[path]`.

use getty::pkg::{PkgError, ReadHalf, WriteHalf};
use serde_json::{json, Value};

/// One message of the example's protocol (gtcp's `types.Msg`).
#[derive(Debug)]
pub struct Msg {
    pub act: String,
    pub data: String,
}

/// Sends a message (gtcp's `funcs.SendPkg`).
pub async fn send_msg(writer: &WriteHalf, act: &str, data: &str) -> Result<(), PkgError> {
    let msg = json!({ "Act": act, "Data": data });
    writer.send_pkg(msg.to_string()).await
}

/// Receives the next package (gtcp's `funcs.RecvPkg`): `Ok(None)` for a
/// package that is not a message, which is logged and skipped.
pub async fn recv_msg(reader: &mut ReadHalf) -> Result<Option<Msg>, PkgError> {
    let pkg = reader.recv_pkg().await?;
    if pkg.is_empty() {
        tracing::warn!("skipping an empty package");
        return Ok(None);
    }
    let value: Value = match serde_json::from_slice(&pkg) {
        Ok(value) => value,
        Err(e) => {
            tracing::warn!(len = pkg.len(), error = %e, "skipping a package that is not JSON");
            return Ok(None);
        }
    };
    let field = |name: &str| value.get(name).and_then(Value::as_str).map(str::to_owned);
    match field("Act") {
        Some(act) => Ok(Some(Msg {
            act,
            data: field("Data").unwrap_or_default(),
        })),
        None => {
            tracing::warn!(%value, "skipping a package that is not a message (no \"Act\")");
            Ok(None)
        }
    }
}
