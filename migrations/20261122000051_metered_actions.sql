-- What metering charged, by action (`chronicle_commands::metering`): one row per billable
-- action debited from a wallet through `Metering::charge`, so whoever learns that the action
-- failed (the GraphQL send, the WhatsApp sender on a definitive refusal) knows what to refund.
--
-- `action_reference` is the action's idempotency key (a user's send:
-- `message:<contact id>:<idempotency key>`); `debit_reference` the wallet debit's reference.
-- Campaign messages are paid from a reservation and never appear here, so the sender never
-- refunds them.
--
-- state: charging (row written, debit not yet known), charged, refused (insufficient
-- balance: nothing was debited), refunded.
CREATE TABLE metered_actions
(
    tenant_id         text        NOT NULL,
    action_reference  text        NOT NULL,
    wallet_id         text        NOT NULL,
    debit_reference   text        NOT NULL,
    feature           text        NOT NULL,
    quantity          bigint      NOT NULL,
    amount            bigint      NOT NULL,
    state             text        NOT NULL DEFAULT 'charging',
    refunded          boolean     NOT NULL DEFAULT false,
    refund_reference  text,
    refund_reason     text,
    charged_at        timestamptz NOT NULL DEFAULT now(),
    refunded_at       timestamptz,
    PRIMARY KEY (tenant_id, action_reference)
);

-- Written and read by the write side only (every tenant from the sender): not a read model.
GRANT SELECT, INSERT, UPDATE ON metered_actions TO chronicle_app;
