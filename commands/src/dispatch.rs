//! Tenant-scoped command dispatch over cqrs-es and postgres-es.
//!
//! Every command runs with its [`CommandMetadata`]; the stream id is always built from the
//! metadata's tenant, so no command can write another tenant's stream. A write conflict (two
//! commands on one stream at once, caught by the primary key) is retried a bounded number of
//! times, then reported as [`CommandError::Conflict`], never as a server error.

use std::time::{Duration, Instant};

use chronicle_domain::api_key::{ApiKey, ApiKeyCommand};
use chronicle_domain::call::{AutomationRules, AutomationRulesCommand, Call, CallCommand};
use chronicle_domain::campaign::{Campaign, CampaignCommand};
use chronicle_domain::contact::{Contact, ContactCommand};
use chronicle_domain::conversation::{Conversation, ConversationCommand};
use chronicle_domain::installation::{
    ClaimCommand, MaintenanceCommand, MaintenanceContract, ServiceCommand, ServiceRequest, WarrantyClaim,
};
use chronicle_domain::installation::{
    InstallationCommand, InstallationRecord, Order, OrderCommand, Payout, PayoutCommand,
};
use chronicle_domain::installation::{Warranty, WarrantyCommand};
use chronicle_domain::lead::{Lead, LeadCommand};
use chronicle_domain::media::{Media, MediaCommand};
use chronicle_domain::metadata::CommandMetadata;
use chronicle_domain::payment::{Payment, PaymentCommand};
use chronicle_domain::payment_provider::{PaymentProviderCommand, PaymentProviderConfig};
use chronicle_domain::payment_request::{PaymentRequest, PaymentRequestCommand};
use chronicle_domain::template::{Template, TemplateCommand};
use chronicle_domain::tenant::TenantId;
use chronicle_domain::user::{User, UserCommand};
use chronicle_domain::wallet::{Wallet, WalletCommand};
use chronicle_domain::webhook::{WebhookCommand, WebhookEndpoint};
use cqrs_es::{Aggregate, AggregateError};
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};
use sqlx::PgPool;
use tracing::Instrument;

use crate::announce::{Announcer, LocalWake};
use crate::committer::GroupCommitter;
use crate::error::{CommandError, DomainError};
use crate::store::DEFAULT_CACHE_CAPACITY;

/// How many times a conflicting command is retried before it is reported as a conflict. A
/// conflict means another command on the stream committed; with N commands racing on one
/// stream, one can lose at most N-1 times, so this covers bursts of 11 on one conversation.
pub const CONFLICT_RETRIES: u32 = 10;

/// One aggregate type's store (load, decide, append, cache).
type Framework<A> = crate::store::Store<A>;

/// What a command appended: its stream and the log positions (`global_position`) of its
/// events, in order; none when the aggregate decided that nothing happens (a repeat).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Appended {
    pub stream: String,
    pub positions: Vec<i64>,
}

impl Appended {
    /// The position of the last event appended, if any.
    pub fn last_position(&self) -> Option<i64> {
        self.positions.last().copied()
    }
}

/// Snapshot settings per aggregate: `Some(n)` takes a snapshot every `n` events.
#[derive(Debug, Clone, Copy)]
pub struct SnapshotPolicy {
    pub conversation: Option<usize>,
    pub wallet: Option<usize>,
}

impl Default for SnapshotPolicy {
    /// Conversations can grow long (busy support threads) and so can wallets (one debit per
    /// billable action): snapshot both every 100 events.
    fn default() -> Self {
        Self {
            conversation: Some(100),
            wallet: Some(100),
        }
    }
}

/// Counters and timings of commands, registered in the server's Prometheus registry.
#[derive(Clone, Debug)]
pub struct CommandMetrics {
    commands: IntCounterVec,
    duration: HistogramVec,
}

