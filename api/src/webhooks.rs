//! Webhook delivery (issue 13): each enabled endpoint receives the tenant's events it asked
//! for, in log order, signed by the Standard Webhooks 1.0 specification.
//!
//! - **Signing**: `webhook-id` (`msg_<endpoint>_<position>`, the same on every attempt of an
//!   event), `webhook-timestamp` (seconds), `webhook-signature: v1,<base64 HMAC-SHA256 of
//!   "<id>.<timestamp>.<body>">` under the endpoint's `whsec_` secret; during a rotation's grace
//!   period the previous secret signs too (`v1,<new> v1,<old>`). Any of the specification's
//!   libraries verifies it.
//! - **Body**: `{"type": <event type>, "timestamp": <recorded at>, "data": <the event in the
//!   event contract's shape>}`, personal fields omitted (`personalData: WITHHELD`): a receiver
//!   that needs them reads the event with a key that has `events:read_personal`.
//! - **Order and retries**: one event at a time per endpoint, the next only once the previous
//!   was answered 2xx; a failure (non-2xx, timeout, connection error) is tried again after an
//!   exponential backoff with jitter (`CHRONICLE_WEBHOOK_BACKOFF_MS`, doubled per failure,
//!   capped by `CHRONICLE_WEBHOOK_MAX_BACKOFF_MS`), or after the receiver's `Retry-After` if
//!   that is later. After `CHRONICLE_WEBHOOK_MAX_ATTEMPTS` failures in a row the endpoint is
//!   disabled (`WebhookEndpointDisabled`, automatic), and enabling it resumes with the same
//!   event. Each attempt is in the delivery log.
//! - **Limits**: a timeout per request (`CHRONICLE_WEBHOOK_TIMEOUT_MS`), one request in flight
//!   per endpoint, at most [`WebhookSettings::concurrency`] endpoints worked at once, no
//!   redirects followed.
//! - **Checkpoint**: an endpoint's cursor is stored after each delivered event, so a restart
//!   resumes after the last event answered 2xx (an event whose answer was lost in a crash may
//!   come twice: receivers deduplicate by `webhook-id`). Two dispatchers (two API processes)
//!   never work one endpoint at once: each takes a PostgreSQL advisory lock per endpoint.
//! - **Targets**: a URL whose host is (or resolves to) a loopback, private, link-local or
//!   otherwise non-public address is refused, at creation and at each delivery, unless
//!   `CHRONICLE_WEBHOOKS_ALLOW_PRIVATE` is on or Chronicle runs in development mode.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use base64::Engine;
use chronicle_commands::dispatch::Commands;
use chronicle_commands::webhooks::{self as store, Attempt, EndpointRow, LogPoint};
use chronicle_domain::crypto::hmac_sha256;
use chronicle_domain::metadata::{Actor, CommandMetadata};
use chronicle_domain::pii::MasterKey;
use chronicle_projections::contract::{Contract, ContractEvent};
use chronicle_projections::log::{self, Cursor, LogFilter};
use chronicle_projections::wake::Wakeups;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use rand::Rng;
use serde_json::json;
use sqlx::PgPool;
use tokio::sync::watch;

/// How webhooks are delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WebhookSettings {
    /// Failures in a row before an endpoint is disabled.
    pub max_attempts: i32,
    /// The delay after the first failure, doubled per failure (with jitter).
    pub backoff: Duration,
    /// The longest delay between attempts (a `Retry-After` may ask for up to a day).
    pub max_backoff: Duration,
    /// How long one request may take.
    pub timeout: Duration,
    /// Whether targets on private and loopback addresses are allowed (development, tests).
    pub allow_private: bool,
    /// Endpoints worked at once.
    pub concurrency: usize,
    /// How often due endpoints are looked for when nothing wakes the dispatcher.
    pub poll: Duration,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        Self {
            max_attempts: 10,
            backoff: Duration::from_secs(5),
            max_backoff: Duration::from_secs(3_600),
            timeout: Duration::from_secs(10),
            allow_private: false,
            concurrency: 8,
            poll: Duration::from_secs(1),
        }
    }
}

/// The longest `Retry-After` honoured.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(86_400);

/// What one attempt gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub status_code: Option<u16>,
    pub error: Option<String>,
    pub latency_ms: i32,
    pub retry_after: Option<Duration>,
}

