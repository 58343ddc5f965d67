//! `sandboxInbound`: development mode's customer writing in. It plays a WhatsApp message from
//! `from` to the caller's tenant through the WhatsApp sandbox (`crate::sandbox`): a signed
//! webhook delivery to Chronicle's own `/webhooks/whatsapp`, processed like any other. Outside
//! development mode (no sandbox) it is refused with `SANDBOX_OFF`.

use async_graphql::{Context, Object};

use super::receipt::{receipt, Receipt};
use super::{caller, pool, require};
use crate::error::{ApiError, IntoGraphql};
use crate::sandbox::{Inbound, Sandbox};

#[derive(Default)]
pub struct SandboxMutation;

#[Object]
impl SandboxMutation {
    /// Development mode only: a customer writes in. Delivers a text from `from` to the
    /// tenant's WhatsApp number through the WhatsApp sandbox, as Meta would (signed webhook);
    /// the conversation shows it once the inbox worker has processed it. The receipt's `id` is
    /// the WhatsApp message id (`wamid.sandbox.in.…`); its cursor is the log's start, since the
    /// message is appended by the inbox worker afterwards. Owners, admins and
    /// agents. Refused with `SANDBOX_OFF` in production, `NO_WHATSAPP_NUMBER` when the tenant
    /// has no number mapped, `BAD_SANDBOX_INPUT` for a malformed number or an empty or
    /// over-long text.
    async fn sandbox_inbound(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The customer's phone number, E.164 (`+` optional, 8 to 15 digits).")] from: String,
        #[graphql(desc = "The customer's WhatsApp profile name (default: `Sandbox` and the last 4 digits).")]
        name: Option<String>,
        #[graphql(desc = "The message text, 1 to 4096 characters.")] text: String,
    ) -> async_graphql::Result<Receipt> {
        receipt(async move {
            let caller = caller(ctx).gql()?;
            require(
                crate::sandbox::may_play_inbound(caller),
                caller,
                "play sandbox messages",
            )
            .gql()?;
            let sandbox = ctx
                .data_opt::<Option<Sandbox>>()
                .and_then(Option::as_ref)
                .ok_or_else(|| {
                    ApiError::bad_request(
                    "SANDBOX_OFF",
                    "the WhatsApp sandbox runs only in development mode (no DATABASE_URL, no WHATSAPP_GRAPH_BASE_URL)",
                )
                })
                .gql()?;
            let inbound = Inbound {
                from,
                name,
                text: Some(text),
                image_base64: None,
                mime_type: None,
            };
            let message_id = sandbox
                .inbound(pool(ctx).gql()?, caller.tenant.as_str(), inbound)
                .await
                .map_err(ApiError::from)
                .gql()?;
            Ok(Receipt::new(message_id))
        })
        .await
    }
}
