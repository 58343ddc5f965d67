//! The application: its state, its router, its background tasks, and `serve`.

use std::io::Write as _;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use chronicle_commands::campaigns::CampaignConfig;
use chronicle_commands::dispatch::Commands;
use chronicle_commands::keystore::KeyStore;
use chronicle_commands::media::FetcherConfig;
use chronicle_commands::outbound::whatsapp::SenderConfig;
use chronicle_commands::workers::{supervise, WorkerSettings, Workers};
use chronicle_domain::pii::{IdKey, MasterKey};
use chronicle_projections::runtime::{Projector, ProjectorRunner, RunnerConfig};
use chronicle_projections::wake::Wakeups;
use std::str::FromStr;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgConnection, PgPool};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::{Database, Secret, Settings};
use crate::graphql::{build_schema, ChronicleSchema};
use crate::metrics::Metrics;
use chronicle_projections::embedded::EmbeddedPostgres;

/// What every handler shares: one allocation behind an `Arc`, so the clone axum makes for
/// each request is one reference count, not one per field (the commands and the workers hold
/// some forty `Arc`s between them; cloning them all was 4 % of the server's CPU under GraphQL
/// load). Fields read through `Deref`; writing a field (`DerefMut`, only while setting up,
/// before the router holds a copy) copies the state first if it is shared, as a value would.
#[derive(Clone)]
pub struct AppState(Arc<AppStateFields>);

impl std::ops::Deref for AppState {
    type Target = AppStateFields;
    fn deref(&self) -> &AppStateFields {
        &self.0
    }
}

impl std::ops::DerefMut for AppState {
    fn deref_mut(&mut self) -> &mut AppStateFields {
        Arc::make_mut(&mut self.0)
    }
}

/// The fields of [`AppState`].
#[derive(Clone)]
pub struct AppStateFields {
    pub pool: PgPool,
    pub jwt_secret: Secret,
    /// The keys access tokens are checked with (the current one signs).
    pub token_keys: crate::auth::TokenKeys,
    /// Access and refresh tokens' lives.
    pub sessions: crate::sessions::SessionSettings,
    /// Paces failed sign-ins.
    pub sign_in_limiter: crate::sessions::SignInLimiter,
    pub whatsapp_app_secret: Secret,
    pub whatsapp_verify_token: Secret,
    /// Twilio's auth token (call webhook signatures); `None`: the call webhook is off.
    pub twilio_auth_token: Option<Secret>,
    /// The public base URL providers sign requests against.
    pub public_url: String,
    pub master_key: MasterKey,
    /// Keyed hashes of identifiers (contact ids, message refs, inbox dedupe keys).
    pub id_key: IdKey,
    pub commands: Commands,
    /// The contacts' data keys (one store for the server: resolvers, webhooks, workers).
    pub keys: KeyStore,
    /// Every background worker of the write side (`chronicle_commands::workers`), built once.
    pub workers: Workers,
    /// Payment callbacks (Paynow, M-Pesa, Stripe-style): verification, status calls, matching.
    pub payments: chronicle_commands::payments::PaymentIntake,
    pub wakeups: Wakeups,
    pub redis: Option<redis::aio::ConnectionManager>,
    pub metrics: Metrics,
    pub schema: ChronicleSchema,
    /// How projector runners read.
    pub runner_config: RunnerConfig,
    /// Development mode's WhatsApp Cloud API sandbox; `None` in production.
    pub sandbox: Option<crate::sandbox::Sandbox>,
    /// Development mode's payment provider sandboxes; `None` in production.
    pub payment_sandbox: Option<crate::payment_sandbox::PaymentSandbox>,
    /// The token GraphiQL's headers editor starts with: the demo tenant's, in development mode
    /// with `--demo` only; `None` shows a placeholder.
    pub graphiql_token: Option<String>,
    /// Delivers events to webhook endpoints.
    pub webhooks: crate::webhooks::Dispatcher,
    /// How GraphQL WebSocket connections are kept.
    pub websocket: crate::http::graphql_ws::WebSocketSettings,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState").finish_non_exhaustive()
    }
}