impl CommandMetrics {
    /// Registers `chronicle_commands_total{aggregate,outcome}` and
    /// `chronicle_command_duration_seconds{aggregate}`.
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let commands = IntCounterVec::new(
            Opts::new(
                "chronicle_commands_total",
                "Commands executed, by aggregate and outcome (appended, refused, conflict, failed).",
            ),
            &["aggregate", "outcome"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "chronicle_command_duration_seconds",
                "Time to load, decide and append one command.",
            )
            .buckets(vec![0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5]),
            &["aggregate"],
        )?;
        registry.register(Box::new(commands.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        Ok(Self { commands, duration })
    }

    fn unregistered() -> Self {
        let registry = Registry::new();
        // A fresh registry has no collectors, so registering cannot collide.
        Self::register(&registry).unwrap_or_else(|e| unreachable!("fresh registry: {e}"))
    }
}

/// The write side's entry point.
#[derive(Clone)]
pub struct Commands {
    pool: PgPool,
    conversations: std::sync::Arc<Framework<Conversation>>,
    contacts: std::sync::Arc<Framework<Contact>>,
    templates: std::sync::Arc<Framework<Template>>,
    leads: std::sync::Arc<Framework<Lead>>,
    calls: std::sync::Arc<Framework<Call>>,
    automation: std::sync::Arc<Framework<AutomationRules>>,
    media: std::sync::Arc<Framework<Media>>,
    wallets: std::sync::Arc<Framework<Wallet>>,
    orders: std::sync::Arc<Framework<Order>>,
    installations: std::sync::Arc<Framework<InstallationRecord>>,
    payouts: std::sync::Arc<Framework<Payout>>,
    campaigns: std::sync::Arc<Framework<Campaign>>,
    payments: std::sync::Arc<Framework<Payment>>,
    payment_requests: std::sync::Arc<Framework<PaymentRequest>>,
    payment_providers: std::sync::Arc<Framework<PaymentProviderConfig>>,
    warranties: std::sync::Arc<Framework<Warranty>>,
    claims: std::sync::Arc<Framework<WarrantyClaim>>,
    service_requests: std::sync::Arc<Framework<ServiceRequest>>,
    maintenance: std::sync::Arc<Framework<MaintenanceContract>>,
    api_keys: std::sync::Arc<Framework<ApiKey>>,
    users: std::sync::Arc<Framework<User>>,
    webhooks: std::sync::Arc<Framework<WebhookEndpoint>>,
    announcer: Announcer,
    local_wake: Option<LocalWake>,
    metrics: CommandMetrics,
}

impl std::fmt::Debug for Commands {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Commands")
            .field("announcer", &self.announcer)
            .finish_non_exhaustive()
    }
}

/// The store of aggregate `A` among the dispatcher's fields.
trait FrameworkOf<A: Aggregate> {
    fn framework_of(&self) -> &Framework<A>;
}

macro_rules! framework_of {
    ($($field:ident: $A:ty),+ $(,)?) => {
        $(impl FrameworkOf<$A> for Commands {
            fn framework_of(&self) -> &Framework<$A> {
                &self.$field
            }
        })+
    };
}

framework_of!(
    conversations: Conversation,
    contacts: Contact,
    templates: Template,
    leads: Lead,
    calls: Call,
    automation: AutomationRules,
    media: Media,
    wallets: Wallet,
    orders: Order,
    installations: InstallationRecord,
    payouts: Payout,
    campaigns: Campaign,
    payments: Payment,
    payment_requests: PaymentRequest,
    payment_providers: PaymentProviderConfig,
    warranties: Warranty,
    claims: WarrantyClaim,
    service_requests: ServiceRequest,
    maintenance: MaintenanceContract,
    api_keys: ApiKey,
    users: User,
    webhooks: WebhookEndpoint,
);

fn framework<A: Aggregate<Services = ()> + Clone>(
    pool: &PgPool,
    committer: &GroupCommitter,
    snapshot: Option<usize>,
) -> std::sync::Arc<Framework<A>> {
    let repo = crate::repository::ChronicleEventRepository::with_committer(pool.clone(), committer.clone());
    std::sync::Arc::new(crate::store::Store::new(repo, snapshot, DEFAULT_CACHE_CAPACITY))
}

