package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/callstream/callstream/pkg/telemetry"
	"github.com/callstream/callstream/pkg/unpod"
	"github.com/callstream/callstream/producer"
)

// cmdBackfill reads a past range of one organization once, through the
// producer's dedup gate, into Kafka.
func cmdBackfill(ctx context.Context, e *env, args []string) error {
	var org, fromS, toS string
	cfg, _, err := loadConfig(e, "backfill", args, []string{"kafka", "unpod"}, func(fs *flag.FlagSet) {
		fs.StringVar(&org, "org", "", "Org-Handle to backfill (required)")
		fs.StringVar(&fromS, "from", "", "start of the range, creation time, ISO 8601 (required)")
		fs.StringVar(&toS, "to", "", "end of the range (exclusive), ISO 8601; default now")
	})
	if err != nil {
		return err
	}
	org = strings.TrimSpace(org)
	if org == "" || fromS == "" {
		return fmt.Errorf("%w: want --org X --from T1 [--to T2]", errUsage)
	}
	from, err := unpod.ParseTime(fromS)
	if err != nil {
		return fmt.Errorf("%w: --from: %v", errUsage, err)
	}
	to := time.Now().UTC()
	if toS != "" {
		if to, err = unpod.ParseTime(toS); err != nil {
			return fmt.Errorf("%w: --to: %v", errUsage, err)
		}
	}
	if !from.Before(to) {
		return fmt.Errorf("%w: --from %s is not before --to %s", errUsage, fromS, to.Format(time.RFC3339))
	}
	logger, err := telemetry.NewLogger(e.stderr, cfg.Log)
	if err != nil {
		return err
	}
	cfg.Producer.Orgs = []string{org}
	k, err := newKafkaProducer(ctx, cfg, logger, telemetry.NewRegistry())
	if err != nil {
		return err
	}
	defer k.close()

	bar := newProgress(e.stdout)
	start := time.Now()
	err = k.producer.Backfill(ctx, org, from, to, bar.update)
	bar.finish()
	if err != nil {
		return err
	}
	st := k.producer.Stats()
	fmt.Fprintf(e.stdout, "backfill of %s [%s, %s) done in %s: %d records read, %d events published (%d updates), %d duplicates dropped, %d invalid records\n",
		org, from.Format(time.RFC3339), to.Format(time.RFC3339), time.Since(start).Round(time.Millisecond),
		st.RecordsRead, st.Published, st.Updated, st.Duplicates, st.Invalid)
	return nil
}

// progress draws a bar on a terminal and prints plain lines elsewhere, at
// most once a second.
type progress struct {
	w    io.Writer
	tty  bool
	last time.Time
	cur  producer.BackfillProgress
	drew bool
}

func newProgress(w io.Writer) *progress {
	tty := false
	if f, ok := w.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			tty = true
		}
	}
	return &progress{w: w, tty: tty}
}

func (p *progress) update(pr producer.BackfillProgress) {
	p.cur = pr
	interval := time.Second
	if p.tty {
		interval = 100 * time.Millisecond
	}
	if time.Since(p.last) < interval {
		return
	}
	p.last = time.Now()
	p.draw()
}

func (p *progress) draw() {
	pr := p.cur
	frac := 1.0
	if pr.Total > 0 {
		frac = min(1, float64(pr.Read)/float64(pr.Total))
	}
	if p.tty {
		const width = 30
		n := int(frac * width)
		fmt.Fprintf(p.w, "\r[%s%s] %3.0f%% %d/%d records, window %d/%d, %d published, %d duplicates ",
			strings.Repeat("#", n), strings.Repeat(".", width-n), frac*100, pr.Read, pr.Total,
			pr.Window, pr.Windows, pr.Published, pr.Duplicates)
	} else {
		fmt.Fprintf(p.w, "backfill %s: %d/%d records (%.0f%%), window %d/%d [%s, %s), %d published, %d duplicates\n",
			pr.Org, pr.Read, pr.Total, frac*100, pr.Window, pr.Windows,
			pr.WindowStart.Format(time.RFC3339), pr.WindowEnd.Format(time.RFC3339), pr.Published, pr.Duplicates)
	}
	p.drew = true
}

func (p *progress) finish() {
	if p.cur.Windows > 0 {
		p.draw()
	}
	if p.tty && p.drew {
		fmt.Fprintln(p.w)
	}
}