/// Connects to the configured database (starting the embedded cluster if that is the
/// default), applies the migrations as the connecting (owner) role, and returns the
/// application's pool.
pub async fn connect(settings: &Settings) -> anyhow::Result<PgPool> {
    let url = match &settings.database {
        Database::Url(url) => url.expose().to_string(),
        Database::Embedded => EmbeddedPostgres::new(&settings.data_dir)?.ensure_running().await?,
    };
    let options = PgConnectOptions::from_str(&url).context("DATABASE_URL is not a PostgreSQL URL")?;
    let mut owner = PgConnection::connect_with(&options)
        .await
        .context("connecting to PostgreSQL (check DATABASE_URL)")?;
    chronicle_projections::MIGRATOR
        .run(&mut owner)
        .await
        .context("applying migrations")?;
    owner.close().await.ok();
    application_pool(options).await
}

/// The role the server acts as (migration 0006 grants it exactly what the server needs).
pub const APPLICATION_ROLE: &str = "chronicle_app";

/// The server's pool: every connection acts as [`APPLICATION_ROLE`] (so the log is append-only
/// by privilege, not only by trigger) and keeps transactions short, since an open write holds
/// every gap-free reader back (DESIGN.md).
pub async fn application_pool(options: PgConnectOptions) -> anyhow::Result<PgPool> {
    let mut probe = PgConnection::connect_with(&options)
        .await
        .context("connecting to PostgreSQL")?;
    let (user, member): (String, bool) =
        sqlx::query_as("SELECT current_user::text, pg_has_role(current_user, $1, 'MEMBER')")
            .bind(APPLICATION_ROLE)
            .fetch_one(&mut probe)
            .await
            .context("checking the application role (are the migrations applied?)")?;
    probe.close().await.ok();
    if !member {
        tracing::warn!(
            db.user = %user,
            "the database user is not a member of {APPLICATION_ROLE}: serving as {user}, so the append-only log \
             rests on its triggers alone; GRANT {APPLICATION_ROLE} TO {user}"
        );
    }
    let pool = PgPoolOptions::new()
        .max_connections(20)
        .acquire_timeout(Duration::from_secs(10))
        // No ping before every query (a round trip each, on every query of a busy server):
        // only a connection idle for more than a few seconds is pinged before use, so one that
        // died meanwhile (a restart, a failover, a firewall) is replaced, not handed out.
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for > IDLE_BEFORE_PING {
                    sqlx::Connection::ping(conn).await?;
                }
                Ok(true)
            })
        })
        .after_connect(move |conn, _| {
            Box::pin(async move {
                if member {
                    sqlx::query("SET ROLE chronicle_app").execute(&mut *conn).await?;
                }
                sqlx::query("SET idle_in_transaction_session_timeout = '30s'")
                    .execute(&mut *conn)
                    .await?;
                sqlx::query("SET statement_timeout = '60s'").execute(&mut *conn).await?;
                Ok(())
            })
        })
        .connect_with(options)
        .await
        .context("connecting to PostgreSQL")?;
    Ok(pool)
}

/// A pooled connection idle for longer than this is pinged before it is handed out.
const IDLE_BEFORE_PING: Duration = Duration::from_secs(5);

