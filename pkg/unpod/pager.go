package unpod

import (
	"context"
	"errors"
	"io"
	"iter"
)

// Pager walks the pages of one call-logs query (typically one time window)
// from page 1 to the last page that the API's count implies.
//
// The API pages by offset over a live, newest-first list, so a record that
// appears while the pager is between pages shifts later pages: a record can
// then be read twice or, if records vanish from a filtered view, skipped.
// The pager cannot prevent that, but it notices it through count and
// reports it in CountChanged; a caller that needs the whole window reads it
// again.
type Pager struct {
	c        *Client
	q        Query
	next     int // next page to fetch
	size     int // records per page the server actually uses
	first    int // count on page 1, -1 before
	last     int // count on the latest page
	maxCount int
	changed  bool
	done     bool
}

// NewPager returns a Pager over q, starting at page 1. q.PageSize 0 means the
// API's default of 20.
func (c *Client) NewPager(q Query) *Pager {
	if q.PageSize <= 0 {
		q.PageSize = DefaultPageSize
	}
	return &Pager{c: c, q: q, next: 1, size: q.PageSize, first: -1}
}

// Next fetches the next page. It returns io.EOF after the last page, and
// also when a page after the first answers 404 past the end of the data
// (ErrPastLastPage): the count shrank, which CountChanged then reports.
func (p *Pager) Next(ctx context.Context) (*Page, error) {
	if p.done {
		return nil, io.EOF
	}
	q := p.q
	q.Page = p.next
	page, err := p.c.CallLogs(ctx, q)
	if p.first >= 0 && errors.Is(err, ErrPastLastPage) {
		p.done, p.changed = true, true
		return nil, io.EOF
	}
	if err != nil {
		return nil, err
	}
	n := len(page.Records) + len(page.Invalid)
	if p.first < 0 {
		p.first = page.Count
		// A server with a lower maximum page size clamps page_size
		// silently; learn the size it really uses from page 1.
		if n > 0 && n < p.size && page.Count > n {
			p.size = n
		}
	} else if page.Count != p.last {
		p.changed = true
	}
	p.last = page.Count
	p.maxCount = max(p.maxCount, page.Count)
	p.next++
	if n == 0 || (p.next-1)*p.size >= p.maxCount {
		p.done = true
	}
	return page, nil
}

// Pages returns the number of pages the latest count implies.
func (p *Pager) Pages() int {
	if p.first < 0 {
		return 0
	}
	return (p.last + p.size - 1) / p.size
}

// CountChanged reports whether count differed between pages read so far:
// records appeared or vanished while paging, so the pages may overlap or
// have gaps and the window should be read again.
func (p *Pager) CountChanged() bool { return p.changed }

// Count returns the count reported by the latest page (-1 before any).
func (p *Pager) Count() int { return p.last }

// All iterates over the remaining pages; iteration stops after the first
// error, which is yielded.
func (p *Pager) All(ctx context.Context) iter.Seq2[*Page, error] {
	return func(yield func(*Page, error) bool) {
		for {
			page, err := p.Next(ctx)
			if err == io.EOF {
				return
			}
			if !yield(page, err) || err != nil {
				return
			}
		}
	}
}

// Window is everything one read of a query returned.
type Window struct {
	Records      []Record      // every good record, in the order read (may hold repeats if pages shifted)
	Invalid      []RecordError // every record that could not be decoded
	Count        int           // count on the last page
	Pages        int           // pages fetched
	CountChanged bool          // count changed while paging: read again for a complete view
}

// ReadWindow reads every page of q once.
func (c *Client) ReadWindow(ctx context.Context, q Query) (*Window, error) {
	p := c.NewPager(q)
	w := &Window{}
	for page, err := range p.All(ctx) {
		if err != nil {
			return nil, err
		}
		w.Pages++
		w.Records = append(w.Records, page.Records...)
		w.Invalid = append(w.Invalid, page.Invalid...)
	}
	w.Count = p.Count()
	w.CountChanged = p.CountChanged()
	return w, nil
}
