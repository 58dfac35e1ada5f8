//! Bearer tokens with scopes. The tokens file holds one token per line,
//! `NAME SCOPE[,SCOPE...] sha256:HEX`, where HEX is the SHA-256 of the
//! token: the server never keeps a token it could leak, and a token is
//! checked by hashing what the client sent and comparing digests in
//! constant time.

use std::fmt;
use std::path::Path;

use sha2::{Digest, Sha256};

/// What a token lets its holder do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Send alerts and findings.
    Ingest,
    /// Read alerts, findings and the graph.
    Read,
    /// Everything, including what later administration endpoints offer.
    Admin,
}

impl Scope {
    pub fn parse(text: &str) -> Option<Scope> {
        Some(match text {
            "ingest" => Scope::Ingest,
            "read" => Scope::Read,
            "admin" => Scope::Admin,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Ingest => "ingest",
            Scope::Read => "read",
            Scope::Admin => "admin",
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenEntry {
    pub name: String,
    pub scopes: Vec<Scope>,
    digest: [u8; 32],
}

/// The tokens the server accepts; empty means authentication is off
/// (allowed only on a loopback listener).
#[derive(Clone, Debug, Default)]
pub struct Tokens {
    entries: Vec<TokenEntry>,
}

#[derive(Debug, thiserror::Error)]
pub enum TokensError {
    #[error("{path}: {reason}")]
    Read { path: String, reason: String },
    #[error("{path}:{line}: {reason}")]
    Line {
        path: String,
        line: usize,
        reason: String,
    },
}

/// Why a request was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// No bearer token, or one the server does not know: 401.
    Unauthenticated,
    /// A known token without the scope the endpoint needs: 403.
    Forbidden,
}

impl Tokens {
    pub fn load(path: &Path) -> Result<Tokens, TokensError> {
        let text = std::fs::read_to_string(path).map_err(|e| TokensError::Read {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        Tokens::parse(&text).map_err(|(line, reason)| TokensError::Line {
            path: path.display().to_string(),
            line,
            reason,
        })
    }

    /// Parses a tokens file; the error gives the 1-based line.
    pub fn parse(text: &str) -> Result<Tokens, (usize, String)> {
        let mut entries = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            entries.push(parse_entry(line).map_err(|reason| (n + 1, reason))?);
        }
        Ok(Tokens { entries })
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Who holds `token`, if it is known and may act in `scope`. Every
    /// entry is compared, so the time taken does not tell which one
    /// matched or how much of a digest did.
    pub fn authorize(&self, token: Option<&str>, scope: Scope) -> Result<&str, Refusal> {
        let Some(token) = token else {
            return Err(Refusal::Unauthenticated);
        };
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut holder = None;
        for entry in &self.entries {
            if constant_time_eq(&entry.digest, &digest) {
                holder = Some(entry);
            }
        }
        let entry = holder.ok_or(Refusal::Unauthenticated)?;
        if entry.scopes.contains(&scope) || entry.scopes.contains(&Scope::Admin) {
            Ok(&entry.name)
        } else {
            Err(Refusal::Forbidden)
        }
    }
}

fn parse_entry(line: &str) -> Result<TokenEntry, String> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    let [name, scopes, hash] = fields[..] else {
        return Err("expected `NAME SCOPE[,SCOPE] sha256:HEX`".into());
    };
    let scopes = scopes
        .split(',')
        .map(|s| {
            Scope::parse(s).ok_or_else(|| format!("unknown scope `{s}` (ingest, read, admin)"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let hex = hash
        .strip_prefix("sha256:")
        .ok_or("the digest must start with `sha256:`")?;
    let digest = decode_hex(hex).ok_or("the digest must be 64 hex digits")?;
    Ok(TokenEntry {
        name: name.to_string(),
        scopes,
        digest,
    })
}

fn decode_hex(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 || !hex.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// Compares without an early exit on the first difference.
fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    // black_box keeps the optimiser from turning the fold back into a
    // comparison that stops early.
    std::hint::black_box(diff) == 0
}

/// A new random token (from the kernel's CSPRNG) and the line that
/// grants it `scopes` in a tokens file.
pub fn new_token(name: &str, scopes: &[Scope]) -> std::io::Result<(String, String)> {
    if name.is_empty() || name.contains(char::is_whitespace) {
        return Err(std::io::Error::other("a token name is one word"));
    }
    let mut random = [0u8; 32];
    use std::io::Read;
    std::fs::File::open("/dev/urandom")?.read_exact(&mut random)?;
    let token = format!("pal_{}", hex(&random));
    let scopes: Vec<&str> = scopes.iter().map(|s| s.as_str()).collect();
    let line = format!(
        "{name} {} sha256:{}",
        scopes.join(","),
        hex(&Sha256::digest(token.as_bytes()))
    );
    Ok((token, line))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_token_is_accepted_in_its_scopes_only() {
        let (token, line) = new_token("node-a", &[Scope::Ingest]).unwrap();
        let tokens = Tokens::parse(&format!("# agents\n{line}\n")).unwrap();
        assert_eq!(tokens.authorize(Some(&token), Scope::Ingest), Ok("node-a"));
        assert_eq!(
            tokens.authorize(Some(&token), Scope::Read),
            Err(Refusal::Forbidden)
        );
        assert_eq!(
            tokens.authorize(Some("pal_wrong"), Scope::Ingest),
            Err(Refusal::Unauthenticated)
        );
        assert_eq!(
            tokens.authorize(None, Scope::Ingest),
            Err(Refusal::Unauthenticated)
        );
        assert!(!line.contains(&token), "the file never holds the token");
    }

    #[test]
    fn admin_may_do_everything() {
        let (token, line) = new_token("ops", &[Scope::Admin]).unwrap();
        let tokens = Tokens::parse(&line).unwrap();
        assert!(tokens.authorize(Some(&token), Scope::Read).is_ok());
        assert!(tokens.authorize(Some(&token), Scope::Ingest).is_ok());
    }

    #[test]
    fn bad_lines_are_reported_with_their_number() {
        for (text, reason) in [
            ("a ingest\n", "expected"),
            ("a write sha256:00\n", "unknown scope `write`"),
            ("a read md5:00\n", "must start with `sha256:`"),
            ("a read sha256:zz\n", "64 hex digits"),
        ] {
            let (line, why) = Tokens::parse(&format!("# c\n{text}")).unwrap_err();
            assert_eq!(line, 2, "{text}");
            assert!(why.contains(reason), "{text}: {why}");
        }
        assert!(new_token("two words", &[Scope::Read]).is_err());
    }
}