/// Builds the state over a migrated pool.
pub async fn build_state(pool: PgPool, settings: &Settings) -> anyhow::Result<AppState> {
    let metrics = Metrics::new().context("registering metrics")?;
    let (wakeups, redis) = match &settings.redis_url {
        Some(url) => {
            let client = redis::Client::open(url.expose()).context("REDIS_URL is not a Redis URL")?;
            // Reconnects by itself after Redis restarts (publishing fails meanwhile, and readers
            // of other processes fall back to polling). The retry settings are explicit:
            // redis 0.32's defaults grow the delay between attempts a hundredfold each time
            // (1 s, 100 s, …), so a command sent while Redis is down waited for hours
            // (tests/tests/two_processes.rs).
            let config = redis::aio::ConnectionManagerConfig::new()
                .set_number_of_retries(2)
                .set_factor(2)
                .set_max_delay(1_000)
                .set_connection_timeout(std::time::Duration::from_secs(1))
                .set_response_timeout(std::time::Duration::from_secs(2));
            let connection = redis::aio::ConnectionManager::new_with_config(client, config)
                .await
                .context("connecting to Redis")?;
            let wakeups = Wakeups::redis(url.expose()).await.context("subscribing to Redis")?;
            (wakeups, Some(connection))
        }
        None => (Wakeups::postgres(&pool).await.context("listening for appends")?, None),
    };
    // Readers of this process are woken at once after each append; other processes through
    // Redis when configured, else through pg_notify sent after commit (chronicle_commands::announce).
    let local_wakeups = wakeups.clone();
    let mut commands = Commands::new(pool.clone(), settings.snapshots)
        .with_metrics(metrics.commands.clone())
        .with_local_wake(std::sync::Arc::new(move |tenant: &str| local_wakeups.notify(tenant)));
    if let Some(connection) = &redis {
        commands = commands.with_redis(connection.clone());
    }
    let keys = KeyStore::new(pool.clone(), settings.master_key.clone());
    // Development mode's stand-in for the Graph API (crate::sandbox), served on our own port.
    let sandbox = match (&settings.whatsapp_access_token, settings.whatsapp_sandbox) {
        (Some(token), true) => {
            let sandbox =
                crate::sandbox::Sandbox::new(settings.bind, settings.whatsapp_app_secret.clone(), token.clone())?;
            tracing::info!(
                graph = %sandbox.graph_base_url(),
                "development mode: WhatsApp sends go to the sandbox (set WHATSAPP_GRAPH_BASE_URL for a real Graph API)"
            );
            Some(sandbox)
        }
        _ => None,
    };
    let graph_base_url = sandbox
        .as_ref()
        .map_or_else(|| settings.whatsapp_graph_base_url.clone(), |s| s.graph_base_url());
    let sender = match &settings.whatsapp_access_token {
        Some(token) => {
            let mut config = SenderConfig::new(graph_base_url.clone(), token.expose());
            config.request_timeout = settings.whatsapp_send.timeout;
            config.max_attempts = settings.whatsapp_send.max_attempts;
            config.backoff = settings.whatsapp_send.backoff;
            config.stale_after = settings.whatsapp_send.timeout * 2 + Duration::from_secs(60);
            Some(config)
        }
        None => {
            tracing::warn!("WHATSAPP_ACCESS_TOKEN is not set: outbound WhatsApp messages stay queued");
            None
        }
    };
    let live = chronicle_projections::live::LiveLog::start_with(
        pool.clone(),
        wakeups.clone(),
        settings.websocket.subscriber_buffer,
        settings.websocket.subscriber_grace,
    )
    .await
    .context("starting the live log")?;
    let fetcher = settings.whatsapp_access_token.as_ref().map(|token| {
        let mut config = FetcherConfig::new(graph_base_url.clone(), token.expose());
        config.backoff = settings.whatsapp_send.backoff;
        config
    });
    let mut payments_config = settings.payments.clone();
    payments_config.public_url = settings.public_url.clone();
    // Development mode's stand-ins for Paynow, Daraja and Stripe (crate::payment_sandbox).
    let payment_sandbox = if settings.payment_sandbox {
        let sandbox = crate::payment_sandbox::PaymentSandbox::new(crate::sandbox::local_origin(settings.bind))?;
        sandbox.configure(&mut payments_config);
        tracing::info!("development mode: payment requests go to the payment sandboxes (set PAYNOW_BASE_URL, DARAJA_BASE_URL or STRIPE_BASE_URL for real providers)");
        Some(sandbox)
    } else {
        None
    };
    let payments = chronicle_commands::payments::PaymentIntake::new(
        commands.clone(),
        settings.master_key.clone(),
        payments_config,
    )
    .context("building the payment callbacks' HTTP client")?;
    let workers = Workers::new(
        &commands,
        &keys,
        WorkerSettings {
            sender,
            fetcher,
            campaigns: CampaignConfig::default(),
            payments: Some(payments.clone()),
        },
    )
    .context("building the background workers")?;
    let webhooks = crate::webhooks::Dispatcher::new(
        pool.clone(),
        commands.clone(),
        settings.master_key.clone(),
        wakeups.clone(),
        settings.webhooks,
    );
    // The decoy hash of sign-in, made now so the first unknown e-mail costs what every other does.
    chronicle_commands::users::prepare()
        .await
        .context("preparing sign-in")?;
    let schema = build_schema(
        pool.clone(),
        wakeups.clone(),
        live,
        commands.clone(),
        keys.clone(),
        payments.clone(),
        sandbox.clone(),
        webhooks.clone(),
        crate::sessions::SignInLimiter::new(settings.sessions.limits, redis.clone()),
    );
    Ok(AppState(Arc::new(AppStateFields {
        pool,
        jwt_secret: settings.jwt_secret.clone(),
        token_keys: settings.token_keys(),
        sessions: settings.sessions.clone(),
        sign_in_limiter: schema
            .data::<crate::sessions::SignInLimiter>()
            .cloned()
            .unwrap_or_else(|| crate::sessions::SignInLimiter::new(settings.sessions.limits, redis.clone())),
        whatsapp_app_secret: settings.whatsapp_app_secret.clone(),
        whatsapp_verify_token: settings.whatsapp_verify_token.clone(),
        twilio_auth_token: settings.twilio_auth_token.clone(),
        public_url: settings.public_url.clone(),
        master_key: settings.master_key.clone(),
        id_key: settings.master_key.id_key(),
        commands,
        keys,
        workers,
        payments,
        wakeups,
        redis,
        metrics,
        schema,
        runner_config: RunnerConfig {
            batch_size: settings.projector_batch_size,
            ..RunnerConfig::default()
        },
        sandbox,
        payment_sandbox,
        graphiql_token: None,
        websocket: settings.websocket,
        webhooks,
    })))
}