impl Outcome {
    /// Whether the receiver took it (2xx).
    pub fn succeeded(&self) -> bool {
        self.status_code.is_some_and(|s| (200..300).contains(&s))
    }
}

/// Why a target URL is refused.
pub fn target_refusal(ip: IpAddr) -> Option<&'static str> {
    let refused = match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
                || (a == 198 && (18..20).contains(&b))
                || a >= 240
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            let embedded = |hi: u16, lo: u16| {
                let [a, b] = hi.to_be_bytes();
                let [c, d] = lo.to_be_bytes();
                target_refusal(IpAddr::V4(std::net::Ipv4Addr::new(a, b, c, d))).is_some()
            };
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                // unique local fc00::/7, link-local fe80::/10, site-local fec0::/10
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80
                || (s[0] & 0xffc0) == 0xfec0
                // IPv4 inside IPv6 (mapped ::ffff:0:0/96, compatible ::/96, NAT64 64:ff9b::/96,
                // 6to4 2002::/16): refused when the IPv4 address is
                || v6.to_ipv4_mapped().is_some_and(|v4| target_refusal(IpAddr::V4(v4)).is_some())
                || (s[..6] == [0; 6] && embedded(s[6], s[7]))
                || (s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] && embedded(s[6], s[7]))
                || (s[0] == 0x2002 && embedded(s[1], s[2]))
        }
    };
    refused.then_some("a private, loopback or otherwise non-public address")
}

/// A resolver that answers only public addresses, so a host that passed [`check_target`]
/// cannot be pointed at a private one between the check and the request (DNS rebinding).
struct PublicOnly;

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        Box::pin(async move {
            let host = name.as_str().to_string();
            let public: Vec<std::net::SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|address| target_refusal(address.ip()).is_none())
                .collect();
            if public.is_empty() {
                return Err(format!("{host} resolves to no public address").into());
            }
            Ok(Box::new(public.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// Checks that `url` may be called: parsed, http(s), and (unless `allow_private`) its host
/// resolving only to public addresses. The refusal says why.
pub async fn check_target(url: &str, allow_private: bool) -> Result<(), String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("not a URL: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err("only http and https URLs are called".into());
    }
    let host = parsed.host_str().ok_or("the URL has no host")?.to_string();
    if allow_private {
        return Ok(());
    }
    let port = parsed.port_or_known_default().unwrap_or(443);
    let host = host.trim_start_matches('[').trim_end_matches(']').to_string();
    let addresses: Vec<IpAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![ip],
        Err(_) => tokio::net::lookup_host((host.as_str(), port))
            .await
            .map_err(|e| format!("{host} does not resolve: {e}"))?
            .map(|a| a.ip())
            .collect(),
    };
    if addresses.is_empty() {
        return Err(format!("{host} does not resolve"));
    }
    for ip in addresses {
        if let Some(why) = target_refusal(ip) {
            return Err(format!("{host} is {why} ({ip})"));
        }
    }
    Ok(())
}

/// The `webhook-signature` header of a message under each secret (raw bytes).
pub fn signature(secrets: &[Vec<u8>], message_id: &str, timestamp: i64, body: &[u8]) -> String {
    let prefix = format!("{message_id}.{timestamp}.");
    secrets
        .iter()
        .map(|secret| {
            let mac = hmac_sha256(secret, &[prefix.as_bytes(), body]);
            format!("v1,{}", base64::engine::general_purpose::STANDARD.encode(mac))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The body of an event's delivery.
pub fn event_body(event: &ContractEvent) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "type": event.event_type,
        "timestamp": event.recorded_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        "data": event,
    }))
    .unwrap_or_default()
}

/// The delay before the attempt after `failures` failures in a row.
fn backoff(settings: &WebhookSettings, failures: i32, retry_after: Option<Duration>) -> Duration {
    let exponent = u32::try_from(failures.saturating_sub(1)).unwrap_or(0).min(20);
    let full = settings
        .backoff
        .saturating_mul(2u32.saturating_pow(exponent))
        .min(settings.max_backoff);
    // Jitter: somewhere in the second half of the delay, so endpoints failing together spread.
    let jittered = full.mul_f64(rand::thread_rng().gen_range(0.5..=1.0));
    match retry_after {
        Some(asked) => jittered.max(asked.min(MAX_RETRY_AFTER)),
        None => jittered,
    }
}

