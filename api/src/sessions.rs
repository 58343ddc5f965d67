//! Sessions' settings and the sign-in limiter (issue 14).
//!
//! Failed sign-ins are counted per account (tenant and e-mail, whether or not the account
//! exists, so an unknown e-mail is limited exactly like a known one) and per client address.
//! The first [`SignInLimits::free_attempts`] failures cost nothing; after them each attempt
//! must wait a delay that doubles per failure (`delay`, `2 × delay`, `4 × delay`, …), and
//! after [`SignInLimits::lock_after`] failures the account (or address) is locked for
//! [`SignInLimits::lock_for`]. An attempt made too early is refused without checking the
//! password (`TOO_MANY_SIGN_IN_ATTEMPTS`, 429 with `Retry-After`), so guessing is paced by
//! the server whatever the client does. A success clears the account's count. Counts fade
//! [`SignInLimits::forget_after`] after the last failure.
//!
//! With Redis configured the counts live there (every API process shares them); without, in
//! this process's memory.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long sessions last.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionSettings {
    /// An access token's life (`CHRONICLE_ACCESS_TOKEN_TTL_SECS`, default 10 minutes): also how
    /// long a deactivated user's last token keeps working.
    pub access_ttl: Duration,
    /// A refresh token's life (`CHRONICLE_REFRESH_TOKEN_TTL_SECS`, default 30 days); each
    /// refresh issues a new one with a fresh life.
    pub refresh_ttl: Duration,
    /// The longest token `chronicle admin mint-token` mints.
    pub max_minted_ttl: Duration,
    pub limits: SignInLimits,
    /// The header a proxy in front puts the client's address in (`CHRONICLE_CLIENT_IP_HEADER`,
    /// e.g. `x-forwarded-for`; its last entry is read); unset, the TCP peer's address counts.
    pub client_ip_header: Option<String>,
}

impl Default for SessionSettings {
    fn default() -> Self {
        Self {
            access_ttl: Duration::from_secs(600),
            refresh_ttl: Duration::from_secs(30 * 86_400),
            max_minted_ttl: Duration::from_secs(7 * 86_400),
            limits: SignInLimits::default(),
            client_ip_header: None,
        }
    }
}

/// How failed sign-ins are paced (per account; a client address gets
/// [`ADDRESS_FACTOR`] times as many before the same pacing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignInLimits {
    /// Failures that cost nothing (`CHRONICLE_SIGN_IN_FREE_ATTEMPTS`, default 3).
    pub free_attempts: u32,
    /// The wait after the first failure beyond the free ones, doubled per failure
    /// (`CHRONICLE_SIGN_IN_DELAY_MS`, default 1 s).
    pub delay: Duration,
    /// Failures after which the account is locked (`CHRONICLE_SIGN_IN_LOCK_AFTER`, default 10).
    pub lock_after: u32,
    /// How long a lock lasts (`CHRONICLE_SIGN_IN_LOCK_SECS`, default 15 minutes).
    pub lock_for: Duration,
    /// Counts are forgotten this long after the last failure (1 hour).
    pub forget_after: Duration,
}

impl Default for SignInLimits {
    fn default() -> Self {
        Self {
            free_attempts: 3,
            delay: Duration::from_secs(1),
            lock_after: 10,
            lock_for: Duration::from_secs(900),
            forget_after: Duration::from_secs(3600),
        }
    }
}

/// A client address may fail this many times more often than one account before it is paced.
pub const ADDRESS_FACTOR: u32 = 5;

impl SignInLimits {
    /// How long after the last of `failures` failures the next attempt must wait.
    pub fn wait_after(&self, failures: u32) -> Duration {
        if failures < self.free_attempts {
            Duration::ZERO
        } else if failures >= self.lock_after {
            self.lock_for
        } else {
            let doublings = (failures - self.free_attempts).min(20);
            self.delay.saturating_mul(1 << doublings).min(self.lock_for)
        }
    }