/// The whole router.
pub fn router(state: AppState) -> Router {
    crate::http::router(state)
}

/// Every projector of the server ([`chronicle_projections::projectors`]).
pub fn projectors(state: &AppState) -> Vec<Arc<dyn Projector>> {
    chronicle_projections::projectors(&state.master_key)
}

/// Starts the projector runners and the inbox worker; they stop when `shutdown` turns true.
/// Each runs under a supervisor that restarts it (after a pause) if it ever panics, so one
/// poisonous input cannot silently stop projections or intake.
pub fn spawn_background(state: &AppState, shutdown: watch::Receiver<bool>) -> Vec<JoinHandle<()>> {
    let mut tasks = Vec::new();
    for projector in projectors(state) {
        let (state, stop) = (state.clone(), shutdown.clone());
        tasks.push(tokio::spawn(supervise(projector.name(), shutdown.clone(), move || {
            ProjectorRunner::new(
                state.pool.clone(),
                projector.clone(),
                state.wakeups.clone(),
                state.runner_config.clone(),
            )
            .with_metrics(state.metrics.projectors.clone())
            .run(stop.clone())
        })));
    }
    tasks.extend(state.workers.spawn(&shutdown));
    let webhooks = state.webhooks.clone();
    tasks.push(tokio::spawn(webhooks.run(shutdown.clone())));
    tasks
}

/// Brings every projector of the server up to date once (the demo's loader reads what some
/// projectors write).
pub async fn catch_up(state: &AppState) -> anyhow::Result<()> {
    for projector in projectors(state) {
        let name = projector.name();
        ProjectorRunner::new(
            state.pool.clone(),
            projector,
            state.wakeups.clone(),
            state.runner_config.clone(),
        )
        .catch_up()
        .await
        .with_context(|| format!("projecting {name}"))?;
    }
    Ok(())
}

