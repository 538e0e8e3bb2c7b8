//! The `file://DIR` capture: one `.eml` per message, written atomically.
use std::path::Path;

use super::SendError;

pub async fn write(dir: &Path, message_id: &str, body: &[u8]) -> Result<String, SendError> {
    let f = |e: std::io::Error| {
        SendError::Unreachable(format!("cannot write to {}: {e}", dir.display()))
    };
    tokio::fs::create_dir_all(dir).await.map_err(f)?;
    let name: String = message_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let tmp = dir.join(format!(".{name}.tmp"));
    let dst = dir.join(format!("{name}.eml"));
    tokio::fs::write(&tmp, body).await.map_err(f)?;
    // rename is atomic: readers never see a half-written .eml.
    tokio::fs::rename(&tmp, &dst).await.map_err(f)?;
    Ok(format!("250 written {}", dst.display()))
}

/// Can the directory be written? (The probe while the capture is "down".)
pub async fn probe(dir: &Path) -> Result<(), String> {
    let probe = dir.join(".herald-probe");
    let r = async {
        tokio::fs::create_dir_all(dir).await?;
        tokio::fs::write(&probe, b"").await?;
        tokio::fs::remove_file(&probe).await
    }
    .await;
    r.map_err(|e| format!("cannot write to {}: {e}", dir.display()))
}
