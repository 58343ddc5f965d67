-- Payment requests (issue 16): the write side's index of provider ids, and the callbacks it
-- refused. Write-side registry tables beside the log (decision 0001), written and read only by
-- `chronicle_commands::payments::requests`; not read models.

-- One row per initiation a provider accepted: the provider's own id for it (M-Pesa's
-- `CheckoutRequestID`) and the payment request it belongs to. A callback is matched to its
-- request by this id and nothing else: an id that is not here belongs to no request of ours.
CREATE TABLE payment_request_refs
(
    tenant_id           text        NOT NULL,
    provider            text        NOT NULL,
    provider_request_id text        NOT NULL,
    request_id          text        NOT NULL,
    created_at          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, provider, provider_request_id)
);
CREATE INDEX payment_request_refs_by_request ON payment_request_refs (tenant_id, request_id);

-- Callbacks a provider vouched for (secret path, signature) that paid nothing: no request has
-- their id, another amount than asked, a second payment of a paid request, a late or cancelled
-- request. Kept for finance with the reason's code; one row per provider id and provider
-- reference, counting repeated deliveries. Amounts and references only: never the payer's phone.
CREATE TABLE payment_callback_refusals
(
    tenant_id           text        NOT NULL,
    provider            text        NOT NULL,
    provider_request_id text        NOT NULL,
    provider_reference  text        NOT NULL,
    -- The request the id belongs to, when one does.
    request_id          text,
    reason              text        NOT NULL,
    amount_minor        bigint,
    currency            text,
    deliveries          integer     NOT NULL DEFAULT 1,
    first_seen_at       timestamptz NOT NULL DEFAULT now(),
    last_seen_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, provider, provider_request_id, provider_reference)
);
CREATE INDEX payment_callback_refusals_recent ON payment_callback_refusals (tenant_id, last_seen_at DESC);

GRANT SELECT, INSERT ON payment_request_refs TO chronicle_app;
GRANT SELECT, INSERT, UPDATE ON payment_callback_refusals TO chronicle_app;
