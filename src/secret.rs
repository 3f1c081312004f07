//! Secrets (InfluxDB tokens and passwords, webhook URLs and signing keys): read once from a file
//! or an environment variable, never printed. Also the small encodings credentials need.
//!
//! A relative file name is a systemd credential: it is looked up in `$CREDENTIALS_DIRECTORY`,
//! where `LoadCredential=` puts a copy readable by the service's (dynamic) user alone, so the
//! file on disk can stay readable by root only.

use std::fmt;
use std::path::{Path, PathBuf};

use thiserror::Error;

/// A secret could not be read.
#[derive(Debug, Error)]
#[error("cannot read {what} from {source_name}: {reason}")]
pub struct SecretError {
    pub what: &'static str,
    pub source_name: String,
    pub reason: String,
}

/// A secret that never shows in logs or debug output.
#[derive(Clone)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(…)")
    }
}

/// Reads a secret from the first line of `file`, or from the environment variable `env`;
/// `None` when neither is configured.
pub fn read_secret(
    what: &'static str,
    file: &Option<std::path::PathBuf>,
    env: &Option<String>,
) -> Result<Option<Secret>, SecretError> {
    if let Some(file) = file {
        let credentials = std::env::var_os("CREDENTIALS_DIRECTORY");
        let path = located(file, credentials.as_deref().map(Path::new));
        let text = std::fs::read_to_string(&path).map_err(|e| SecretError {
            what,
            source_name: path.display().to_string(),
            reason: if file.is_relative() && credentials.is_none() {
                format!("{e} (a relative name is a systemd credential, but $CREDENTIALS_DIRECTORY is not set: run under the unit, or give an absolute path)")
            } else {
                e.to_string()
            },
        })?;
        let first = text.lines().next().unwrap_or("").trim().to_string();
        if first.is_empty() {
            return Err(SecretError {
                what,
                source_name: path.display().to_string(),
                reason: "the file is empty".into(),
            });
        }
        return Ok(Some(Secret(first)));
    }
    if let Some(name) = env {
        return match std::env::var(name) {
            Ok(value) if !value.trim().is_empty() => Ok(Some(Secret(value.trim().to_string()))),
            _ => Err(SecretError {
                what,
                source_name: format!("environment variable {name}"),
                reason: "not set or empty".into(),
            }),
        };
    }
    Ok(None)
}

/// Where a secret file is: a relative name in the credentials directory, when there is one.
fn located(file: &Path, credentials: Option<&Path>) -> PathBuf {
    match credentials {
        Some(dir) if file.is_relative() => dir.join(file),
        _ => file.to_path_buf(),
    }
}

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// `Basic …` authorization for a user and password (RFC 7617).
pub fn basic_auth(user: &str, password: &str) -> String {
    format!("Basic {}", base64(format!("{user}:{password}").as_bytes()))
}

/// Standard base64 with padding (RFC 4648).
pub fn base64(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    #[test]
    fn a_relative_name_is_a_credential_of_the_unit() {
        let credentials = Some(Path::new("/run/credentials/retrofit-gateway.service"));
        assert_eq!(
            super::located(Path::new("secret_influx.token"), credentials),
            Path::new("/run/credentials/retrofit-gateway.service/secret_influx.token")
        );
        assert_eq!(
            super::located(Path::new("/etc/retrofit-gateway/influx.token"), credentials),
            Path::new("/etc/retrofit-gateway/influx.token"),
            "an absolute path is a path"
        );
        assert_eq!(
            super::located(Path::new("influx.token"), None),
            Path::new("influx.token")
        );
    }

    #[test]
    fn encodes_the_rfc_7617_example() {
        // RFC 7617 §2: "Aladdin:open sesame".
        assert_eq!(
            super::basic_auth("Aladdin", "open sesame"),
            "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
        );
        assert_eq!(super::base64(b"ab"), "YWI=");
    }

    #[test]
    fn secrets_do_not_show_in_debug_output() {
        use super::Secret;
        let secret = Secret("Token s3cr3t".into());
        assert_eq!(format!("{secret:?}"), "Secret(…)");
    }
}