    fn for_address(&self) -> Self {
        Self {
            free_attempts: self.free_attempts.saturating_mul(ADDRESS_FACTOR),
            lock_after: self.lock_after.saturating_mul(ADDRESS_FACTOR),
            ..*self
        }
    }
}

/// What is counted: an account or an address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Subject {
    /// Tenant and lower-cased e-mail.
    Account { tenant: String, email: String },
    /// The client's IP address.
    Address(String),
}

impl Subject {
    fn key(&self) -> String {
        use sha2::Digest;
        // Hashed: Redis never holds e-mail addresses in the clear.
        let (kind, text) = match self {
            Self::Account { tenant, email } => ("acct", format!("{tenant}\n{}", email.trim().to_lowercase())),
            Self::Address(ip) => ("addr", ip.clone()),
        };
        format!(
            "chronicle:sign-in:{kind}:{}",
            hex::encode(&sha2::Sha256::digest(text)[..16])
        )
    }
}

/// Failures of one subject.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Count {
    failures: u32,
    /// Milliseconds since the epoch of the last failure.
    last_ms: i64,
}

/// Counts failed sign-ins and says when the next attempt may come.
#[derive(Clone)]
pub struct SignInLimiter {
    limits: SignInLimits,
    store: Store,
}

#[derive(Clone)]
enum Store {
    Redis(redis::aio::ConnectionManager),
    Memory(Arc<Mutex<HashMap<String, Count>>>),
}

impl std::fmt::Debug for SignInLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let store = match self.store {
            Store::Redis(_) => "redis",
            Store::Memory(_) => "memory",
        };
        f.debug_struct("SignInLimiter")
            .field("limits", &self.limits)
            .field("store", &store)
            .finish()
    }
}