/// Loads the demo (`chronicle_fixtures::demo`) with progress on stderr, prints an owner token
/// for each of its tenants, and returns the token of the tenant GraphiQL opens with.
/// The demo owners' password (development mode only, printed at start with the demo).
pub const DEMO_PASSWORD: &str = "demo owner passphrase";

/// The e-mail address of a demo tenant's owner.
pub fn demo_owner_email(tenant: &chronicle_domain::tenant::TenantId) -> String {
    format!("owner@{tenant}.demo")
}

/// The demo tenant's owner (invited and accepted through the write path on first start):
/// their user id.
async fn demo_owner(state: &AppState, tenant: &chronicle_domain::tenant::TenantId) -> anyhow::Result<String> {
    use chronicle_commands::users;
    let email = demo_owner_email(tenant);
    if let Some(user_id) = users::find_by_email(&state.pool, tenant, &email).await? {
        return Ok(user_id);
    }
    let metadata = chronicle_domain::metadata::CommandMetadata {
        tenant_id: tenant.clone(),
        actor: chronicle_domain::metadata::Actor::System {
            component: "demo".into(),
        },
        correlation_id: format!("demo-owner:{tenant}"),
        causation_id: "demo".into(),
    };
    let invited = state
        .commands
        .invite_user(
            users::Invite {
                email,
                name: "Demo Owner".into(),
                role: "owner".into(),
            },
            &metadata,
            &crate::permissions::Permission::ManageUsers.role_names(),
        )
        .await
        .context("inviting the demo owner")?;
    state
        .commands
        .accept_invitation(&invited.token, DEMO_PASSWORD, &metadata.correlation_id)
        .await
        .map_err(|e| anyhow::anyhow!("accepting the demo owner's invitation: {e}"))?;
    Ok(invited.user_id)
}

/// With the payment sandboxes on, each demo tenant gets Paynow, M-Pesa and Stripe configured
/// once (made-up credentials the sandboxes accept), so `requestPayment` runs end to end.
async fn demo_payment_providers(state: &AppState, tenant: &chronicle_domain::tenant::TenantId) -> anyhow::Result<()> {
    use chronicle_commands::payments::credentials::{self, ProviderCredentials};
    use chronicle_commands::payments::mpesa::DarajaCredentials;
    if state.payment_sandbox.is_none() {
        return Ok(());
    }
    let configured = credentials::configured(&state.pool, &state.master_key, tenant)
        .await
        .map_err(|e| anyhow::anyhow!("reading the demo's payment providers: {e}"))?;
    let have: Vec<&str> = configured.iter().map(|c| c.provider.as_str()).collect();
    let random = || format!("{:016x}{:016x}", rand::random::<u64>(), rand::random::<u64>());
    let metadata = chronicle_domain::metadata::CommandMetadata {
        tenant_id: tenant.clone(),
        actor: chronicle_domain::metadata::Actor::System {
            component: "demo".into(),
        },
        correlation_id: format!("demo-providers:{tenant}"),
        causation_id: format!("demo-providers:{tenant}"),
    };
    for provider in [
        ProviderCredentials::Paynow {
            integration_id: "20000".into(),
            integration_key: random(),
            currency: "USD".into(),
            auth_email: Some(demo_owner_email(tenant)),
        },
        ProviderCredentials::Mpesa {
            daraja: DarajaCredentials {
                short_code: "174379".into(),
                consumer_key: random(),
                consumer_secret: random(),
                passkey: random(),
            },
            callback_secret: random(),
        },
        ProviderCredentials::Stripe {
            endpoint_secret: format!("whsec_{}", random()),
            secret_key: Some(format!("sk_test_{}", random())),
        },
    ] {
        // Each provider once: one set up earlier (by hand, or a start cut short) is kept.
        if have.contains(&provider.provider()) {
            continue;
        }
        state
            .payments
            .set_provider(&provider, &metadata)
            .await
            .map_err(|e| anyhow::anyhow!("configuring the demo's {} sandbox: {e}", provider.provider()))?;
    }
    Ok(())
}

