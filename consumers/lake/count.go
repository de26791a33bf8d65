package lake

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/parquet-go/parquet-go"

	"github.com/callstream/callstream/pkg/audit"
)

// countRow is what the audit reads of a row: two columns of the file.
type countRow struct {
	CallKey      string    `parquet:"call_key"`
	CreationTime time.Time `parquet:"creation_time,timestamp(microsecond:utc)"`
}

// CountCalls returns, for each of ws (contiguous windows of one step, as
// audit.Windows makes them), the number of distinct call_keys of org in
// the lake at root whose creation_time falls in the window: the lake's
// figure in the completeness audit. A call holds one row per revision, so
// rows are counted by call_key, once. Only the dt= directories that
// overlap ws are read, and of their files only the call_key and
// creation_time columns. A lake without the org's directory counts zero.
func CountCalls(ctx context.Context, root, org string, ws []audit.Window) ([]int64, error) {
	counts := make([]int64, len(ws))
	if len(ws) == 0 {
		return counts, nil
	}
	seen := make([]map[string]struct{}, len(ws))
	from, to := ws[0].Start.Truncate(audit.Day), ws[len(ws)-1].End
	dir := filepath.Join(root, tableDir, "org="+escapePartition(org))
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) && path == dir {
				return fs.SkipDir
			}
			return err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if d.IsDir() {
			if day, ok := strings.CutPrefix(d.Name(), "dt="); ok {
				t, err := time.Parse(time.DateOnly, day)
				if err == nil && (t.Before(from) || !t.Before(to)) {
					return fs.SkipDir
				}
			}
			return nil
		}
		if !strings.HasSuffix(d.Name(), ".parquet") || isTemp(d.Name()) {
			return nil
		}
		return countFile(path, ws, seen)
	})
	if err != nil {
		return nil, fmt.Errorf("lake: count calls of org %q under %s: %w", org, dir, err)
	}
	for i, s := range seen {
		counts[i] = int64(len(s))
	}
	return counts, nil
}

// countFile adds the call_keys of one file to the windows they fall in.
func countFile(path string, ws []audit.Window, seen []map[string]struct{}) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	r := parquet.NewGenericReader[countRow](f)
	defer r.Close()
	buf := make([]countRow, 1024)
	for {
		n, err := r.Read(buf)
		for _, row := range buf[:n] {
			i := audit.Locate(ws, row.CreationTime)
			if i < 0 {
				continue
			}
			if seen[i] == nil {
				seen[i] = map[string]struct{}{}
			}
			seen[i][row.CallKey] = struct{}{}
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read %s: %w", path, err)
		}
	}
}
