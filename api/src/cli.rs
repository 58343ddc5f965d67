//! The `chronicle` command line: `serve` (the default) and the `admin` commands that let a new
//! user try everything: create a tenant, map a WhatsApp number to it, mint an access token.

use std::process::ExitCode;

use anyhow::Context;
use chronicle_commands::tenants;
use chronicle_domain::tenant::TenantId;
use clap::{Parser, Subcommand};

use crate::app::{build_state, connect, serve};
use crate::auth::{mint, Role};
use crate::config::{Database, Settings};
use chronicle_projections::embedded::EmbeddedPostgres;

/// Chronicle: the event-sourced backend of WhatsApp-first CRMs.
///
/// Configuration comes from the environment (see the README); with no DATABASE_URL, a private
/// PostgreSQL cluster is started under CHRONICLE_DATA_DIR (default .chronicle).
#[derive(Debug, Parser)]
#[command(name = "chronicle", version)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve GraphQL, webhooks, /health and /metrics (the default).
    Serve {
        /// Load the demo data set first and print a token for it.
        #[arg(long)]
        demo: bool,
    },
    /// Operator commands.
    #[command(subcommand)]
    Admin(Admin),
    /// Development mode's WhatsApp sandbox (needs `chronicle serve` running on CHRONICLE_BIND).
    #[command(subcommand)]
    Sandbox(SandboxCommand),
}

