-- Telemetry history and session profiles.
-- samples: one row per session per tick, one column per agent.state.SAMPLE_METRICS name
-- (training/data.py reads them by name), declaratively partitioned by day on t.
-- Partitions are created ahead by pspe-ingest and dropped past the retention setting.

CREATE TABLE samples (
    t               timestamptz NOT NULL,
    host            text        NOT NULL,
    session_id      text        NOT NULL,
    seq             bigint      NOT NULL,
    cpu_cores       float8,
    cpu_throttled   float8,
    mem_bytes       float8,
    mem_peak_bytes  float8,
    disk_read_bps   float8,
    disk_write_bps  float8,
    disk_read_iops  float8,
    disk_write_iops float8,
    net_rx_bps      float8,
    net_tx_bps      float8,
    psi_cpu         float8,
    psi_mem         float8,
    psi_io          float8,
    oom_kills       integer     NOT NULL DEFAULT 0,
    app             jsonb
) PARTITION BY RANGE (t);

-- Reads are by time range (training windows, profile builds): partition pruning picks the
-- days, a BRIN index on t the blocks within a day. A btree on (session_id, t) would make
-- per-session lookups faster but cut COPY throughput about 3x (measured: 370k -> 120k
-- rows/s); add one on closed partitions in a later migration if a query needs it.
CREATE INDEX samples_t_brin ON samples USING brin (t);

-- Idempotency: one row per telemetry message ever written, keyed by the agent's (host, seq).
-- Written in the same transaction as the message's rows, so a crash mid-batch leaves
-- neither; a redelivered message finds its key and is skipped.
CREATE TABLE ingested_messages (
    host        text        NOT NULL,
    seq         bigint      NOT NULL,
    kind        text        NOT NULL,
    t           timestamptz NOT NULL,
    ingested_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (host, seq)
);
CREATE INDEX ingested_messages_t ON ingested_messages (t);

CREATE TABLE decisions (
    t           timestamptz NOT NULL,
    host        text        NOT NULL,
    seq         bigint      NOT NULL,
    session_id  text        NOT NULL,
    cpu_request float8      NOT NULL,
    cpu_limit   float8      NOT NULL,
    mem_request bigint      NOT NULL,
    mem_limit   bigint      NOT NULL,
    cpu_burst   float8      NOT NULL DEFAULT 0,
    old         jsonb,
    reasons     text[]      NOT NULL DEFAULT '{}',
    applied     boolean     NOT NULL,
    errors      text[]      NOT NULL DEFAULT '{}'
);
CREATE INDEX decisions_session_t ON decisions (session_id, t);
CREATE INDEX decisions_t ON decisions (t);

CREATE TABLE alerts (
    t          timestamptz NOT NULL,
    host       text        NOT NULL,
    seq        bigint      NOT NULL,
    session_id text        NOT NULL,
    alert      text        NOT NULL,
    severity   text        NOT NULL,
    score      float8,
    message    text        NOT NULL DEFAULT '',
    details    jsonb
);
CREATE INDEX alerts_session_t ON alerts (session_id, t);
CREATE INDEX alerts_t ON alerts (t);

CREATE TABLE sessions (
    host       text        NOT NULL,
    session_id text        NOT NULL,
    started_at timestamptz NOT NULL,
    ended_at   timestamptz,
    end_reason text,
    cgroup     text        NOT NULL DEFAULT '',
    labels     jsonb       NOT NULL DEFAULT '{}',
    limits     jsonb,
    bounds     jsonb,
    PRIMARY KEY (host, session_id, started_at)
);
CREATE INDEX sessions_labels ON sessions USING gin (labels jsonb_path_ops);

-- A finished session's summary; the figures profile_for() aggregates are columns,
-- everything else (all metrics' summaries) is in `metrics`.
CREATE TABLE session_profiles (
    host           text        NOT NULL,
    session_id     text        NOT NULL,
    started_at     timestamptz NOT NULL,
    ended_at       timestamptz NOT NULL,
    duration_s     float8      NOT NULL,
    samples        integer     NOT NULL,
    oom_kills      integer     NOT NULL DEFAULT 0,
    limit_changes  integer     NOT NULL DEFAULT 0,
    labels         jsonb       NOT NULL DEFAULT '{}',
    final_limits   jsonb,
    metrics        jsonb       NOT NULL,
    cpu_p50        float8,
    cpu_p90        float8,
    cpu_p99        float8,
    cpu_peak       float8,
    mem_p50        float8,
    mem_p90        float8,
    mem_p99        float8,
    mem_peak       float8,
    PRIMARY KEY (host, session_id, started_at)
);
CREATE INDEX session_profiles_labels ON session_profiles USING gin (labels jsonb_path_ops);
CREATE INDEX session_profiles_ended ON session_profiles (ended_at DESC);
