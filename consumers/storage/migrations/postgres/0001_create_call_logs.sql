-- call_logs holds the latest revision of every call, keyed by call_key.
CREATE TABLE call_logs (
    call_key              text        NOT NULL PRIMARY KEY CHECK (call_key <> ''),
    event_id              text        NOT NULL,
    org                   text        NOT NULL,
    revision              integer     NOT NULL CHECK (revision >= 1),
    call_id               text,
    source_number         text        NOT NULL,
    destination_number    text        NOT NULL,
    call_type             text        NOT NULL,
    call_status           text        NOT NULL,
    creation_time         timestamptz NOT NULL,
    start_time            timestamptz,
    end_time              timestamptz,
    call_duration_seconds bigint      NOT NULL CHECK (call_duration_seconds >= 0),
    end_reason            text        NOT NULL,
    observed_at           timestamptz NOT NULL,
    raw                   jsonb       NOT NULL
);

-- The API's filters are an org and a creation_time range, optionally
-- narrowed by call_type and call_status. One index serves them all: the range
-- scan runs on (org, creation_time) and the two low-cardinality filters are
-- checked on the index entries, without reading the rows. Every extra index
-- costs about a sixth of the write throughput (see doc.go).
CREATE INDEX call_logs_org_creation_time ON call_logs (org, creation_time, call_type, call_status);