impl Commands {
    /// A dispatcher over `pool`.
    pub fn new(pool: PgPool, snapshots: SnapshotPolicy) -> Self {
        let committer = GroupCommitter::new(pool.clone());
        let c = &committer;
        Self {
            conversations: framework(&pool, c, snapshots.conversation),
            contacts: framework(&pool, c, None),
            templates: framework(&pool, c, None),
            leads: framework(&pool, c, None),
            calls: framework(&pool, c, None),
            automation: framework(&pool, c, None),
            media: framework(&pool, c, None),
            wallets: framework(&pool, c, snapshots.wallet),
            orders: framework(&pool, c, None),
            installations: framework(&pool, c, None),
            payouts: framework(&pool, c, None),
            // A campaign's stream grows with its recipients' outcomes: snapshot every 100 events.
            campaigns: framework(&pool, c, Some(100)),
            payments: framework(&pool, c, None),
            payment_requests: framework(&pool, c, None),
            payment_providers: framework(&pool, c, None),
            warranties: framework(&pool, c, None),
            claims: framework(&pool, c, None),
            service_requests: framework(&pool, c, None),
            maintenance: framework(&pool, c, None),
            api_keys: framework(&pool, c, None),
            users: framework(&pool, c, None),
            webhooks: framework(&pool, c, None),
            announcer: Announcer::postgres(&pool),
            local_wake: None,
            pool,
            metrics: CommandMetrics::unregistered(),
        }
    }

    /// Wakes other processes through Redis pub/sub instead of `pg_notify` (several API
    /// processes over one log, listening on Redis), keeping the in-process wake-up.
    pub fn with_redis(mut self, connection: redis::aio::ConnectionManager) -> Self {
        let local = self.local_wake.clone();
        self.announcer = Announcer::redis(connection);
        if let Some(local) = local {
            self.announcer = self.announcer.with_local(local);
        }
        self
    }

    /// Wakes this process's readers of a tenant, at once, after each of its appends (the API
    /// passes its wake-ups' sender).
    pub fn with_local_wake(mut self, wake: LocalWake) -> Self {
        self.local_wake = Some(wake.clone());
        self.announcer = self.announcer.with_local(wake);
        self
    }

    /// Waits (up to `within`) until this dispatcher's appends so far have been announced to
    /// other processes: a tool that appends and exits calls it last.
    pub async fn flush_announcements(&self, within: Duration) {
        self.announcer.flush(within).await;
    }

