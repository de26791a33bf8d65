package lake

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/compress"
	"github.com/parquet-go/parquet-go/compress/zstd"
)

// retryTag marks the files of the lake's retry topic (events replayed from
// the DLQ), whose offsets are the retry topic's own: "part-r<partition>-".
const retryTag = "r"

// Key-value metadata written in every file's footer.
const (
	metaSchema    = "callstream.schema"
	metaTopic     = "callstream.kafka_topic"
	metaPartition = "callstream.kafka_partition"
	metaFirst     = "callstream.first_offset"
	metaLast      = "callstream.last_offset"
)

// fileName names a file by its source (the calls topic, or the retry topic
// with retryTag), partition and the smallest offset it holds: the same
// first record always gives the same name.
func fileName(k partKey, first int64) string {
	return fmt.Sprintf("part-%s%d-%010d.parquet", k.tag, k.partition, first)
}

// parseFileName is fileName's inverse; ok is false for any other name.
func parseFileName(name string) (k partKey, first int64, ok bool) {
	rest, found := strings.CutPrefix(name, "part-")
	if !found {
		return k, 0, false
	}
	rest, found = strings.CutSuffix(rest, ".parquet")
	if !found {
		return k, 0, false
	}
	p, off, found := strings.Cut(rest, "-")
	if !found {
		return k, 0, false
	}
	first, err := strconv.ParseInt(off, 10, 64)
	if err != nil || first < 0 {
		return k, 0, false
	}
	if rest, ok := strings.CutPrefix(p, retryTag); ok {
		k.tag, p = retryTag, rest
	}
	n, err := strconv.ParseInt(p, 10, 32)
	if err != nil || n < 0 {
		return partKey{}, 0, false
	}
	k.partition = int32(n)
	return k, first, true
}

// isTemp reports whether name is a file being written (or left by a crash).
func isTemp(name string) bool {
	return strings.HasPrefix(name, ".part-") && strings.HasSuffix(name, ".tmp")
}

func codec(name string) (compress.Codec, error) {
	switch name {
	case "zstd":
		// The default level stores pages of random ids (event_id,
		// call_key) uncompressed; the next level compresses them to half.
		return &zstd.Codec{Level: zstd.SpeedBetterCompression}, nil
	case "snappy":
		return &parquet.Snappy, nil
	}
	return nil, fmt.Errorf("lake: compression %q: want zstd or snappy", name)
}

// fileSpec is everything writeFile needs besides the rows.
type fileSpec struct {
	root, dir, name string
	topic           string
	partition       int32
	codec           compress.Codec
	rowGroupRows    int
}

