-- call_logs holds the latest revision of every call, keyed by call_key.
-- Times are TEXT in a fixed-width RFC 3339 form with nine fractional digits
-- and a Z suffix (2024-05-01T10:00:00.000000000Z), so text order is time
-- order and SQLite's date functions read them.
CREATE TABLE call_logs (
    call_key              TEXT    NOT NULL PRIMARY KEY CHECK (call_key <> ''),
    event_id              TEXT    NOT NULL,
    org                   TEXT    NOT NULL,
    revision              INTEGER NOT NULL CHECK (revision >= 1),
    call_id               TEXT,
    source_number         TEXT    NOT NULL,
    destination_number    TEXT    NOT NULL,
    call_type             TEXT    NOT NULL,
    call_status           TEXT    NOT NULL,
    creation_time         TEXT    NOT NULL,
    start_time            TEXT,
    end_time              TEXT,
    call_duration_seconds INTEGER NOT NULL CHECK (call_duration_seconds >= 0),
    end_reason            TEXT    NOT NULL,
    observed_at           TEXT    NOT NULL,
    raw                   TEXT    NOT NULL CHECK (json_valid(raw))
);

-- The API's filters are an org and a creation_time range, optionally
-- narrowed by call_type and call_status. One index serves them all: the range
-- scan runs on (org, creation_time) and the two low-cardinality filters are
-- checked on the index entries, without reading the rows. Every extra index
-- costs about a sixth of the write throughput (see doc.go).
CREATE INDEX call_logs_org_creation_time ON call_logs (org, creation_time, call_type, call_status);