/// `Retry-After` in seconds or as an HTTP date.
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let value = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = DateTime::parse_from_rfc2822(value).ok()?.with_timezone(&Utc);
    (at - Utc::now()).to_std().ok()
}

/// Delivers the tenant's events to their webhook endpoints.
#[derive(Clone)]
pub struct Dispatcher {
    pool: PgPool,
    commands: Commands,
    master: MasterKey,
    wakeups: Wakeups,
    settings: WebhookSettings,
    http: reqwest::Client,
}

impl Dispatcher {
    /// A dispatcher over `pool`, writing through `commands`.
    pub fn new(
        pool: PgPool,
        commands: Commands,
        master: MasterKey,
        wakeups: Wakeups,
        settings: WebhookSettings,
    ) -> Self {
        let mut builder = reqwest::Client::builder()
            .timeout(settings.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("Chronicle-Webhooks/", env!("CARGO_PKG_VERSION")));
        if !settings.allow_private {
            builder = builder.dns_resolver(std::sync::Arc::new(PublicOnly));
        }
        let http = builder.build().unwrap_or_default();
        Self {
            pool,
            commands,
            master,
            wakeups,
            settings,
            http,
        }
    }

    /// The settings it delivers with.
    pub fn settings(&self) -> &WebhookSettings {
        &self.settings
    }

