-- call_logs is keyed by (org, call_key): a call_key is the API's id, which
-- is unique only within one org, so two orgs' calls with the same id used to
-- share (and overwrite) one row. Every existing row keeps its place: call_key
-- alone was unique, so (org, call_key) is too. Rows one org overwrote in
-- another's name before this migration come back by replaying the calls
-- topic into the storage consumer group.
--
-- SQLite cannot change a primary key, so the table is rebuilt (SQLite's
-- "generalized ALTER TABLE procedure"), inside the migration's transaction:
-- a crash leaves the old table as it was. legacy_alter_table keeps RENAME
-- from checking views that name call_logs while it is briefly missing; they
-- read the new table afterwards. Triggers on call_logs are dropped with the
-- old table and must be created again.
PRAGMA legacy_alter_table = ON;

CREATE TABLE call_logs_new (
    call_key              TEXT    NOT NULL CHECK (call_key <> ''),
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
    raw                   TEXT    NOT NULL CHECK (json_valid(raw)),
    PRIMARY KEY (org, call_key)
);

INSERT INTO call_logs_new (call_key, event_id, org, revision, call_id, source_number, destination_number,
    call_type, call_status, creation_time, start_time, end_time, call_duration_seconds,
    end_reason, observed_at, raw)
SELECT call_key, event_id, org, revision, call_id, source_number, destination_number,
    call_type, call_status, creation_time, start_time, end_time, call_duration_seconds,
    end_reason, observed_at, raw
FROM call_logs;

DROP TABLE call_logs;
ALTER TABLE call_logs_new RENAME TO call_logs;

-- The index went with the old table; the same one, see 0001.
CREATE INDEX call_logs_org_creation_time ON call_logs (org, creation_time, call_type, call_status);

PRAGMA legacy_alter_table = OFF;
