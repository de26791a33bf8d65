package unpodsim

import (
	"strconv"
	"time"
)

// renderInput is one version of a call log before it becomes JSON.
type renderInput struct {
	id           string
	source, dest string
	typ          string
	status       string // normalised
	rawStatus    string // as rendered
	created      time.Time
	start, end   *time.Time
	duration     int64
	hms          bool
	reason       string
	millis       bool
	extra        bool
	extraBits    int
	broken       bool
}

// render writes the record by hand: it is the hot path of a 1,000-record
// page and every string in it is plain ASCII.
func (r renderInput) render() []byte {
	b := make([]byte, 0, 384)
	b = append(b, '{')
	if r.id != "" {
		b = appendField(b, "id", r.id)
		b = append(b, ',')
	}
	b = appendField(b, "source_number", r.source)
	b = append(b, ',')
	b = appendField(b, "destination_number", r.dest)
	b = append(b, ',')
	b = appendField(b, "call_type", r.typ)
	b = append(b, ',')
	b = appendField(b, "call_status", r.rawStatus)
	if !r.broken {
		b = append(b, ',')
		b = appendField(b, "creation_time", r.formatTime(r.created))
	}
	b = append(b, `,"start_time":`...)
	b = r.appendTime(b, r.start)
	b = append(b, `,"end_time":`...)
	b = r.appendTime(b, r.end)
	b = append(b, `,"call_duration":`...)
	if r.hms {
		d := r.duration
		b = strconv.AppendQuote(b, strconv.FormatInt(d/3600, 10)+":"+two(d/60%60)+":"+two(d%60))
	} else {
		b = strconv.AppendInt(b, r.duration, 10)
	}
	b = append(b, ',')
	b = appendField(b, "end_reason", r.reason)
	if r.extra {
		if r.extraBits%2 == 0 {
			b = append(b, `,"bridge":1`...)
		}
		b = append(b, `,"metadata":{"campaign":"sim-`...)
		b = strconv.AppendInt(b, int64(r.extraBits%4), 10)
		b = append(b, `","tags":["simulated"]}`...)
	}
	return append(b, '}')
}

func appendField(b []byte, k, v string) []byte {
	b = strconv.AppendQuote(b, k)
	b = append(b, ':')
	return strconv.AppendQuote(b, v)
}

func (r renderInput) formatTime(t time.Time) string {
	if r.millis {
		return t.UTC().Format("2006-01-02T15:04:05.000Z")
	}
	return t.UTC().Format("2006-01-02T15:04:05Z")
}

func (r renderInput) appendTime(b []byte, t *time.Time) []byte {
	if t == nil {
		return append(b, "null"...)
	}
	return strconv.AppendQuote(b, r.formatTime(*t))
}

func two(n int64) string {
	if n < 10 {
		return "0" + strconv.FormatInt(n, 10)
	}
	return strconv.FormatInt(n, 10)
}
