package lake

import (
	"math"
	"path/filepath"
	"strings"
	"time"

	"github.com/callstream/callstream/schemas"
)

// Row is one event revision as stored in the lake's Parquet files. The org,
// dt and hour columns are not stored: they come from the directory names
// (hive partitioning), as Spark, Trino, Athena and DuckDB expect.
// schemas/call_event.v1.parquet.md documents every column.
type Row struct {
	EventID             string     `parquet:"event_id"`
	CallKey             string     `parquet:"call_key"`
	Revision            int32      `parquet:"revision"`
	CallID              *string    `parquet:"call_id,optional"`
	SourceNumber        string     `parquet:"source_number,dict"`
	DestinationNumber   string     `parquet:"destination_number,dict"`
	CallType            string     `parquet:"call_type,dict"`
	CallStatus          string     `parquet:"call_status,dict"`
	CreationTime        time.Time  `parquet:"creation_time,timestamp(microsecond:utc),delta"`
	StartTime           *time.Time `parquet:"start_time,timestamp(microsecond:utc)"`
	EndTime             *time.Time `parquet:"end_time,timestamp(microsecond:utc)"`
	CallDurationSeconds int32      `parquet:"call_duration_seconds"`
	EndReason           string     `parquet:"end_reason,dict"`
	ObservedAt          time.Time  `parquet:"observed_at,timestamp(microsecond:utc),delta"`
	Raw                 []byte     `parquet:"raw,string"`
	KafkaPartition      int32      `parquet:"kafka_partition"`
	KafkaOffset         int64      `parquet:"kafka_offset,delta"`
}

// rowOf converts an event; partition and offset say where it was read.
func rowOf(e *schemas.CallEvent, partition int32, offset int64) Row {
	return Row{
		EventID:             e.EventID,
		CallKey:             e.CallKey,
		Revision:            clamp32(int64(e.Revision)),
		CallID:              e.CallID,
		SourceNumber:        e.SourceNumber,
		DestinationNumber:   e.DestinationNumber,
		CallType:            e.CallType,
		CallStatus:          e.CallStatus,
		CreationTime:        e.CreationTime.UTC(),
		StartTime:           utcPtr(e.StartTime),
		EndTime:             utcPtr(e.EndTime),
		CallDurationSeconds: clamp32(e.CallDurationSeconds),
		EndReason:           e.EndReason,
		ObservedAt:          e.ObservedAt.UTC(),
		Raw:                 e.Raw, // shared, not copied: the delivery is not reused
		KafkaPartition:      partition,
		KafkaOffset:         offset,
	}
}

// size estimates the bytes a row holds before compression, for rotation.
func (r *Row) size() int64 {
	n := len(r.EventID) + len(r.CallKey) + len(r.SourceNumber) + len(r.DestinationNumber) +
		len(r.CallType) + len(r.CallStatus) + len(r.EndReason) + len(r.Raw) + 8*4 + 4*3 + 8
	if r.CallID != nil {
		n += len(*r.CallID)
	}
	return int64(n)
}

func clamp32(v int64) int32 {
	switch {
	case v > math.MaxInt32:
		return math.MaxInt32
	case v < math.MinInt32:
		return math.MinInt32
	}
	return int32(v)
}

func utcPtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}

// dirKey names the directory a row goes to, relative to the lake root.
// It holds the date as numbers: formatting it for every event would cost
// an allocation each.
type dirKey struct {
	org        string
	year       int
	month, day int
	hour       int // -1 without hour partitioning
}

// keyOf partitions on the call's creation time in UTC, never on arrival
// time, so a late record of yesterday's call lands in yesterday's directory.
func keyOf(org string, created time.Time, hourly bool) dirKey {
	c := created.UTC()
	y, m, d := c.Date()
	k := dirKey{org: org, year: y, month: int(m), day: d, hour: -1}
	if hourly {
		k.hour = c.Hour()
	}
	return k
}

// path returns the directory of k relative to the lake root.
func (k dirKey) path() string {
	day := time.Date(k.year, time.Month(k.month), k.day, 0, 0, 0, 0, time.UTC).Format(time.DateOnly)
	parts := []string{tableDir, "org=" + escapePartition(k.org), "dt=" + day}
	if k.hour >= 0 {
		parts = append(parts, "hour="+twoDigits(k.hour))
	}
	return filepath.Join(parts...)
}

func twoDigits(h int) string { return string([]byte{byte('0' + h/10), byte('0' + h%10)}) }

// tableDir is the table's directory under the root.
const tableDir = "call_logs"

// escapePartition escapes a partition value the way Hive and Spark do
// (%XX for the characters they escape), so an org handle can never split
// into two directory levels; "org=" before it keeps ".." harmless.
func escapePartition(v string) string {
	if v == "" {
		return "__HIVE_DEFAULT_PARTITION__"
	}
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c < 0x20 || c == 0x7f || strings.IndexByte("\"#%'*/:=?\\{[]^", c) >= 0 {
			const hex = "0123456789ABCDEF"
			b.WriteByte('%')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&0xf])
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}
