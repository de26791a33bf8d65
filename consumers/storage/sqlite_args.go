package storage

import (
	"time"
)

// sqliteTime is how times are stored in SQLite: RFC 3339 in UTC with a fixed
// nine-digit fraction, so that comparing the text compares the times.
const sqliteTime = "2006-01-02T15:04:05.000000000Z"

// sqliteArgs builds the arguments of an upsert of some rows, reusing its
// buffers from statement to statement. database/sql takes arguments as
// interfaces, and boxing a string allocates, so the text this package makes
// (the times, the raw record) is not made one string per value: it is
// formatted into one buffer, turned into one string per statement, and each
// argument is a slice of that string. That takes five allocations per row
// off the nineteen of building each string on its own.
type sqliteArgs struct {
	args []any
	text []byte
	ends []int // where each formatted value ends in text, in order
}

// of returns the arguments of rows in the order of columns, valid until the
// next call.
func (a *sqliteArgs) of(rows []row) []any {
	a.text, a.ends = a.text[:0], a.ends[:0]
	mark := func() { a.ends = append(a.ends, len(a.text)) }
	for _, r := range rows {
		ev := r.ev
		a.text = appendSQLiteTime(a.text, ev.CreationTime)
		mark()
		if ev.StartTime != nil {
			a.text = appendSQLiteTime(a.text, *ev.StartTime)
			mark()
		}
		if ev.EndTime != nil {
			a.text = appendSQLiteTime(a.text, *ev.EndTime)
			mark()
		}
		a.text = appendSQLiteTime(a.text, ev.ObservedAt)
		mark()
		if len(ev.Raw) == 0 {
			a.text = append(a.text, "null"...) // an absent record is stored as JSON null
		} else {
			a.text = append(a.text, ev.Raw...)
		}
		mark()
	}
	text := string(a.text)
	k, from := 0, 0
	next := func() string {
		s := text[from:a.ends[k]]
		from = a.ends[k]
		k++
		return s
	}
	a.args = a.args[:0]
	for _, r := range rows {
		ev := r.ev
		creation := next()
		var start, end, callID any
		if ev.StartTime != nil {
			start = next()
		}
		if ev.EndTime != nil {
			end = next()
		}
		observed, raw := next(), next()
		if ev.CallID != nil {
			callID = *ev.CallID
		}
		// int64, not int: database/sql converts other integer types by
		// reflection.
		a.args = append(a.args,
			ev.CallKey, ev.EventID, ev.Org, int64(ev.Revision), callID,
			ev.SourceNumber, ev.DestinationNumber, ev.CallType, ev.CallStatus,
			creation, start, end, ev.CallDurationSeconds, ev.EndReason, observed, raw)
	}
	return a.args
}

// formatSQLiteTime is t.UTC().Format(sqliteTime).
func formatSQLiteTime(t time.Time) string {
	var b [len(sqliteTime)]byte
	return string(appendSQLiteTime(b[:0], t))
}

// appendSQLiteTime appends t.UTC().Format(sqliteTime), written out by hand
// because time.Format was a tenth of the CPU time of a batch.
func appendSQLiteTime(buf []byte, t time.Time) []byte {
	t = t.UTC()
	year, month, day := t.Date()
	if year < 0 || year > 9999 {
		return t.AppendFormat(buf, sqliteTime)
	}
	hour, minute, sec := t.Clock()
	var b [len(sqliteTime)]byte
	put := func(at, width, v int) {
		for i := at + width - 1; i >= at; i-- {
			b[i] = byte('0' + v%10)
			v /= 10
		}
	}
	put(0, 4, year)
	b[4] = '-'
	put(5, 2, int(month))
	b[7] = '-'
	put(8, 2, day)
	b[10] = 'T'
	put(11, 2, hour)
	b[13] = ':'
	put(14, 2, minute)
	b[16] = ':'
	put(17, 2, sec)
	b[19] = '.'
	put(20, 9, t.Nanosecond())
	b[29] = 'Z'
	return append(buf, b[:]...)
}