    /// Delivers until `shutdown` turns true: due endpoints are worked whenever an append wakes
    /// the dispatcher, or every `poll`.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut woken = self.wakeups.subscribe();
        loop {
            if *shutdown.borrow() {
                return;
            }
            if let Err(error) = self.work_due().await {
                tracing::warn!(%error, "webhook delivery pass failed; trying again");
            }
            tokio::select! {
                _ = shutdown.changed() => {}
                _ = woken.wait(None, self.settings.poll) => {}
            }
        }
    }

    /// Works every endpoint due now, a few at a time.
    pub async fn work_due(&self) -> Result<(), sqlx::Error> {
        let now = Utc::now();
        let mut after: Option<String> = None;
        loop {
            let due = store::due(&self.pool, now, after.as_deref(), 200).await?;
            let Some(last) = due.last() else { return Ok(()) };
            after = Some(last.endpoint_id.clone());
            futures::stream::iter(due)
                .for_each_concurrent(self.settings.concurrency, |endpoint| async move {
                    let id = endpoint.endpoint_id.clone();
                    if let Err(error) = self.work(endpoint).await {
                        tracing::warn!(%error, webhook.id = %id, "webhook delivery failed");
                    }
                })
                .await;
        }
    }

    /// Delivers an endpoint's pending events in order, until it is caught up or an attempt
    /// fails, holding the endpoint's advisory lock. The lock is a transaction's
    /// (`pg_try_advisory_xact_lock`): it goes with the transaction whatever happens to this
    /// future, and a transaction that writes nothing takes no transaction id, so it holds no
    /// reader of the log back.
    async fn work(&self, endpoint: EndpointRow) -> Result<(), anyhow::Error> {
        let mut lock = self.pool.begin().await?;
        let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock(hashtext($1))")
            .bind(format!("chronicle-webhook:{}", endpoint.endpoint_id))
            .fetch_one(&mut *lock)
            .await?;
        if !locked {
            return Ok(());
        }
        let result = self.work_locked(&endpoint).await;
        lock.rollback().await?;
        result
    }

    async fn work_locked(&self, endpoint: &EndpointRow) -> Result<(), anyhow::Error> {
        const BATCH: i64 = 20;
        // The row as it is now (another dispatcher may have moved it since it was listed).
        let Some(mut current) = store::endpoint(&self.pool, &endpoint.tenant, &endpoint.endpoint_id).await? else {
            return Ok(());
        };
        let filter = LogFilter::tenant(current.tenant.as_str()).with_types(current.event_types.clone());
        let mut contract = Contract::new(self.pool.clone(), current.tenant.clone(), None, false);
        loop {
            if !current.enabled || current.next_attempt_at.is_some_and(|t| t > Utc::now()) {
                return Ok(());
            }
            // Taken before the read: every wanted event up to it is in a read that comes back
            // short, so the checkpoint may then pass the unwanted events up to it.
            let head = log::head(&self.pool, &LogFilter::tenant(current.tenant.as_str())).await?;
            let after = Cursor::new(current.cursor.tx_id, current.cursor.position);
            let batch = log::read_after(&self.pool, after, &filter, BATCH).await?;
            let caught_up = (batch.len() as i64) < BATCH;
            for event in batch {
                // Disabled or deleted meanwhile: not one more event.
                match store::endpoint(&self.pool, &current.tenant, &current.endpoint_id).await? {
                    Some(row) if row.enabled && row.cursor == current.cursor => current = row,
                    _ => return Ok(()),
                }
                let point = LogPoint {
                    tx_id: event.cursor.tx_id,
                    position: event.cursor.position,
                };
                let shaped = contract.shape(event).await?;
                let message_id = format!("msg_{}_{}", current.endpoint_id, shaped.position);
                let outcome = self.send(&current, &message_id, &event_body(&shaped)).await;
                let attempt = current.failures + 1;
                store::record_attempt(
                    &self.pool,
                    &Attempt {
                        endpoint_id: current.endpoint_id.clone(),
                        tenant: current.tenant.clone(),
                        message_id,
                        event_type: shaped.event_type.clone(),
                        event: Some((point, shaped.cursor.clone())),
                        attempt,
                        manual: false,
                        status_code: outcome.status_code,
                        error: outcome.error.clone(),
                        latency_ms: outcome.latency_ms,
                        succeeded: outcome.succeeded(),
                    },
                )
                .await?;
                if outcome.succeeded() {
                    if !store::advance(&self.pool, &current.endpoint_id, current.cursor, point).await? {
                        return Ok(());
                    }
                    current.cursor = point;
                    current.failures = 0;
                    continue;
                }
                if attempt >= self.settings.max_attempts {
                    let reason = format!(
                        "{attempt} failed attempts in a row; the last: {}",
                        outcome
                            .error
                            .clone()
                            .or(outcome.status_code.map(|s| format!("HTTP {s}")))
                            .unwrap_or_default()
                    );
                    store::failed(&self.pool, &current.endpoint_id, attempt, Utc::now()).await?;
                    self.commands
                        .disable_webhook(&current.endpoint_id, &reason, true, &system(&current))
                        .await?;
                    tracing::warn!(webhook.id = %current.endpoint_id, tenant.id = %current.tenant, attempts = attempt,
                        "webhook endpoint disabled after persistent failure");
                } else {
                    let delay = backoff(&self.settings, attempt, outcome.retry_after);
                    let next = Utc::now() + chrono::Duration::from_std(delay).unwrap_or_default();
                    store::failed(&self.pool, &current.endpoint_id, attempt, next).await?;
                }
                return Ok(());
            }
            if caught_up {
                if let Some(head) = head {
                    let head = LogPoint {
                        tx_id: head.tx_id,
                        position: head.position,
                    };
                    if head > current.cursor {
                        store::advance(&self.pool, &current.endpoint_id, current.cursor, head).await?;
                    }
                }
                return Ok(());
            }
            match store::endpoint(&self.pool, &current.tenant, &current.endpoint_id).await? {
                Some(row) => current = row,
                None => return Ok(()),
            }
        }
    }

    /// Sends one message to `endpoint`, signed with its current secrets; never fails: a
    /// refused target, a connection error or a timeout is an outcome with an error.
    pub async fn send(&self, endpoint: &EndpointRow, message_id: &str, body: &[u8]) -> Outcome {
        let started = Instant::now();
        let elapsed = |started: Instant| i32::try_from(started.elapsed().as_millis()).unwrap_or(i32::MAX);
        let failure = |error: String, started: Instant| Outcome {
            status_code: None,
            error: Some(error),
            latency_ms: elapsed(started),
            retry_after: None,
        };
        if let Err(why) = check_target(&endpoint.url, self.settings.allow_private).await {
            return failure(format!("target refused: {why}"), started);
        }
        let secrets = match store::signing_secrets(
            &self.pool,
            &self.master,
            &endpoint.tenant,
            &endpoint.endpoint_id,
            Utc::now(),
        )
        .await
        {
            Ok(secrets) => secrets,
            Err(e) => return failure(format!("the endpoint's secret could not be opened: {e}"), started),
        };
        let timestamp = Utc::now().timestamp();
        let request = self
            .http
            .post(&endpoint.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("webhook-id", message_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature(&secrets, message_id, timestamp, body))
            .body(body.to_vec());
        match request.send().await {
            Ok(response) => Outcome {
                status_code: Some(response.status().as_u16()),
                error: (!response.status().is_success()).then(|| format!("HTTP {}", response.status().as_u16())),
                retry_after: retry_after(response.headers()),
                latency_ms: elapsed(started),
            },
            Err(e) if e.is_timeout() => failure(format!("no answer within {:?}", self.settings.timeout), started),
            Err(e) => failure(format!("could not connect: {e}"), started),
        }
    }

    /// Sends `body` to `endpoint` now, outside its queue (a test message or a redelivery), and
    /// records the attempt as manual.
    pub async fn send_now(
        &self,
        endpoint: &EndpointRow,
        message_id: &str,
        event_type: &str,
        event: Option<(LogPoint, String)>,
        body: &[u8],
    ) -> Result<Outcome, sqlx::Error> {
        let outcome = self.send(endpoint, message_id, body).await;
        store::record_attempt(
            &self.pool,
            &Attempt {
                endpoint_id: endpoint.endpoint_id.clone(),
                tenant: endpoint.tenant.clone(),
                message_id: message_id.to_string(),
                event_type: event_type.to_string(),
                event,
                attempt: 1,
                manual: true,
                status_code: outcome.status_code,
                error: outcome.error.clone(),
                latency_ms: outcome.latency_ms,
                succeeded: outcome.succeeded(),
            },
        )
        .await?;
        Ok(outcome)
    }
}

