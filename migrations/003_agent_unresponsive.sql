-- An agent that let a dispatch go unacknowledged is offered nothing more until it is heard from again
-- (its next heartbeat clears this), so a stuck agent is not handed the same run over and over.
ALTER TABLE agents ADD COLUMN unresponsive_since timestamptz;
