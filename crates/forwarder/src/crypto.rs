//! Sealing destination credentials at rest with AES-256-GCM under `CONVRELAY_SECRET_KEY`.
//!
//! A sealed value is `version (1 byte) || nonce (12 bytes) || ciphertext || tag (16 bytes)`. Each
//! seal draws a fresh random nonce from the operating system, and binds the value to where it is
//! stored through the associated data (the workspace and destination ids), so that a sealed blob
//! copied onto another destination's row does not open.

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::Engine;
use uuid::Uuid;

use crate::{Error, Result};

/// Format version of a sealed value.
const VERSION: u8 = 1;
/// Length of an AES-GCM nonce.
const NONCE_LEN: usize = 12;

/// The AEAD that seals and opens credentials. Its `Debug` form never shows the key.
#[derive(Clone)]
pub struct Cipher {
    aead: Aes256Gcm,
}

impl std::fmt::Debug for Cipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Cipher { .. }")
    }
}

impl Cipher {
    /// Reads `CONVRELAY_SECRET_KEY`: 32 bytes written as 64 hex digits or as base64 (standard or
    /// URL-safe alphabet, padded or not). Surrounding whitespace is ignored.
    ///
    /// # Errors
    /// [`Error::InvalidSecretKey`].
    pub fn from_key(raw: &str) -> Result<Self> {
        let raw = raw.trim();
        let bytes = if raw.len() == 64 && raw.bytes().all(|b| b.is_ascii_hexdigit()) {
            hex::decode(raw).map_err(|_| Error::InvalidSecretKey)?
        } else {
            use base64::engine::general_purpose::{
                STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD,
            };
            [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
                .iter()
                .find_map(|engine| engine.decode(raw).ok())
                .ok_or(Error::InvalidSecretKey)?
        };
        let key: [u8; 32] = bytes.try_into().map_err(|_| Error::InvalidSecretKey)?;
        Ok(Self::from_bytes(key))
    }

    /// A cipher from raw key bytes.
    pub fn from_bytes(key: [u8; 32]) -> Self {
        Self {
            aead: Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&key)),
        }
    }

    /// Encrypts `plaintext`, bound to `aad`.
    ///
    /// # Errors
    /// [`Error::Crypto`] (only for inputs of gigabytes).
    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>> {
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let ciphertext = self
            .aead
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .map_err(|_| Error::Crypto)?;
        let mut sealed = Vec::with_capacity(1 + NONCE_LEN + ciphertext.len());
        sealed.push(VERSION);
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(&ciphertext);
        Ok(sealed)
    }

    /// Decrypts what [`Cipher::seal`] made with the same key and `aad`.
    ///
    /// # Errors
    /// [`Error::Crypto`]: another key, another `aad`, or altered bytes.
    pub fn open(&self, sealed: &[u8], aad: &[u8]) -> Result<Vec<u8>> {
        let (&version, rest) = sealed.split_first().ok_or(Error::Crypto)?;
        if version != VERSION || rest.len() < NONCE_LEN {
            return Err(Error::Crypto);
        }
        let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
        self.aead
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad,
                },
            )
            .map_err(|_| Error::Crypto)
    }
}

/// The associated data of a destination's credentials: `workspace_id || destination_id`.
pub fn credentials_aad(workspace_id: Uuid, destination_id: Uuid) -> [u8; 32] {
    let mut aad = [0u8; 32];
    aad[..16].copy_from_slice(workspace_id.as_bytes());
    aad[16..].copy_from_slice(destination_id.as_bytes());
    aad
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX_KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    #[test]
    fn keys_are_read_as_hex_or_base64_and_nothing_else() {
        let from_hex = Cipher::from_key(HEX_KEY).unwrap();
        let b64 = base64::engine::general_purpose::STANDARD.encode(hex::decode(HEX_KEY).unwrap());
        let from_b64 = Cipher::from_key(&format!(" {b64}\n")).unwrap();
        let sealed = from_hex.seal(b"secret", b"aad").unwrap();
        assert_eq!(from_b64.open(&sealed, b"aad").unwrap(), b"secret");
        assert!(matches!(
            Cipher::from_key("short"),
            Err(Error::InvalidSecretKey)
        ));
        assert!(matches!(
            Cipher::from_key(&HEX_KEY[..62]),
            Err(Error::InvalidSecretKey)
        ));
        assert_eq!(format!("{from_hex:?}"), "Cipher { .. }");
    }

    #[test]
    fn every_seal_has_its_own_nonce_and_opens_only_with_its_key_and_aad() {
        let cipher = Cipher::from_key(HEX_KEY).unwrap();
        let a = cipher.seal(b"secret", b"one").unwrap();
        let b = cipher.seal(b"secret", b"one").unwrap();
        assert_ne!(a, b);
        assert_eq!(cipher.open(&a, b"one").unwrap(), b"secret");
        assert!(matches!(cipher.open(&a, b"two"), Err(Error::Crypto)));
        let other = Cipher::from_bytes([7; 32]);
        assert!(matches!(other.open(&a, b"one"), Err(Error::Crypto)));
        let mut altered = a.clone();
        let last = altered.len() - 1;
        altered[last] ^= 1;
        assert!(matches!(cipher.open(&altered, b"one"), Err(Error::Crypto)));
        assert!(matches!(cipher.open(&[], b"one"), Err(Error::Crypto)));
    }
}
