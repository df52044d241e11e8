//! Signed checkpoints of the audit chain head. The gateway signs `(seq, hash)` of the newest
//! entry with its audit key (ES384, used for nothing else: not the token signing key), at
//! start, periodically and on shutdown, and keeps each checkpoint twice: in the store (an
//! append-only table) and in an append-only file beside it. Verification then detects a chain
//! cut back below a checkpoint (truncation), an entry altered under one, a forged checkpoint,
//! and checkpoints removed from either copy (see [`super::verify_all`] for the exact rules).

use std::io::Write;
use std::path::Path;

use jsonwebtoken::{Algorithm, DecodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::auth::keys::GatewayKey;
use crate::store::{Checkpoint, Store, StoreError};

/// The append-only copy of the checkpoints, one JSON object per line.
pub const CHECKPOINT_FILE: &str = "audit-checkpoints.jsonl";

#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
struct CheckpointClaims {
    seq: i64,
    hash: String,
    signed_at: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct FileLine {
    seq: i64,
    head_hash: String,
    signed_at: String,
    kid: String,
    signature: String,
}

/// A public key that verifies checkpoints, with its key id (as checkpoints record it).
#[derive(Clone)]
pub struct VerifyingKey {
    pub kid: String,
    pub key: DecodingKey,
}

impl VerifyingKey {
    pub fn of(key: &GatewayKey) -> VerifyingKey {
        VerifyingKey {
            kid: key.kid.clone(),
            key: key.decoding.clone(),
        }
    }
}

/// The keys `audit verify` checks checkpoints with.
#[derive(Clone, Default)]
pub struct CheckpointKeys {
    /// The audit key; `None` when the data directory has none yet (it was never served by a
    /// gateway that has one, and no `audit.signing_key` is configured).
    pub audit: Option<VerifyingKey>,
    /// The token signing key, only for checkpoints made before the audit key existed.
    pub token: Option<VerifyingKey>,
}

impl CheckpointKeys {
    /// Loads both keys as configured (`audit.signing_key`, `auth.signing_key`), or from the data
    /// directory, without generating either.
    pub fn load(settings: &crate::config::Settings, data_dir: &Path) -> anyhow::Result<Self> {
        use crate::auth::keys::AUDIT_KEY_FILE;
        let audit = GatewayKey::load_existing_file(
            settings.audit.signing_key.as_deref(),
            data_dir,
            AUDIT_KEY_FILE,
        )?;
        let token = GatewayKey::load_existing(settings.auth.signing_key.as_deref(), data_dir)?;
        Ok(CheckpointKeys {
            audit: audit.as_ref().map(VerifyingKey::of),
            token: token.as_ref().map(VerifyingKey::of),
        })
    }
}

/// Signs the chain head with the audit key.
pub fn sign(key: &GatewayKey, seq: i64, hash: &str, signed_at: &str) -> Result<Checkpoint, String> {
    let claims = CheckpointClaims {
        seq,
        hash: hash.to_string(),
        signed_at: signed_at.to_string(),
    };
    let mut header = Header::new(Algorithm::ES384);
    header.kid = Some(key.kid.clone());
    let signature =
        jsonwebtoken::encode(&header, &claims, &key.encoding).map_err(|e| e.to_string())?;
    Ok(Checkpoint {
        seq,
        head_hash: hash.to_string(),
        signed_at: signed_at.to_string(),
        kid: key.kid.clone(),
        signature,
    })
}

/// Whether a checkpoint's signature is the gateway's, over exactly its fields.
pub fn signature_holds(key: &DecodingKey, cp: &Checkpoint) -> bool {
    let mut validation = Validation::new(Algorithm::ES384);
    validation.validate_exp = false;
    validation.required_spec_claims.clear();
    match jsonwebtoken::decode::<CheckpointClaims>(&cp.signature, key, &validation) {
        Ok(data) => {
            data.claims
                == CheckpointClaims {
                    seq: cp.seq,
                    hash: cp.head_hash.clone(),
                    signed_at: cp.signed_at.clone(),
                }
        }
        Err(_) => false,
    }
}

/// Signs the current head with the audit key `key` if it moved since the last checkpoint.
/// Returns the new checkpoint.
pub async fn checkpoint_now(
    store: &dyn Store,
    key: &GatewayKey,
    data_dir: &Path,
    now: &str,
) -> Result<Option<Checkpoint>, StoreError> {
    let Some((seq, hash)) = store.audit_head().await? else {
        return Ok(None);
    };
    let last = store.checkpoints().await?.last().map(|c| c.seq);
    if last.is_some_and(|l| l >= seq) {
        return Ok(None);
    }
    let cp = sign(key, seq, &hash, now).map_err(|e| StoreError::Io(std::io::Error::other(e)))?;
    store.add_checkpoint(cp.clone()).await?;
    let line = FileLine {
        seq: cp.seq,
        head_hash: cp.head_hash.clone(),
        signed_at: cp.signed_at.clone(),
        kid: cp.kid.clone(),
        signature: cp.signature.clone(),
    };
    let mut text =
        serde_json::to_string(&line).map_err(|e| StoreError::Io(std::io::Error::other(e)))?;
    text.push('\n');
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(data_dir.join(CHECKPOINT_FILE))?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    Ok(Some(cp))
}

/// Reads the file copy of the checkpoints (absent file: none).
pub fn read_file(data_dir: &Path) -> Result<Vec<Checkpoint>, String> {
    let path = data_dir.join(CHECKPOINT_FILE);
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Ok(Vec::new());
    };
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, l)| {
            serde_json::from_str::<FileLine>(l)
                .map(|f| Checkpoint {
                    seq: f.seq,
                    head_hash: f.head_hash,
                    signed_at: f.signed_at,
                    kid: f.kid,
                    signature: f.signature,
                })
                .map_err(|e| format!("{} line {}: {e}", path.display(), i + 1))
        })
        .collect()
}
