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
    /// A signed-in user proving themselves again (password and code when changing their
    /// second factor).
    User { tenant: String, user_id: String },
}

impl Subject {
    fn key(&self) -> String {
        use sha2::Digest;
        // Hashed: Redis never holds e-mail addresses in the clear.
        let (kind, text) = match self {
            Self::Account { tenant, email } => ("acct", format!("{tenant}\n{}", email.trim().to_lowercase())),
            Self::Address(ip) => ("addr", ip.clone()),
            Self::User { tenant, user_id } => ("user", format!("{tenant}\n{user_id}")),
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
    Memory(Arc<Mutex<Counts>>),
}

/// The in-memory counts, and the size at which forgotten ones are pruned next.
struct Counts {
    counts: HashMap<String, Count>,
    prune_at: usize,
}

impl Default for Counts {
    fn default() -> Self {
        Self {
            counts: HashMap::new(),
            prune_at: PRUNE_FROM,
        }
    }
}

/// The in-memory store prunes forgotten counts from this size on.
const PRUNE_FROM: usize = 10_000;

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

fn ms(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// Checks and counts one subject in Redis, as [`SignInLimiter::attempt`] does in memory.
/// KEYS[1]: the subject; ARGV: now, forget after, free attempts, delay, lock after, lock for
/// (milliseconds and counts), how long to keep the key. Answers the milliseconds still to
/// wait (nothing counted), or 0 (a failure counted).
const RESERVE: &str = r"
local failures = tonumber(redis.call('HGET', KEYS[1], 'failures') or '0')
local last = tonumber(redis.call('HGET', KEYS[1], 'last_ms') or '0')
local now = tonumber(ARGV[1])
if failures > 0 and now - last > tonumber(ARGV[2]) then failures = 0 end
local free, delay, lock_after, lock_for = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local wait = 0
if failures < free then
  wait = 0
elseif failures >= lock_after then
  wait = lock_for
else
  wait = math.min(delay * 2 ^ math.min(failures - free, 20), lock_for)
end
local left = last + wait - now
if failures > 0 and left > 0 then return math.floor(left) end
redis.call('HSET', KEYS[1], 'failures', failures + 1, 'last_ms', now)
redis.call('PEXPIRE', KEYS[1], ARGV[7])
return 0
";

/// Gives one reserved attempt back (the key goes when nothing is left counted).
const REFUND: &str = r"
local failures = tonumber(redis.call('HGET', KEYS[1], 'failures') or '0')
if failures > 1 then
  redis.call('HSET', KEYS[1], 'failures', failures - 1)
else
  redis.call('DEL', KEYS[1])
end
return 0
";

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
        let limits = match subject {
            Subject::Account { .. } | Subject::User { .. } => self.limits,
            Subject::Address(_) => self.limits.for_address(),
        };
        // A lock outlives the hour counts are otherwise kept.
        SignInLimits {
            forget_after: limits.forget_after.max(limits.lock_for),
            ..limits
        }
    }

    /// Reserves an attempt for every subject before the password is checked: when one must
    /// still wait, answers the longest wait and counts nothing; otherwise counts a failure for
    /// each, atomically per subject (a check and an increment in one step: in Redis a script,
    /// in memory one lock), so parallel attempts cannot all slip through on the same count. A
    /// right password gives the reservation back ([`SignInLimiter::refund`],
    /// [`SignInLimiter::succeeded`]).
    pub async fn attempt(&self, subjects: &[Subject]) -> Result<Duration, LimiterUnavailable> {
        let mut reserved: Vec<&Subject> = Vec::new();
        for subject in subjects {
            let left = self.reserve(subject).await?;
            if left > 0 {
                for done in reserved {
                    self.refund(done).await?;
                }
                return Ok(Duration::from_millis(u64::try_from(left).unwrap_or(0)));
            }
            reserved.push(subject);
        }
        Ok(Duration::ZERO)
    }

    /// Checks and counts one subject: the milliseconds it must still wait (nothing counted),
    /// or 0 (one more failure counted, as of now).
    async fn reserve(&self, subject: &Subject) -> Result<i64, LimiterUnavailable> {
        let key = subject.key();
        let limits = self.limits_of(subject);
        let now = now_ms();
        match &self.store {
            Store::Memory(map) => {
                let Ok(mut map) = map.lock() else { return Ok(0) };
                let forget = ms(limits.forget_after);
                // Forgotten counts are pruned when the map has doubled since the last pruning,
                // so the work stays constant per attempt on average.
                if map.counts.len() > map.prune_at {
                    map.counts.retain(|_, c| now - c.last_ms <= forget);
                    map.prune_at = (2 * map.counts.len()).max(PRUNE_FROM);
                }
                let map = &mut map.counts;
                let count = map.entry(key).or_default();
                if count.failures > 0 && now - count.last_ms > forget {
                    *count = Count::default();
                }
                let left = if count.failures == 0 {
                    0
                } else {
                    count.last_ms.saturating_add(ms(limits.wait_after(count.failures))) - now
                };
                if left > 0 {
                    return Ok(left);
                }
                count.failures = count.failures.saturating_add(1);
                count.last_ms = now;
                Ok(0)
            }
            Store::Redis(connection) => {
                let mut connection = connection.clone();
                let left: i64 = redis::cmd("EVAL")
                    .arg(RESERVE)
                    .arg(1)
                    .arg(&key)
                    .arg(now)
                    .arg(ms(limits.forget_after))
                    .arg(limits.free_attempts)
                    .arg(ms(limits.delay))
                    .arg(limits.lock_after)
                    .arg(ms(limits.lock_for))
                    .arg(ms(limits.forget_after))
                    .query_async(&mut connection)
                    .await?;
                Ok(left)
            }
        }
    }

    /// Gives one reserved attempt back (the password was right).
    pub async fn refund(&self, subject: &Subject) -> Result<(), LimiterUnavailable> {
        let key = subject.key();
        match &self.store {
            Store::Memory(map) => {
                if let Ok(mut map) = map.lock() {
                    if let Some(count) = map.counts.get_mut(&key) {
                        count.failures = count.failures.saturating_sub(1);
                        if count.failures == 0 {
                            map.counts.remove(&key);
                        }
                    }
                }
            }
            Store::Redis(connection) => {
                let mut connection = connection.clone();
                redis::cmd("EVAL")
                    .arg(REFUND)
                    .arg(1)
                    .arg(&key)
                    .query_async::<()>(&mut connection)
                    .await?;
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
                    map.counts.remove(&key);
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
    async fn the_memory_store_reserves_attempts_paces_an_account_and_a_success_clears_it() {
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
        // The first attempt is free and reserved; the next must wait a minute.
        assert_eq!(
            limiter.attempt(std::slice::from_ref(&account)).await.ok(),
            Some(Duration::ZERO)
        );
        let wait = limiter.attempt(std::slice::from_ref(&same)).await.unwrap_or_default();
        assert!(wait > Duration::from_secs(59), "{wait:?}");
        // A refund (the password was right) frees it again.
        assert!(limiter.refund(&same).await.is_ok());
        assert_eq!(
            limiter.attempt(std::slice::from_ref(&same)).await.ok(),
            Some(Duration::ZERO)
        );
        assert!(limiter.succeeded(&same).await.is_ok());
        assert_eq!(limiter.attempt(&[account]).await.ok(), Some(Duration::ZERO));
    }

    #[tokio::test]
    async fn parallel_attempts_cannot_slip_through_on_the_same_count() {
        let limits = SignInLimits {
            free_attempts: 3,
            delay: Duration::from_secs(60),
            ..SignInLimits::default()
        };
        let limiter = SignInLimiter::new(limits, None);
        let account = Subject::Account {
            tenant: "acme".into(),
            email: "a@example.com".into(),
        };
        let attempts: Vec<_> = (0..20)
            .map(|_| {
                let (limiter, account) = (limiter.clone(), account.clone());
                tokio::spawn(async move { limiter.attempt(&[account]).await.ok() })
            })
            .collect();
        let mut through = 0;
        for attempt in attempts {
            if attempt.await.ok().flatten() == Some(Duration::ZERO) {
                through += 1;
            }
        }
        // The three free ones, not twenty: the fourth already finds the last failure too recent.
        assert_eq!(through, 3);
    }
}
