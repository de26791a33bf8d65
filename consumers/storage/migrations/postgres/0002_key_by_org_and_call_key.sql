-- call_logs is keyed by (org, call_key): a call_key is the API's id, which
-- is unique only within one org, so two orgs' calls with the same id used to
-- share (and overwrite) one row. Every existing row keeps its place: call_key
-- alone was unique, so (org, call_key) is too. Rows one org overwrote in
-- another's name before this migration come back by replaying the calls
-- topic into the storage consumer group.
ALTER TABLE call_logs
    DROP CONSTRAINT call_logs_pkey,
    ADD CONSTRAINT call_logs_pkey PRIMARY KEY (org, call_key);
