//! The `ApiKey` aggregate: a credential for a program (an integrator's sync, a data warehouse,
//! a tenant's own automation), issued by an owner or admin with a role and scopes.
//!
//! Stream id: `<tenant>:key_<id>` (the caller builds it), aggregate type `ApiKey`.
//!
//! The secret itself never enters the log: it is shown once to the issuer and only its hash is
//! kept, beside the log (`commands::api_keys`, decision 0015). The log holds what an auditor
//! needs: who issued which key, with which role, scopes and expiry, and who revoked it.
//!
//! Rules held here:
//! - a name is 1 to 100 characters, not blank;
//! - a key has at least one scope (duplicates are folded; the list is stored sorted);
//! - an expiry, when given, is after the moment of issue;
//! - a stream holds one key: issuing again is refused (`ApiKeyAlreadyIssued`);
//! - only an issued key is revoked (`UnknownApiKey`); revoking a revoked key changes nothing,
//!   so a retried revocation is safe.

mod aggregate;
mod values;

pub use aggregate::{ApiKey, ApiKeyCommand, ApiKeyError, ApiKeyEvent, IssueApiKey};
pub use values::{ApiKeyScope, MAX_KEY_NAME_CHARS};