/// What the WhatsApp sandbox can play.
#[derive(Debug, Subcommand)]
pub enum SandboxCommand {
    /// A customer writes in: a WhatsApp message from --from to the tenant's number, delivered
    /// to the running server's webhook as Meta would deliver it (signed). Prints the message id.
    Inbound {
        /// The tenant whose WhatsApp number receives the message.
        #[arg(long)]
        tenant: String,
        /// The customer's phone number (E.164, `+` optional).
        #[arg(long)]
        from: String,
        /// The customer's WhatsApp profile name.
        #[arg(long)]
        name: Option<String>,
        /// The text (or, with --image, the caption).
        #[arg(long, required_unless_present = "image")]
        text: Option<String>,
        /// An image file to send, .jpg, .png or .webp up to 3 MiB (served to Chronicle's media
        /// fetcher by the sandbox).
        #[arg(long, value_name = "FILE")]
        image: Option<std::path::PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum Admin {
    /// Create a tenant (or rename an existing one).
    CreateTenant {
        /// The tenant id: 2-63 characters of a-z, 0-9, '_' and '-'.
        tenant: String,
        /// The organization's name.
        #[arg(long)]
        name: String,
    },
    /// Map a WhatsApp Business phone-number id to a tenant; deliveries kept for it are processed.
    MapNumber {
        #[arg(long)]
        tenant: String,
        /// The phone-number id from the Meta app (metadata.phone_number_id in deliveries).
        #[arg(long)]
        phone_number_id: String,
    },
    /// Map a WhatsApp Business Account id to a tenant: its templates are submitted there for
    /// Meta's review, and the account's template status updates (kept until mapped) are the
    /// tenant's.
    MapAccount {
        #[arg(long)]
        tenant: String,
        /// The WhatsApp Business Account id from Meta's Business Manager (entry.id in template
        /// status deliveries).
        #[arg(long)]
        waba_id: String,
    },
    /// Invite a person to a tenant with a role (the way to a tenant's first owner): prints the
    /// invitation token, valid 7 days, to hand to them; they accept it with a password at
    /// `POST /auth/accept-invitation`. Later users are invited by owners and admins in GraphQL
    /// (`inviteUser`).
    InviteUser {
        #[arg(long)]
        tenant: String,
        /// What they sign in with.
        #[arg(long)]
        email: String,
        /// Their name.
        #[arg(long)]
        name: String,
        /// owner, admin, agent, technician, finance, auditor or integrator.
        #[arg(long, default_value = "owner")]
        role: String,
    },
    /// Mint an access token for a user of a tenant (for operators and scripts; people sign in
    /// at `POST /auth/sign-in`). At most CHRONICLE_MAX_MINTED_TOKEN_HOURS (default 168) hours.
    MintToken {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        user: String,
        /// owner, admin, agent, technician, finance, auditor or integrator.
        #[arg(long, default_value = "owner")]
        role: String,
        /// Hours until it expires (at most CHRONICLE_MAX_MINTED_TOKEN_HOURS, default 168).
        #[arg(long, default_value_t = 24)]
        ttl_hours: i64,
    },
    /// Create a key for a tenant's website lead intake (`POST /intake/leads/{source}`, header
    /// X-Intake-Key). The key is printed once; only its hash is stored.
    CreateIntakeKey {
        #[arg(long)]
        tenant: String,
    },
    /// Put webhook deliveries parked as failed (refused input) back in the queue, once the
    /// cause is fixed; they are processed at once.
    RequeueFailed,
    /// Set a tenant's unit price of a billable feature (message, broadcast_recipient, report)
    /// in milli-tokens (1 token = 1000), or remove it with --remove (the feature is then
    /// unmetered for the tenant).
    SetPrice {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        feature: String,
        #[arg(long, required_unless_present = "remove")]
        unit_price: Option<i64>,
        #[arg(long)]
        remove: bool,
    },
    /// Stop the embedded PostgreSQL cluster (when no DATABASE_URL is set).
    StopDb,
}

fn tenant(id: &str) -> anyhow::Result<TenantId> {
    TenantId::parse(id).map_err(|e| anyhow::anyhow!("{e}"))
}

/// Runs the command line; errors are printed, never panicked.
pub async fn main(cli: Cli) -> ExitCode {
    let settings = match Settings::from_env() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("chronicle: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    crate::telemetry::init(settings.log_format);
    let result = match cli.command.unwrap_or(Command::Serve { demo: false }) {
        Command::Serve { demo } => serve(settings, demo).await,
        Command::Admin(admin) => run_admin(settings, admin).await,
        Command::Sandbox(command) => run_sandbox(settings, command).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("chronicle: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Plays a sandbox command against the running server: a short-lived owner token of the
/// tenant, minted with the development secret, authenticates the request.
async fn run_sandbox(settings: Settings, command: SandboxCommand) -> anyhow::Result<()> {
    if !settings.whatsapp_sandbox {
        anyhow::bail!(
            "the WhatsApp sandbox runs only in development mode (no DATABASE_URL) with no WHATSAPP_GRAPH_BASE_URL"
        );
    }
    let SandboxCommand::Inbound {
        tenant: t,
        from,
        name,
        text,
        image,
    } = command;
    let tenant = tenant(&t)?;
    let (image_base64, mime_type) = match image {
        Some(path) => {
            use base64::Engine as _;
            let extension = path
                .extension()
                .and_then(|e| e.to_str())
                .map(str::to_ascii_lowercase)
                .unwrap_or_default();
            let mime = match extension.as_str() {
                "jpg" | "jpeg" => "image/jpeg",
                "png" => "image/png",
                "webp" => "image/webp",
                _ => anyhow::bail!("{}: send a .jpg, .png or .webp image", path.display()),
            };
            let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
            // Base64 grows it by a third; the server takes request bodies up to 4 MiB.
            if bytes.is_empty() || bytes.len() > 3 * 1024 * 1024 {
                anyhow::bail!("{}: an image is 1 byte to 3 MiB", path.display());
            }
            (
                Some(base64::engine::general_purpose::STANDARD.encode(bytes)),
                Some(mime.to_string()),
            )
        }
        None => (None, None),
    };
    let token = mint(
        settings.jwt_secret.expose(),
        &tenant,
        "sandbox",
        Role::Owner,
        chrono::Duration::minutes(5),
    )?;
    let url = format!("{}/sandbox/inbound", crate::sandbox::local_origin(settings.bind));
    let body = serde_json::json!({"from": from, "name": name, "text": text, "image_base64": image_base64, "mime_type": mime_type});
    let response = reqwest::Client::new()
        .post(&url)
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .with_context(|| format!("reaching the server at {url}: is `chronicle serve` running?"))?;
    let status = response.status();
    let answer: serde_json::Value = response.json().await.unwrap_or_default();
    if !status.is_success() {
        let reason = answer["errors"][0]["message"]
            .as_str()
            .or_else(|| answer["error"]["message"].as_str())
            .map(str::to_string)
            .unwrap_or_else(|| answer.to_string());
        anyhow::bail!("the sandbox refused ({status}): {reason}");
    }
    println!("{}", answer["messageId"].as_str().unwrap_or_default());
    Ok(())
}

async fn run_admin(settings: Settings, admin: Admin) -> anyhow::Result<()> {
    match admin {
        Admin::InviteUser {
            tenant: t,
            email,
            name,
            role,
        } => {
            let role = Role::parse(role.trim()).with_context(|| {
                format!("unknown role {role:?}: use owner, admin, agent, technician, finance, auditor or integrator")
            })?;
            let t = tenant(&t)?;
            let pool = connect(&settings).await?;
            if !tenants::tenant_exists(&pool, &t).await? {
                anyhow::bail!("no tenant {t}; create it with `chronicle admin create-tenant {t} --name ...`");
            }
            let commands = chronicle_commands::dispatch::Commands::new(pool, settings.snapshots);
            let metadata = chronicle_domain::metadata::CommandMetadata {
                tenant_id: t.clone(),
                actor: chronicle_domain::metadata::Actor::System {
                    component: "admin-cli".into(),
                },
                correlation_id: uuid::Uuid::new_v4().to_string(),
                causation_id: "admin-cli:invite-user".into(),
            };
            let issued = commands
                .invite_user(
                    chronicle_commands::users::Invite {
                        email,
                        name,
                        role: role.as_str().to_string(),
                    },
                    &metadata,
                    &crate::permissions::Permission::ManageUsers.role_names(),
                )
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            println!("user:       {}", issued.user_id);
            println!("expires at: {}", issued.expires_at.to_rfc3339());
            println!("invitation: {}", issued.token);
            println!(
                "\nHand the invitation to them; they accept it with a password:\n  curl -X POST {}/auth/accept-invitation -H 'content-type: application/json' \\\n    -d '{{\"token\": \"<invitation>\", \"password\": \"<at least 10 characters>\"}}'",
                settings.public_url
            );
        }
        Admin::MintToken {
            tenant: t,
            user,
            role,
            ttl_hours,
        } => {
            let role = Role::parse(&role).with_context(|| {
                format!("unknown role {role:?}: use owner, admin, agent, technician, finance, auditor or integrator")
            })?;
            if ttl_hours <= 0 {
                anyhow::bail!("--ttl-hours must be positive");
            }
            let max_hours = i64::try_from(settings.sessions.max_minted_ttl.as_secs() / 3600).unwrap_or(i64::MAX);
            if ttl_hours > max_hours {
                anyhow::bail!(
                    "--ttl-hours is at most {max_hours} (CHRONICLE_MAX_MINTED_TOKEN_HOURS): tokens of people come from \
                     sign-in, programs use API keys"
                );
            }
            let t = tenant(&t)?;
            let pool = connect(&settings).await?;
            if !tenants::tenant_exists(&pool, &t).await? {
                anyhow::bail!("no tenant {t}; create it with `chronicle admin create-tenant {t} --name ...`");
            }
            println!(
                "{}",
                mint(
                    settings.jwt_secret.expose(),
                    &t,
                    &user,
                    role,
                    chrono::Duration::hours(ttl_hours)
                )?
            );
        }
        Admin::CreateTenant { tenant: t, name } => {
            let t = tenant(&t)?;
            let pool = connect(&settings).await?;
            let created = tenants::create_tenant(&pool, &t, &name).await?;
            println!("tenant {t} {}", if created { "created" } else { "renamed" });
        }
        Admin::MapNumber {
            tenant: t,
            phone_number_id,
        } => {
            let t = tenant(&t)?;
            let pool = connect(&settings).await?;
            let released = tenants::map_whatsapp_number(&pool, &t, &phone_number_id).await?;
            let state = build_state(pool, &settings).await?;
            let processed = state.workers.inbox.drain().await?;
            println!(
                "phone-number id {phone_number_id} mapped to tenant {t}; {released} kept deliveries released, {} processed",
                processed.done
            );
        }
        Admin::MapAccount { tenant: t, waba_id } => {
            let t = tenant(&t)?;
            let pool = connect(&settings).await?;
            let released = tenants::map_whatsapp_account(&pool, &t, &waba_id).await?;
            let state = build_state(pool, &settings).await?;
            let processed = state.workers.inbox.drain().await?;
            println!(
                "WhatsApp Business Account {waba_id} mapped to tenant {t}; {released} kept template updates released, {} processed",
                processed.done
            );
        }
        Admin::CreateIntakeKey { tenant: t } => {
            let t = tenant(&t)?;
            let pool = connect(&settings).await?;
            if !tenants::tenant_exists(&pool, &t).await? {
                anyhow::bail!("no tenant {t}; create it with `chronicle admin create-tenant {t} --name ...`");
            }
            let key = chronicle_commands::intake::forms::create_intake_key(&pool, &t).await?;
            eprintln!("intake key for tenant {t} (shown once; send it as X-Intake-Key):");
            println!("{key}");
        }
        Admin::RequeueFailed => {
            let pool = connect(&settings).await?;
            let requeued = chronicle_commands::intake::inbox::requeue_failed(&pool).await?;
            let state = build_state(pool, &settings).await?;
            let processed = state.workers.inbox.drain().await?;
            println!(
                "{requeued} failed deliveries requeued; {} processed, {} failed again",
                processed.done, processed.failed
            );
        }
        Admin::SetPrice {
            tenant: t,
            feature,
            unit_price,
            remove,
        } => {
            let t = tenant(&t)?;
            let pool = connect(&settings).await?;
            let commands = chronicle_commands::dispatch::Commands::new(pool, Default::default());
            let price = if remove { None } else { unit_price };
            chronicle_commands::metering::Metering::new(commands.clone())
                .set_price(&t, &feature, price, "cli")
                .await?;
            // Wake the server's readers before exiting (appends announce after commit).
            commands.flush_announcements(std::time::Duration::from_secs(2)).await;
            match price {
                Some(p) => println!("tenant {t}: {feature} costs {p} milli-tokens per unit"),
                None => println!("tenant {t}: {feature} is unmetered"),
            }
        }
        Admin::StopDb => match settings.database {
            Database::Embedded => {
                EmbeddedPostgres::new(&settings.data_dir)?.stop()?;
                println!("embedded PostgreSQL stopped");
            }
            Database::Url(_) => anyhow::bail!("DATABASE_URL is set: Chronicle does not manage that server"),
        },
    }
    Ok(())
}