    /// Records metrics in a server's registry.
    pub fn with_metrics(mut self, metrics: CommandMetrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// The pool commands write through.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Runs a command on the conversation `<tenant>:<contact_id>`.
    pub async fn conversation(
        &self,
        contact_id: &str,
        command: ConversationCommand,
        metadata: &CommandMetadata,
    ) -> Result<Appended, CommandError> {
        let stream = metadata.tenant_id.stream_id(contact_id);
        self.execute(
            &self.conversations,
            &stream,
            command,
            metadata,
            DomainError::Conversation,
        )
        .await
    }

    /// Runs a command on the contact `<tenant>:<contact_id>`.
    pub async fn contact(
        &self,
        contact_id: &str,
        command: ContactCommand,
        metadata: &CommandMetadata,
    ) -> Result<Appended, CommandError> {
        let stream = metadata.tenant_id.stream_id(contact_id);
        self.execute(&self.contacts, &stream, command, metadata, DomainError::Contact)
            .await
    }

    /// Runs a command on the template `<tenant>:<local_id>` (`tpl_<name>_<language>`).
    pub async fn template(
        &self,
        local_id: &str,
        command: TemplateCommand,
        metadata: &CommandMetadata,
    ) -> Result<Appended, CommandError> {
        let stream = metadata.tenant_id.stream_id(local_id);
        self.execute(&self.templates, &stream, command, metadata, DomainError::Template)
            .await
    }

    /// Runs a command on the lead `<tenant>:<local_id>` (`lead_<uuid>`).
    pub async fn lead(
        &self,
        local_id: &str,
        command: LeadCommand,
        metadata: &CommandMetadata,
    ) -> Result<Appended, CommandError> {
        let stream = metadata.tenant_id.stream_id(local_id);
        self.execute(&self.leads, &stream, command, metadata, DomainError::Lead)
            .await
    }

    /// Runs a command on the call `<tenant>:<local_id>` (`call_stream_local_id(..)`).
    pub async fn call(
        &self,
        local_id: &str,
        command: CallCommand,
        metadata: &CommandMetadata,
    ) -> Result<Appended, CommandError> {
        let stream = metadata.tenant_id.stream_id(local_id);
        self.execute(&self.calls, &stream, command, metadata, DomainError::Call)
            .await
    }

    /// Runs a command on the user `<tenant>:<user_id>` (`usr_…`). Every change goes through
    /// [`crate::users`], which keeps the credentials beside the log.
    pub(crate) async fn user(
        &self,
        user_id: &str,
        command: UserCommand,
        metadata: &CommandMetadata,
    ) -> Result<Appended, CommandError> {
        let stream = metadata.tenant_id.stream_id(user_id);
        self.execute(&self.users, &stream, command, metadata, DomainError::User)
            .await
    }

    /// Runs a command on the API key `<tenant>:<key_id>` (`key_…`). Issuing and revoking go
    /// through [`crate::api_keys`], which keeps the credential beside the log.
    pub(crate) async fn api_key(
        &self,
        key_id: &str,
        command: ApiKeyCommand,
        metadata: &CommandMetadata,
    ) -> Result<Appended, CommandError> {
        let stream = metadata.tenant_id.stream_id(key_id);
        self.execute(&self.api_keys, &stream, command, metadata, DomainError::ApiKey)
            .await
    }

    /// Runs a command on the webhook endpoint `<tenant>:<endpoint_id>` (`whk_…`), through
    /// [`crate::webhooks`], which keeps its secret and delivery state beside the log.
    pub(crate) async fn webhook(
        &self,
        endpoint_id: &str,
        command: WebhookCommand,
        metadata: &CommandMetadata,
    ) -> Result<Appended, CommandError> {
        let stream = metadata.tenant_id.stream_id(endpoint_id);
        self.execute(&self.webhooks, &stream, command, metadata, DomainError::Webhook)
            .await
    }

    /// Runs a command on the tenant's automation rules (`<tenant>:automation`).
    pub async fn automation(
        &self,
        command: AutomationRulesCommand,
        metadata: &CommandMetadata,
    ) -> Result<Appended, CommandError> {
        let stream = metadata.tenant_id.stream_id("automation");
        self.execute(
            &self.automation,
            &stream,
            command,
            metadata,
            DomainError::AutomationRules,
        )
        .await
    }

    /// Runs a command on the media `<tenant>:<media_ref>` (`IdKey::media_ref`, `media_…`).
    pub async fn media(
        &self,
        media_ref: &str,
        command: MediaCommand,
        metadata: &CommandMetadata,
    ) -> Result<Appended, CommandError> {
        let stream = metadata.tenant_id.stream_id(media_ref);
        self.execute(&self.media, &stream, command, metadata, DomainError::Media)
            .await
    }

    /// Runs a command on the wallet `<tenant>:<local_id>` (`wallet_<id>`). A refusal the wallet
    /// records (insufficient balance) is `Ok` here: read it with [`Wallet::outcome`] through
    /// [`Commands::load_wallet`] (references are remembered, so the outcome is the command's own).
    pub async fn wallet(
        &self,
        local_id: &str,
        command: WalletCommand,
        metadata: &CommandMetadata,
    ) -> Result<Appended, CommandError> {
        let stream = metadata.tenant_id.stream_id(local_id);
        self.execute(&self.wallets, &stream, command, metadata, DomainError::Wallet)
            .await
    }

    /// The current state of the wallet `<tenant>:<local_id>`.
    pub async fn load_wallet(&self, tenant: &TenantId, local_id: &str) -> Result<Wallet, CommandError> {
        let stream = tenant.stream_id(local_id);
        self.wallets
            .load_aggregate(&stream)
            .await
            .map_err(|e| CommandError::Unexpected(Box::new(e)))
    }

    /// Runs a command on the order `<tenant>:<local_id>` (`order_<id>`).
    pub async fn order(
        &self,
        local_id: &str,
        command: OrderCommand,
        metadata: &CommandMetadata,
    ) -> Result<Appended, CommandError> {
        let stream = metadata.tenant_id.stream_id(local_id);
        self.execute(&self.orders, &stream, command, metadata, DomainError::Order)
            .await
    }

    /// Runs a command on the installation record `<tenant>:<local_id>` (`isr_<id>`).
    pub async fn installation(
        &self,
        local_id: &str,
        command: InstallationCommand,
        metadata: &CommandMetadata,
    ) -> Result<Appended, CommandError> {
        let stream = metadata.tenant_id.stream_id(local_id);
        self.execute(
            &self.installations,
            &stream,
            command,
            metadata,
            DomainError::Installation,
        )
        .await
    }

    /// Runs a command on the payout `<tenant>:<local_id>` (`payout_<id>`).
    pub async fn payout(
        &self,
        local_id: &str,
        command: PayoutCommand,
        metadata: &CommandMetadata,
    ) -> Result<Appended, CommandError> {
        let stream = metadata.tenant_id.stream_id(local_id);
        self.execute(&self.payouts, &stream, command, metadata, DomainError::Payout)
            .await
    }

    /// Runs a command on the warranty `<tenant>:<local_id>`
    /// (`warranty_local_id(installation_id, serial)`, `warranty_<isr_id>/<serial>`).
    pub async fn warranty(
        &self,
        local_id: &str,
        command: WarrantyCommand,
        metadata: &CommandMetadata,
    ) -> Result<Appended, CommandError> {
        let stream = metadata.tenant_id.stream_id(local_id);
        self.execute(&self.warranties, &stream, command, metadata, DomainError::Warranty)
            .await
    }

    /// The current state of the template `<tenant>:<local_id>` (a send is checked against its
    /// variables before anything is charged).
    pub async fn load_template(&self, tenant: &TenantId, local_id: &str) -> Result<Template, CommandError> {
        let stream = tenant.stream_id(local_id);
        self.templates
            .load_aggregate(&stream)
            .await
            .map_err(|e| CommandError::Unexpected(Box::new(e)))
    }

    /// The present state of the media `media_ref` (read from the database).
    pub async fn load_media(
        &self,
        tenant: &TenantId,
        media_ref: &str,
    ) -> Result<chronicle_domain::media::Media, CommandError> {
        self.media
            .load_aggregate(&tenant.stream_id(media_ref))
            .await
            .map_err(|e| CommandError::Unexpected(Box::new(e)))
    }

    /// The present state of the conversation with `contact_id` (read from the database).
    pub async fn load_conversation(&self, tenant: &TenantId, contact_id: &str) -> Result<Conversation, CommandError> {
        self.conversations
            .load_aggregate(&tenant.stream_id(contact_id))
            .await
            .map_err(|e| CommandError::Unexpected(Box::new(e)))
    }

    /// The present state of any stream, as the write side loads it (snapshot, then the events
    /// after it), serialized as JSON: what `chronicle-replay state` must reproduce by folding
    /// the log. `None` when no aggregate has `aggregate_type`.
    pub async fn state_json(
        &self,
        aggregate_type: &str,
        stream: &str,
    ) -> Result<Option<serde_json::Value>, CommandError> {
        chronicle_domain::for_aggregate_type!(aggregate_type, A => {
            let aggregate = FrameworkOf::<A>::framework_of(self)
                .load_aggregate(stream)
                .await
                .map_err(|e| CommandError::Unexpected(Box::new(e)))?;
            serde_json::to_value(&aggregate)
                .map(Some)
                .map_err(|e| CommandError::Unexpected(Box::new(e)))
        }, else Ok(None))
    }

    /// The current state of the warranty `<tenant>:<local_id>` (a claim is checked against its
    /// terms).
    pub async fn load_warranty(&self, tenant: &TenantId, local_id: &str) -> Result<Warranty, CommandError> {
        let stream = tenant.stream_id(local_id);
        self.warranties
            .load_aggregate(&stream)
            .await
            .map_err(|e| CommandError::Unexpected(Box::new(e)))
    }

    /// Runs a command on the warranty claim `<tenant>:<local_id>` (`claim_<id>`).
    pub async fn claim(
        &self,
        local_id: &str,
        command: ClaimCommand,
        metadata: &CommandMetadata,
    ) -> Result<Appended, CommandError> {
        let stream = metadata.tenant_id.stream_id(local_id);
        self.execute(&self.claims, &stream, command, metadata, DomainError::Claim)
            .await
    }

    /// Runs a command on the service request `<tenant>:<local_id>` (`sr_<ticket number>`).
    pub async fn service_request(
        &self,
        local_id: &str,
        command: ServiceCommand,
        metadata: &CommandMetadata,
    ) -> Result<Appended, CommandError> {
        let stream = metadata.tenant_id.stream_id(local_id);
        self.execute(&self.service_requests, &stream, command, metadata, DomainError::Service)
            .await
    }

    /// Runs a command on the maintenance contract `<tenant>:<local_id>` (`mc_<id>`).
    pub async fn maintenance(
        &self,
        local_id: &str,
        command: MaintenanceCommand,
        metadata: &CommandMetadata,
    ) -> Result<Appended, CommandError> {
        let stream = metadata.tenant_id.stream_id(local_id);
        self.execute(&self.maintenance, &stream, command, metadata, DomainError::Maintenance)
            .await
    }

    /// Runs a command on the payment `<tenant>:<local_id>` (`payment_local_id(provider, reference)`).
    pub async fn payment(
        &self,
        local_id: &str,
        command: PaymentCommand,
        metadata: &CommandMetadata,
    ) -> Result<Appended, CommandError> {
        let stream = metadata.tenant_id.stream_id(local_id);
        self.execute(&self.payments, &stream, command, metadata, DomainError::Payment)
            .await
    }

    /// Runs a command on the payment request `<tenant>:<local_id>` (`preq_…`).
    pub async fn payment_request(
        &self,
        local_id: &str,
        command: PaymentRequestCommand,
        metadata: &CommandMetadata,
    ) -> Result<Appended, CommandError> {
        let stream = metadata.tenant_id.stream_id(local_id);
        self.execute(
            &self.payment_requests,
            &stream,
            command,
            metadata,
            DomainError::PaymentRequest,
        )
        .await
    }

    /// Runs a command on a payment provider's configuration `<tenant>:payprov_<provider>`,
    /// through [`crate::payments::credentials`], which seals its secrets beside the log.
    pub(crate) async fn payment_provider(
        &self,
        local_id: &str,
        command: PaymentProviderCommand,
        metadata: &CommandMetadata,
    ) -> Result<Appended, CommandError> {
        let stream = metadata.tenant_id.stream_id(local_id);
        self.execute(
            &self.payment_providers,
            &stream,
            command,
            metadata,
            DomainError::PaymentProvider,
        )
        .await
    }

    /// Runs a command on the campaign `<tenant>:<local_id>` (`campaign_<id>`).
    pub async fn campaign(
        &self,
        local_id: &str,
        command: CampaignCommand,
        metadata: &CommandMetadata,
    ) -> Result<Appended, CommandError> {
        let stream = metadata.tenant_id.stream_id(local_id);
        self.execute(&self.campaigns, &stream, command, metadata, DomainError::Campaign)
            .await
    }

    async fn execute<A>(
        &self,
        framework: &Framework<A>,
        stream: &str,
        command: A::Command,
        metadata: &CommandMetadata,
        domain: impl Fn(A::Error) -> DomainError,
    ) -> Result<Appended, CommandError>
    where
        A: Aggregate<Services = ()> + Clone,
        A::Command: Clone,
        A::Error: Send + Sync + 'static,
    {
        let span = tracing::info_span!(
            "command",
            aggregate = A::TYPE,
            tenant.id = %metadata.tenant_id,
            correlation.id = %metadata.correlation_id,
            causation.id = %metadata.causation_id,
        );
        let started = Instant::now();
        let result = async {
            let map = metadata.to_map();
            let mut attempt = 0;
            loop {
                attempt += 1;
                // The repository records the positions of what it appends in this task's scope.
                let (executed, positions) =
                    crate::repository::collect_positions(framework.execute(stream, command.clone(), &map)).await;
                match executed {
                    Ok(()) => {
                        if positions.is_empty() {
                            // A repeat: its outcome is the stream's earlier events; the caller's
                            // cursor is the stream's head, so a read waiting for it sees them.
                            self.note_stream_head(A::TYPE, stream).await;
                        }
                        return Ok(Appended {
                            stream: stream.to_string(),
                            positions,
                        });
                    }
                    Err(AggregateError::UserError(e)) => return Err(CommandError::Rejected(domain(e))),
                    Err(AggregateError::AggregateConflict) if attempt <= CONFLICT_RETRIES => {
                        tracing::debug!(attempt, "write conflict, retrying");
                        // Jittered backoff, so racing retries spread out instead of colliding again.
                        let jitter = rand::random::<u64>() % 3;
                        tokio::time::sleep(Duration::from_millis(u64::from(attempt) + jitter)).await;
                    }
                    Err(AggregateError::AggregateConflict) => return Err(CommandError::Conflict),
                    Err(AggregateError::DatabaseConnectionError(e))
                    | Err(AggregateError::DeserializationError(e))
                    | Err(AggregateError::UnexpectedError(e)) => return Err(CommandError::Unexpected(e)),
                }
            }
        }
        .instrument(span)
        .await;
        let outcome = match &result {
            Ok(_) => "appended",
            Err(CommandError::Rejected(_)) | Err(CommandError::InvalidInput(_)) => "refused",
            Err(CommandError::Conflict) => "conflict",
            Err(CommandError::Unexpected(_)) => "failed",
        };
        self.metrics.commands.with_label_values(&[A::TYPE, outcome]).inc();
        self.metrics
            .duration
            .with_label_values(&[A::TYPE])
            .observe(started.elapsed().as_secs_f64());
        if matches!(&result, Ok(appended) if !appended.positions.is_empty()) {
            self.announcer.appended(metadata.tenant_id.as_str());
        }
        result
    }

    /// Records the head of `stream` (its latest event) for [`crate::repository::track_writes`],
    /// for a repeated command that appended nothing: its outcome is the stream's earlier events.
    /// Does nothing outside `track_writes`. A failed read is logged: the command succeeded, and
    /// the caller's cursor then only covers what else it wrote.
    pub async fn note_stream_head(&self, aggregate_type: &str, stream: &str) {
        if !crate::repository::tracking_writes() {
            return;
        }
        let head = sqlx::query_as::<_, (String, i64)>(
            "SELECT tx_id::text, global_position FROM events \
             WHERE aggregate_type = $1 AND aggregate_id = $2 ORDER BY sequence DESC LIMIT 1",
        )
        .bind(aggregate_type)
        .bind(stream)
        .fetch_optional(&self.pool)
        .await;
        match head {
            Ok(Some((tx, position))) => {
                if let Ok(tx_id) = tx.parse::<u64>() {
                    crate::repository::note_written(crate::repository::LogPoint { tx_id, position }, 0);
                }
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "could not read the stream's head for the receipt"),
        }
    }
}
