-- Session profiles over the whole life: usage per age bucket ("0-5m", "5-30m", "30m-2h", "2h+"; per
-- metric p50, p90, peak, mean, samples) and why the session ended (SessionEnded.reason). '{}' and ''
-- for rows written before, by older agents, and by profiles/build.py's fallback that has no reason.
-- A constant default: PostgreSQL adds these without rewriting the table.
ALTER TABLE session_profiles
    ADD COLUMN by_age     jsonb NOT NULL DEFAULT '{}',
    ADD COLUMN end_reason text  NOT NULL DEFAULT '';
