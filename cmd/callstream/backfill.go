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
	"github.com/schollz/progressbar/v3"
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
	reg := telemetry.NewRegistry()
	b, err := openBus(ctx, cfg, "publishes to", logger, reg)
	if err != nil {
		return err
	}
	defer b.close()
	p, _, err := buildProducer(ctx, cfg, logger, reg, b, nil)
	if err != nil {
		return err
	}

	bar := newProgress(e.stdout)
	start := time.Now()
	err = p.Backfill(ctx, org, from, to, bar.update)
	bar.finish()
	if err != nil {
		return err
	}
	st := p.Stats()
	fmt.Fprintf(e.stdout, "backfill of %s [%s, %s) done in %s: %d records read, %d events published (%d updates), %d duplicates dropped, %d invalid records\n",
		org, from.Format(time.RFC3339), to.Format(time.RFC3339), time.Since(start).Round(time.Millisecond),
		st.RecordsRead, st.Published, st.Updated, st.Duplicates, st.Invalid)
	return nil
}

// progress shows a backfill's progress: a bar with rate and time left on a
// terminal (schollz/progressbar), plain lines at most once a second
// elsewhere (logs, CI).
type progress struct {
	w    io.Writer
	bar  *progressbar.ProgressBar // nil when w is not a terminal
	last time.Time
	cur  producer.BackfillProgress
}

func newProgress(w io.Writer) *progress {
	p := &progress{w: w}
	if f, ok := w.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			p.bar = newBar(w)
		}
	}
	return p
}

// newBar draws on w; its total is set from the first report.
func newBar(w io.Writer) *progressbar.ProgressBar {
	return progressbar.NewOptions64(-1,
		progressbar.OptionSetWriter(w),
		progressbar.OptionSetDescription("backfill"),
		progressbar.OptionShowCount(),
		progressbar.OptionShowIts(),
		progressbar.OptionSetItsString("records"),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionSetWidth(30),
		progressbar.OptionOnCompletion(func() { fmt.Fprintln(w) }),
	)
}

func (p *progress) update(pr producer.BackfillProgress) {
	p.cur = pr
	if p.bar != nil {
		if total := int64(max(pr.Total, pr.Read)); p.bar.GetMax64() != total {
			p.bar.ChangeMax64(total)
		}
		p.bar.Describe(fmt.Sprintf("%s window %d/%d, %d published, %d duplicates", pr.Org, pr.Window, pr.Windows, pr.Published, pr.Duplicates))
		_ = p.bar.Set64(int64(pr.Read))
		return
	}
	if time.Since(p.last) < time.Second {
		return
	}
	p.last = time.Now()
	p.line()
}

func (p *progress) line() {
	pr := p.cur
	frac := 1.0
	if pr.Total > 0 {
		frac = min(1, float64(pr.Read)/float64(pr.Total))
	}
	fmt.Fprintf(p.w, "backfill %s: %d/%d records (%.0f%%), window %d/%d [%s, %s), %d published, %d duplicates\n",
		pr.Org, pr.Read, pr.Total, frac*100, pr.Window, pr.Windows,
		pr.WindowStart.Format(time.RFC3339), pr.WindowEnd.Format(time.RFC3339), pr.Published, pr.Duplicates)
}

// finish shows the final figures.
func (p *progress) finish() {
	if p.cur.Windows == 0 {
		return
	}
	if p.bar != nil {
		_ = p.bar.Finish()
		return
	}
	p.line()
}