/// The metadata of what the dispatcher itself does (disabling a failing endpoint).
fn system(endpoint: &EndpointRow) -> CommandMetadata {
    let correlation = uuid::Uuid::new_v4().to_string();
    CommandMetadata {
        tenant_id: endpoint.tenant.clone(),
        actor: Actor::System {
            component: "webhooks".into(),
        },
        causation_id: format!("webhook:{}", endpoint.endpoint_id),
        correlation_id: correlation,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_loopback_and_special_addresses_are_refused_and_public_ones_pass() {
        for refused in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::10.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "2002:c0a8:0101::1",
            "fec0::1",
        ] {
            let ip: IpAddr = refused.parse().unwrap_or(IpAddr::from([127, 0, 0, 1]));
            assert!(target_refusal(ip).is_some(), "{refused}");
        }
        for public in ["93.184.216.34", "2606:4700::1111", "8.8.8.8"] {
            let ip: IpAddr = public.parse().unwrap_or(IpAddr::from([127, 0, 0, 1]));
            assert!(target_refusal(ip).is_none(), "{public}");
        }
    }

    #[test]
    fn backoff_doubles_with_jitter_up_to_its_cap_and_honours_a_later_retry_after() {
        let settings = WebhookSettings {
            backoff: Duration::from_secs(10),
            max_backoff: Duration::from_secs(60),
            ..WebhookSettings::default()
        };
        for _ in 0..50 {
            let first = backoff(&settings, 1, None);
            assert!(
                first >= Duration::from_secs(5) && first <= Duration::from_secs(10),
                "{first:?}"
            );
            let third = backoff(&settings, 3, None);
            assert!(
                third >= Duration::from_secs(20) && third <= Duration::from_secs(40),
                "{third:?}"
            );
            let capped = backoff(&settings, 30, None);
            assert!(capped <= Duration::from_secs(60), "{capped:?}");
            assert_eq!(
                backoff(&settings, 1, Some(Duration::from_secs(120))),
                Duration::from_secs(120)
            );
        }
    }

    #[test]
    fn signatures_follow_the_specification_and_carry_every_secret() {
        // The specification's example: secret whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw, id
        // msg_p5jXN8AQM9LWM0D4loKWxJek, timestamp 1614265330, body {"test": 2432232314}.
        let secret = base64::engine::general_purpose::STANDARD
            .decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
            .unwrap_or_default();
        let header = signature(
            std::slice::from_ref(&secret),
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(header, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        let two = signature(&[secret.clone(), secret], "m", 1, b"{}");
        assert_eq!(two.split(' ').count(), 2);
    }
}
