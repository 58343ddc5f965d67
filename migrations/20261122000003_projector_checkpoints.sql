-- Projector checkpoints: the cursor (transaction id, global position) of the last event each
-- projector has applied. Written in the same transaction as the read-model rows of a batch, so
-- a batch and its checkpoint commit together or not at all.
CREATE TABLE projector_checkpoints
(
    projector     text        PRIMARY KEY,
    last_tx_id    xid8        NOT NULL DEFAULT '0'::xid8,
    last_position bigint      NOT NULL DEFAULT 0,
    events_applied bigint     NOT NULL DEFAULT 0,
    updated_at    timestamptz NOT NULL DEFAULT now()
);
