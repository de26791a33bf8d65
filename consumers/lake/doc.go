// Package lake is the consumer plug-in that writes call events to Parquet
// files a data team can query directly with DuckDB, Spark, Trino or Athena:
// the layout and exactly-once file semantics of the Confluent S3 sink
// connector, on a local directory.
//
// # Layout
//
// Files live under the root directory (Config.Dir, default
// ./.callstream/lake, env CALLSTREAM_LAKE_DIR) in hive-style partitions:
//
//	<root>/call_logs/org=<org>/dt=<YYYY-MM-DD>/part-<partition>-<first_offset>.parquet
//	<root>/call_logs/org=<org>/dt=<YYYY-MM-DD>/hour=<HH>/...   (Config.HourPartition)
//
// dt and hour come from the call's creation_time in UTC, never from the
// time the event arrived, so a late revision of yesterday's call lands in
// yesterday's directory. Org handles are escaped as Hive does (%XX). The
// org and dt values live only in the path, as hive partitioning expects;
// the files hold the other columns, documented with their Parquet types in
// schemas/call_event.v1.parquet.md. An object store (S3-compatible) is the
// natural next target: only writeFile's temporary-file-and-rename step and
// the startup listing touch the file system; on S3 a single PUT of the
// finished object is the atomic step, as in the Confluent connector.
//
// # File names and exactly-once files
//
// A file holds records of one Kafka partition bound for one directory, and
// is named from that partition and the smallest offset it holds, zero
// padded to ten digits: part-3-0000001234.parquet. Its footer records the
// topic, partition, first and last offset (key-value metadata
// callstream.*), and every row carries kafka_partition and kafka_offset.
//
// A file is written to a hidden temporary name in its directory
// (.part-...parquet.<random>.tmp), synced, renamed to its final name and
// the directory synced; only then do the handlers of its events return, so
// the runtime acknowledges them and the bus commits their offsets (kafkabus
// commits per partition only up to the contiguous prefix of acknowledged
// offsets). Readers therefore only ever see complete files, and every
// acknowledged event is in a renamed file.
//
// One Kafka partition feeds many directories (orgs, days) at once, so one
// open file per (partition, directory) is kept. The files of a partition
// do not close together: a busy org's file may be renamed while a quiet
// org's file holding an earlier offset is still open. The committed offset
// then stays before the quiet file's first record, and after a crash Kafka
// redelivers records that are already in the busy org's renamed file. Name
// determinism alone cannot make the rewrite land on the same file: file
// boundaries depend on timing (idle and age closes, arrival order of
// concurrent handlers, a config change between runs). So the lake keeps, per
// partition, the set of offsets already in renamed files and acknowledges a
// redelivered record found there without writing it again. The set is built
// lazily from disk: when a partition's first record (offset o) arrives, the
// lake reads the kafka_offset column of every file of that partition whose
// last offset is at or above o (file names give the first offset, footers
// the last), and extends the set downwards if an earlier offset shows up.
// Offsets it writes are added as files are renamed, and old ones are
// forgotten once far behind (they are read back from disk if ever needed).
// A record redelivered while its file is still open waits for that file.
// The files are the only state: the lake needs no Deps.State. The price is
// at start, when the first record of a partition makes the lake read the
// footers of that partition's files (one small read each); a manifest of
// recent files would bound this for lakes of very many files.
//
// The argument, per partition p: (1) an event is acknowledged only when its
// offset is in a renamed file, so the committed offset never passes an
// event that is not in the lake: nothing is lost; (2) an offset is written
// only if no renamed file holds it: nothing is written twice, and no new
// file can take an existing file's name, since that file's first offset
// would be covered (a replacement is logged as a warning); (3) temporary
// files are never read (the *.parquet glob does not match them), and those
// older than ten minutes are deleted at start.
//
// TestSIGKILLExactlyOnce kills a consumer of the real broker twice in the
// middle of its files (a child process running a minimal consumer loop that
// commits, like kafkabus, only the contiguous acknowledged prefix) and
// checks with parquet-go that every event is present exactly once; with the
// index turned off the same test finds duplicates. TestRuntimeOnKafka runs
// the plug-in in the real consumer runtime on the broker.
//
// The guarantee assumes one lake root per topic (offsets of a recreated
// topic would collide with old file names) and one writer per partition at
// a time. A new owner of a partition reads its files from disk as above, so
// consumers may share a root across restarts and rebalances, with one
// limit: a partition taken away and later given back to the same running
// process is not read from disk again, so records another consumer wrote
// in between could be written twice (a duplicate, never a loss) until the
// runtime tells plug-ins about rebalances.
//
// On the in-process bus (embedded mode) messages carry no Kafka position.
// The lake then numbers events itself (part-local-<n>.parquet, continuing
// after the highest number on disk) and acknowledges each event once it is
// buffered, because that bus delivers one message at a time and keeps no
// message across a crash anyway; Close writes the open files. Exactly-once
// files hold on Kafka.
//
// # Handler, in-flight budget and rotation
//
// HandleBatch appends each row to its open file and blocks until those
// files are renamed (or ctx is done), and the runtime hands over many
// batches at once (Tuning.Concurrency), so many calls wait together. Tuning
// asks the bus for twice Config.MaxBufferedRows unacknowledged messages.
// This way the file decides when the events are durable, the
// acknowledgements follow exactly, and writing full files overlaps with
// filling the next.
//
// A file is closed (written and renamed) when it holds MaxFileRows rows or
// about MaxFileBytes bytes before compression, before a row whose
// creation_time would make it span more than MaxFileSpan, after IdleClose
// without a new row, or MaxFileAge after it was opened, so every event is
// acknowledged in bounded time and an idle partition still closes its
// file. When the open files hold half the in-flight budget the biggest are
// written, so the bus never stalls waiting for acknowledgements. Rows in a
// file are sorted by offset; row groups hold up to RowGroupRows rows.
// Streaming sinks make many medium files: compact old days into larger
// ones with any Parquet tool when scans of them matter.
//
// # Querying with DuckDB
//
// All rows, one per event revision (AllRowsQuery):
//
//	SELECT * FROM read_parquet('<root>/call_logs/**/*.parquet',
//	    hive_partitioning = true, hive_types = {'org': VARCHAR, 'dt': DATE});
//
// The latest revision of each call, the compaction view (LatestRevisionQuery):
//
//	SELECT * FROM read_parquet('<root>/call_logs/**/*.parquet',
//	    hive_partitioning = true, hive_types = {'org': VARCHAR, 'dt': DATE})
//	QUALIFY row_number() OVER (PARTITION BY org, call_key
//	                           ORDER BY revision DESC, observed_at DESC) = 1;
//
// hive_types keeps an org handle made of digits a string. Spark, Trino and
// Athena read the same tree as a table partitioned by org and dt.
package lake
