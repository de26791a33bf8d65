package audit

import (
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"
)

// NotChecked is the count of a sink the audit does not check (not
// configured); the table shows it as "-".
const NotChecked int64 = -1

// Row is one organization's counts for one window.
type Row struct {
	Org    string
	Window Window
	// API is the API's count for the window; the others are distinct
	// (org, call_key) found downstream, or NotChecked.
	API, Published, Stored, Lake int64
}

// Missing is the largest shortfall of a checked count against the API:
// the calls absent from at least one place.
func (r Row) Missing() int64 {
	var m int64
	for _, n := range []int64{r.Published, r.Stored, r.Lake} {
		if n != NotChecked && r.API-n > m {
			m = r.API - n
		}
	}
	return m
}

// Extra is the largest excess of a checked count over the API: calls
// found downstream that the API no longer counts (deleted upstream, or a
// call published under two keys).
func (r Row) Extra() int64 {
	var e int64
	for _, n := range []int64{r.Published, r.Stored, r.Lake} {
		if n != NotChecked && n-r.API > e {
			e = n - r.API
		}
	}
	return e
}

// Summary totals a table.
type Summary struct {
	Windows, GapWindows, ExtraWindows int
	Missing, Extra                    int64
}

// Summarize totals rows.
func Summarize(rows []Row) Summary {
	var s Summary
	for _, r := range rows {
		s.Windows++
		if m := r.Missing(); m > 0 {
			s.GapWindows++
			s.Missing += m
		}
		if e := r.Extra(); e > 0 {
			s.ExtraWindows++
			s.Extra += e
		}
	}
	return s
}

// WriteTable prints rows as an aligned table: org, window, api, published,
// stored, lake, missing; "-" for a count not checked.
func WriteTable(w io.Writer, rows []Row) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	cell := func(n int64) string {
		if n == NotChecked {
			return "-"
		}
		return strconv.FormatInt(n, 10)
	}
	fmt.Fprintln(tw, "org\twindow\tapi\tpublished\tstored\tlake\tmissing\t")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%d\t\n", r.Org, r.Window.Label(), r.API,
			cell(r.Published), cell(r.Stored), cell(r.Lake), r.Missing())
	}
	return tw.Flush()
}
