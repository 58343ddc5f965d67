//! Service requests on the write side: opening with a sequential ticket number, assigning,
//! resolving and closing, over the `ServiceRequest` aggregate; the SLA is checked by the
//! sweeper ([`super::process`]).

use super::*;

impl ServiceDesk {
    /// Takes the tenant's next ticket number (1, 2, 3, …).
    pub async fn next_ticket_number(&self, tenant: &TenantId) -> Result<u64, CommandError> {
        let number: i64 = sqlx::query_scalar(
            "INSERT INTO service_ticket_numbers (tenant_id, last_number) VALUES ($1, 1)
             ON CONFLICT (tenant_id) DO UPDATE SET last_number = service_ticket_numbers.last_number + 1
             RETURNING last_number",
        )
        .bind(tenant.as_str())
        .fetch_one(self.commands.pool())
        .await?;
        u64::try_from(number).map_err(|e| CommandError::Unexpected(Box::new(e)))
    }

    /// The ticket number an opening uses: the one stored under `key` when there is one, else
    /// the next (stored under `key`, the first stored winning a race).
    async fn ticket_for(&self, tenant: &TenantId, key: Option<&str>) -> Result<u64, CommandError> {
        let Some(key) = key else {
            return self.next_ticket_number(tenant).await;
        };
        let stored = |pool: PgPool| async move {
            sqlx::query_scalar::<_, i64>(
                "SELECT ticket_number FROM service_request_keys WHERE tenant_id = $1 AND idempotency_key = $2",
            )
            .bind(tenant.as_str())
            .bind(key)
            .fetch_optional(&pool)
            .await
        };
        let pool = self.commands.pool().clone();
        let number = match stored(pool.clone()).await? {
            Some(number) => number,
            None => {
                let next = self.next_ticket_number(tenant).await?;
                sqlx::query(
                    "INSERT INTO service_request_keys (tenant_id, idempotency_key, ticket_number) VALUES ($1, $2, $3)
                     ON CONFLICT (tenant_id, idempotency_key) DO NOTHING",
                )
                .bind(tenant.as_str())
                .bind(key)
                .bind(i64::try_from(next).map_err(|e| CommandError::Unexpected(Box::new(e)))?)
                .execute(&pool)
                .await?;
                stored(pool).await?.ok_or_else(|| {
                    CommandError::Unexpected(Box::new(std::io::Error::other("an idempotency key was not stored")))
                })?
            }
        };
        u64::try_from(number).map_err(|e| CommandError::Unexpected(Box::new(e)))
    }

    /// Opens a service request under the tenant's next ticket number (or the ticket its
    /// idempotency key already opened).
    pub async fn open_request(
        &self,
        metadata: &CommandMetadata,
        request: NewServiceRequest,
    ) -> Result<OpenedTicket, CommandError> {
        text(&request.description, "the description")?;
        if request.kind.trim().is_empty() || request.customer_id.trim().is_empty() {
            // The aggregate names the blank field; check before spending a ticket number.
            let field = if request.kind.trim().is_empty() {
                "kind"
            } else {
                "customer id"
            };
            return Err(CommandError::Rejected(DomainError::Service(ServiceError::Blank {
                field,
            })));
        }
        let tenant = &metadata.tenant_id;
        if let Some(key) = &request.idempotency_key {
            if key.is_empty() || key.len() > 200 {
                return Err(CommandError::InvalidInput(
                    "an idempotency key is 1 to 200 characters".into(),
                ));
            }
        }
        let description = self.seal(tenant, &request.customer_id, &request.description).await?;
        let number = self.ticket_for(tenant, request.idempotency_key.as_deref()).await?;
        let request_id = service_request_local_id(number);
        self.commands
            .service_request(
                &request_id,
                ServiceCommand::Open(OpenServiceRequest {
                    ticket_number: number,
                    kind: request.kind,
                    priority: request.priority,
                    customer_id: request.customer_id,
                    installation_id: request.installation_id,
                    description,
                    by: actor_id(metadata),
                    at: request.at,
                }),
                metadata,
            )
            .await?;
        Ok(OpenedTicket {
            number,
            request_id,
            ticket: ticket_label(number),
        })
    }

    /// Assigns (or reassigns) a technician to a pending request.
    pub async fn assign_request(
        &self,
        metadata: &CommandMetadata,
        request_id: &str,
        technician_id: &str,
        at: DateTime<Utc>,
    ) -> Result<Appended, CommandError> {
        self.commands
            .service_request(
                request_id,
                ServiceCommand::Assign {
                    technician_id: technician_id.to_string(),
                    by: actor_id(metadata),
                    at,
                },
                metadata,
            )
            .await
    }

    /// Resolves a pending request (the resolution is sealed under the customer's key).
    pub async fn resolve_request(
        &self,
        metadata: &CommandMetadata,
        request_id: &str,
        resolution: &str,
        at: DateTime<Utc>,
    ) -> Result<Appended, CommandError> {
        text(resolution, "the resolution")?;
        let request: ServiceRequest = load(self.commands.pool(), &metadata.tenant_id, request_id).await?;
        if request.ticket_number().is_none() {
            return Err(CommandError::Rejected(DomainError::Service(
                ServiceError::UnknownServiceRequest,
            )));
        }
        let resolution = self
            .seal(&metadata.tenant_id, request.customer_id(), resolution)
            .await?;
        self.commands
            .service_request(
                request_id,
                ServiceCommand::Resolve {
                    resolution,
                    by: actor_id(metadata),
                    at,
                },
                metadata,
            )
            .await
    }

    /// Closes a resolved request.
    pub async fn close_request(
        &self,
        metadata: &CommandMetadata,
        request_id: &str,
        at: DateTime<Utc>,
    ) -> Result<Appended, CommandError> {
        self.commands
            .service_request(
                request_id,
                ServiceCommand::Close {
                    by: actor_id(metadata),
                    at,
                },
                metadata,
            )
            .await
    }
}
