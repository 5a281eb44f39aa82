//! Secrets at rest and fresh secrets: AES-256-GCM sealing with key ids
//! (the `SecretCipher` port) and the OS CSPRNG (the `SecretSource` port).

mod keyring;
mod random;
mod recovery;

pub use keyring::{AesGcmCipher, KeyringError, seal_unbound_for_tests};
pub use random::{OsSecrets, generate_key_line};
