-- Container sessions: the Docker container id and image a session runs as (SessionStarted /
-- SessionEnded `container`, `image`); '' for process sessions and for rows written before.
-- A constant default: PostgreSQL adds these without rewriting the table.
ALTER TABLE sessions
    ADD COLUMN container text NOT NULL DEFAULT '',
    ADD COLUMN image     text NOT NULL DEFAULT '';