async fn load_demo(state: &AppState, settings: &Settings) -> anyhow::Result<Option<String>> {
    // The demo's campaign sends WhatsApp templates to made-up numbers: only to the sandbox.
    if state.sandbox.is_none() {
        anyhow::bail!(
            "--demo runs only in development mode with the WhatsApp sandbox (no DATABASE_URL, no \
             WHATSAPP_GRAPH_BASE_URL): its campaign would message made-up numbers"
        );
    }
    let keys = state.keys.clone();
    let path = chronicle_fixtures::load::CommandPath {
        ids: &state.id_key,
        inbox: &state.workers.inbox,
        commands: &state.commands,
        keys: &keys,
        follow_ups: &state.workers.follow_ups,
    };
    let summary = chronicle_fixtures::demo::load(
        path,
        &state.payments,
        || catch_up(state),
        |done, total| eprintln!("demo: loading {done}/{total}"),
    )
    .await
    .context("loading the demo")?;
    catch_up(state).await?;
    // Each demo tenant has an owner who signs in with a password, so sign-in can be tried too.
    let mut owners = Vec::new();
    for tenant in &summary.tenants {
        owners.push(demo_owner(state, &tenant.id).await?);
        demo_payment_providers(state, &tenant.id).await?;
    }
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&state.pool)
        .await?;
    // What people read at start; a closed stdout (a supervisor that stopped reading) must not
    // stop the server, so write errors are ignored.
    let mut out = std::io::stdout();
    let _ = writeln!(
        out,
        "\nDemo {}: {} tenants, {events} events in the log.",
        if summary.loaded { "loaded" } else { "already loaded" },
        summary.tenants.len()
    );
    let _ = writeln!(
        out,
        "Open http://{}/graphql and send the header of the tenant to look at:",
        settings.bind
    );
    let mut first = None;
    for (tenant, owner) in summary.tenants.iter().zip(&owners) {
        let token = crate::auth::mint(
            settings.jwt_secret.expose(),
            &tenant.id,
            owner,
            crate::auth::Role::Owner,
            chrono::Duration::days(7),
        )?;
        let _ = writeln!(out, "\n  {} ({}): {}", tenant.id, tenant.name, tenant.business);
        let _ = writeln!(out, "  Authorization: Bearer {token}");
        let _ = writeln!(
            out,
            "  or sign in: POST /auth/sign-in {{\"tenant\": \"{}\", \"email\": \"{}\", \"password\": \"{DEMO_PASSWORD}\"}}",
            tenant.id,
            demo_owner_email(&tenant.id)
        );
        first.get_or_insert(token);
    }
    let _ = writeln!(out);
    let _ = out.flush();
    Ok(first)
}

/// Runs the server until Ctrl-C.
pub async fn serve(settings: Settings, demo: bool) -> anyhow::Result<()> {
    let pool = connect(&settings).await?;
    let mut state = build_state(pool, &settings).await?;
    if demo {
        if let Some(token) = load_demo(&state, &settings).await? {
            // Development mode only: GraphiQL opens with the token already in its headers.
            if settings.is_development() {
                let _ = writeln!(
                    std::io::stdout(),
                    "(GraphiQL at /graphql has the header filled in already.)\n"
                );
                state.graphiql_token = Some(token);
            }
        }
    }
    let (stop, shutdown) = watch::channel(false);
    let tasks = spawn_background(&state, shutdown);
    let listener = tokio::net::TcpListener::bind(settings.bind)
        .await
        .with_context(|| format!("binding {} (set CHRONICLE_BIND to another address)", settings.bind))?;
    tracing::info!(address = %settings.bind, "serving GraphQL at /graphql, webhooks at /webhooks/whatsapp");
    axum::serve(
        listener,
        router(state).into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(async {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutting down");
    })
    .await?;
    let _ = stop.send(true);
    for task in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    }
    Ok(())
}
