-- Issue 11 (found through the replay tool's export): a lead's row takes the name, phone and
-- e-mail of every capture attached to it, also of a capture from another contact (another
-- number, attached by its e-mail). The row was cleared only on the erasure of the lead's own
-- contact, so the other contact's details outlived that contact's erasure. The row now records
-- the other contacts whose details it took (`detail_contacts`), and the erasure of any of them
-- clears the details. The details are sealed in the log, so only the projector can fill the
-- new column: the `leads` projector starts over (its tables cleared, its checkpoint at the
-- start) and rebuilds from the log on the next start.
ALTER TABLE leads ADD COLUMN detail_contacts text[] NOT NULL DEFAULT '{}';
DELETE FROM leads;
DELETE FROM lead_stage_transitions;
UPDATE projector_checkpoints
   SET last_tx_id = '0'::xid8, last_position = 0, events_applied = 0, updated_at = now()
 WHERE projector = 'leads';
