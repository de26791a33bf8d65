package lake

import (
	"fmt"
	"path/filepath"
	"strings"
)

// AllRowsQuery returns the DuckDB query over every file of the lake at root:
// one row per event revision, with org and dt (and hour, when used) read
// from the directory names.
func AllRowsQuery(root string) string {
	return fmt.Sprintf("SELECT * FROM %s", readParquet(root))
}

// LatestRevisionQuery returns the DuckDB query that keeps only the latest
// revision of each call: the compaction view of the lake.
func LatestRevisionQuery(root string) string {
	return fmt.Sprintf(`SELECT * FROM %s
QUALIFY row_number() OVER (PARTITION BY org, call_key ORDER BY revision DESC, observed_at DESC) = 1`, readParquet(root))
}

// readParquet is the table function over the lake; hive_types pins org to
// text, so an org handle made of digits stays a string.
func readParquet(root string) string {
	glob := filepath.ToSlash(filepath.Join(root, tableDir)) + "/**/*.parquet"
	return fmt.Sprintf("read_parquet('%s', hive_partitioning = true, hive_types = {'org': VARCHAR, 'dt': DATE})",
		strings.ReplaceAll(glob, "'", "''"))
}