// writeFile writes rows (sorted by offset) to a temporary file beside the
// target, syncs it, renames it over the target and syncs the directory, so
// after a crash the target is either absent or complete. It returns the
// file's size and whether a file of that name was replaced.
func writeFile(s fileSpec, rows []Row) (size int64, replaced bool, err error) {
	dir := filepath.Join(s.root, s.dir)
	if err := mkdirSynced(s.root, s.dir); err != nil {
		return 0, false, err
	}
	tmp, err := os.CreateTemp(dir, "."+s.name+".*.tmp")
	if err != nil {
		return 0, false, fmt.Errorf("lake: create temporary file in %s: %w", dir, err)
	}
	done := false
	defer func() {
		if !done {
			_ = tmp.Close()
			_ = os.Remove(tmp.Name())
		}
	}()
	bw := bufio.NewWriterSize(tmp, 1<<20)
	w := parquet.NewGenericWriter[Row](bw,
		parquet.Compression(s.codec),
		parquet.MaxRowsPerRowGroup(int64(s.rowGroupRows)),
		parquet.KeyValueMetadata(metaSchema, "call_event.v1"),
		parquet.KeyValueMetadata(metaTopic, s.topic),
		parquet.KeyValueMetadata(metaPartition, strconv.Itoa(int(s.partition))),
		parquet.KeyValueMetadata(metaFirst, strconv.FormatInt(rows[0].KafkaOffset, 10)),
		parquet.KeyValueMetadata(metaLast, strconv.FormatInt(rows[len(rows)-1].KafkaOffset, 10)),
	)
	if _, err := w.Write(rows); err != nil {
		return 0, false, fmt.Errorf("lake: write rows to %s: %w", tmp.Name(), err)
	}
	if err := w.Close(); err != nil {
		return 0, false, fmt.Errorf("lake: finish %s: %w", tmp.Name(), err)
	}
	if err := bw.Flush(); err != nil {
		return 0, false, fmt.Errorf("lake: write %s: %w", tmp.Name(), err)
	}
	if err := tmp.Sync(); err != nil {
		return 0, false, fmt.Errorf("lake: sync %s: %w", tmp.Name(), err)
	}
	st, err := tmp.Stat()
	if err != nil {
		return 0, false, fmt.Errorf("lake: stat %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return 0, false, fmt.Errorf("lake: close %s: %w", tmp.Name(), err)
	}
	target := filepath.Join(dir, s.name)
	_, err = os.Lstat(target)
	replaced = err == nil
	if err := os.Rename(tmp.Name(), target); err != nil {
		return 0, false, fmt.Errorf("lake: rename %s to %s: %w", tmp.Name(), target, err)
	}
	done = true
	if err := syncDir(dir); err != nil {
		// The rename may not survive a crash: take the file back so the
		// retry writes these rows once, not into a second file.
		_ = os.Remove(target)
		return 0, false, err
	}
	return st.Size(), replaced, nil
}

// mkdirSynced creates root/rel and syncs the parent of every directory it
// created, so a renamed file is not lost with its new directory.
func mkdirSynced(root, rel string) error {
	full := filepath.Join(root, rel)
	if _, err := os.Stat(full); err == nil {
		return nil
	}
	// Find the deepest existing ancestor, then create downwards.
	var missing []string
	for p := full; ; p = filepath.Dir(p) {
		if _, err := os.Stat(p); err == nil {
			break
		} else if !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("lake: stat %s: %w", p, err)
		}
		missing = append(missing, p)
		if filepath.Dir(p) == p {
			break
		}
	}
	if err := os.MkdirAll(full, 0o755); err != nil {
		return fmt.Errorf("lake: create directory %s: %w", full, err)
	}
	for _, p := range missing {
		if err := syncDir(filepath.Dir(p)); err != nil {
			return err
		}
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("lake: open directory %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("lake: sync directory %s: %w", dir, err)
	}
	return nil
}

// fileOffsets reads a file's footer and, when want is true, every
// kafka_offset it holds.
func fileOffsets(path string, want bool) (last int64, offsets []int64, err error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, nil, fmt.Errorf("lake: open %s: %w", path, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return 0, nil, fmt.Errorf("lake: stat %s: %w", path, err)
	}
	pf, err := parquet.OpenFile(f, st.Size())
	if err != nil {
		return 0, nil, fmt.Errorf("lake: open parquet file %s: %w", path, err)
	}
	v, ok := pf.Lookup(metaLast)
	if !ok {
		return 0, nil, fmt.Errorf("lake: %s has no %s metadata", path, metaLast)
	}
	if last, err = strconv.ParseInt(v, 10, 64); err != nil {
		return 0, nil, fmt.Errorf("lake: %s: bad %s %q: %w", path, metaLast, v, err)
	}
	if !want {
		return last, nil, nil
	}
	col, ok := pf.Schema().Lookup("kafka_offset")
	if !ok {
		return 0, nil, fmt.Errorf("lake: %s has no kafka_offset column", path)
	}
	offsets = make([]int64, 0, pf.NumRows())
	buf := make([]parquet.Value, 1024)
	for _, rg := range pf.RowGroups() {
		pages := rg.ColumnChunks()[col.ColumnIndex].Pages()
		for {
			page, err := pages.ReadPage()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				_ = pages.Close()
				return 0, nil, fmt.Errorf("lake: read offsets of %s: %w", path, err)
			}
			vr := page.Values()
			for {
				n, err := vr.ReadValues(buf)
				for _, v := range buf[:n] {
					offsets = append(offsets, v.Int64())
				}
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					_ = pages.Close()
					return 0, nil, fmt.Errorf("lake: read offsets of %s: %w", path, err)
				}
			}
			parquet.Release(page)
		}
		if err := pages.Close(); err != nil {
			return 0, nil, fmt.Errorf("lake: read offsets of %s: %w", path, err)
		}
	}
	return last, offsets, nil
}