/// Redis did not answer: sign-in is refused rather than left unlimited.
#[derive(Debug, thiserror::Error)]
#[error("the sign-in limiter cannot reach Redis: {0}")]
pub struct LimiterUnavailable(#[from] redis::RedisError);

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl SignInLimiter {
    /// A limiter keeping its counts in Redis when given, else in memory.
    pub fn new(limits: SignInLimits, redis: Option<redis::aio::ConnectionManager>) -> Self {
        let store = match redis {
            Some(connection) => Store::Redis(connection),
            None => Store::Memory(Arc::default()),
        };
        Self { limits, store }
    }

    fn limits_of(&self, subject: &Subject) -> SignInLimits {
        match subject {
            Subject::Account { .. } => self.limits,
            Subject::Address(_) => self.limits.for_address(),
        }
    }

    async fn count(&self, key: &str) -> Result<Count, LimiterUnavailable> {
        match &self.store {
            Store::Memory(map) => Ok(map
                .lock()
                .map(|m| m.get(key).copied().unwrap_or_default())
                .unwrap_or_default()),
            Store::Redis(connection) => {
                let mut connection = connection.clone();
                let (failures, last_ms): (Option<u32>, Option<i64>) = redis::cmd("HMGET")
                    .arg(key)
                    .arg("failures")
                    .arg("last_ms")
                    .query_async(&mut connection)
                    .await?;
                Ok(Count {
                    failures: failures.unwrap_or(0),
                    last_ms: last_ms.unwrap_or(0),
                })
            }
        }
    }

    /// How long the subjects must still wait before an attempt; zero when it may go ahead.
    pub async fn wait(&self, subjects: &[Subject]) -> Result<Duration, LimiterUnavailable> {
        let now = now_ms();
        let mut longest = Duration::ZERO;
        for subject in subjects {
            let count = self.count(&subject.key()).await?;
            let limits = self.limits_of(subject);
            let forgotten = now - count.last_ms > i64::try_from(limits.forget_after.as_millis()).unwrap_or(i64::MAX);
            if count.failures == 0 || forgotten {
                continue;
            }
            let wait_ms = i64::try_from(limits.wait_after(count.failures).as_millis()).unwrap_or(i64::MAX);
            let left = count.last_ms.saturating_add(wait_ms) - now;
            if left > 0 {
                longest = longest.max(Duration::from_millis(u64::try_from(left).unwrap_or(0)));
            }
        }
        Ok(longest)
    }

    /// Counts a failure of each subject.
    pub async fn failed(&self, subjects: &[Subject]) -> Result<(), LimiterUnavailable> {
        let now = now_ms();
        for subject in subjects {
            let key = subject.key();
            let limits = self.limits_of(subject);
            let keep = limits.forget_after.max(limits.lock_for);
            match &self.store {
                Store::Memory(map) => {
                    if let Ok(mut map) = map.lock() {
                        let forget_ms = i64::try_from(limits.forget_after.as_millis()).unwrap_or(i64::MAX);
                        map.retain(|_, c| now - c.last_ms <= forget_ms.max(1));
                        let count = map.entry(key).or_default();
                        count.failures = count.failures.saturating_add(1);
                        count.last_ms = now;
                    }
                }
                Store::Redis(connection) => {
                    let mut connection = connection.clone();
                    redis::pipe()
                        .atomic()
                        .cmd("HINCRBY")
                        .arg(&key)
                        .arg("failures")
                        .arg(1)
                        .ignore()
                        .cmd("HSET")
                        .arg(&key)
                        .arg("last_ms")
                        .arg(now)
                        .ignore()
                        .cmd("PEXPIRE")
                        .arg(&key)
                        .arg(u64::try_from(keep.as_millis()).unwrap_or(u64::MAX))
                        .ignore()
                        .query_async::<()>(&mut connection)
                        .await?;
                }
            }
        }
        Ok(())
    }

    /// Clears a subject's count (a successful sign-in clears its account's).
    pub async fn succeeded(&self, subject: &Subject) -> Result<(), LimiterUnavailable> {
        let key = subject.key();
        match &self.store {
            Store::Memory(map) => {
                if let Ok(mut map) = map.lock() {
                    map.remove(&key);
                }
            }
            Store::Redis(connection) => {
                let mut connection = connection.clone();
                redis::cmd("DEL").arg(&key).query_async::<()>(&mut connection).await?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_are_free_then_double_then_lock() {
        let limits = SignInLimits {
            free_attempts: 3,
            delay: Duration::from_secs(1),
            lock_after: 6,
            lock_for: Duration::from_secs(900),
            forget_after: Duration::from_secs(3600),
        };
        let waits: Vec<u64> = (0..8).map(|f| limits.wait_after(f).as_secs()).collect();
        assert_eq!(waits, [0, 0, 0, 1, 2, 4, 900, 900]);
        let address = limits.for_address();
        assert_eq!(address.wait_after(14).as_secs(), 0);
        assert_eq!(address.wait_after(15).as_secs(), 1);
    }

    #[tokio::test]
    async fn the_memory_store_paces_an_account_and_a_success_clears_it() {
        let limits = SignInLimits {
            free_attempts: 1,
            delay: Duration::from_secs(60),
            ..SignInLimits::default()
        };
        let limiter = SignInLimiter::new(limits, None);
        let account = Subject::Account {
            tenant: "acme".into(),
            email: "A@example.com".into(),
        };
        let same = Subject::Account {
            tenant: "acme".into(),
            email: "a@example.com ".into(),
        };
        assert_eq!(
            limiter.wait(std::slice::from_ref(&account)).await.ok(),
            Some(Duration::ZERO)
        );
        assert!(limiter.failed(std::slice::from_ref(&account)).await.is_ok());
        let wait = limiter.wait(std::slice::from_ref(&same)).await.unwrap_or_default();
        assert!(wait > Duration::from_secs(59), "{wait:?}");
        assert!(limiter.succeeded(&same).await.is_ok());
        assert_eq!(limiter.wait(&[account]).await.ok(), Some(Duration::ZERO));
    }
}
