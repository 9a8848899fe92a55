-- Which process holds an agent name (scheduler/agents/register.ts). Every agent keeps a random identity in
-- its work dir and sends it with Register; the scheduler stores only its SHA-256 (the identity is a bearer
-- value: a copy of this table must not let anyone take a name over). A Register for a name held by a live
-- agent with another identity is refused, naming that agent's address and since when it holds the name.
-- Rows from before this migration have no identity: the next Register sets it.
ALTER TABLE agents ADD COLUMN identity_sha256 text;
-- The peer address the name's holder registered from (gRPC's view, "ip:port"), for that refusal message.
ALTER TABLE agents ADD COLUMN address text NOT NULL DEFAULT '';
