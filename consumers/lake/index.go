package lake

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"time"
)

// scan lists the files already in the lake, by partition, and removes
// temporary files a crash left behind long enough ago that no live writer
// can own them.
func (l *Lake) scan() error {
	root := filepath.Join(l.cfg.Dir, tableDir)
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) && path == root {
				return fs.SkipDir
			}
			return err
		}
		if d.IsDir() {
			return nil
		}
		name := d.Name()
		if isTemp(name) {
			if info, err := d.Info(); err == nil && l.now().Sub(info.ModTime()) > staleTemp {
				_ = os.Remove(path)
			}
			return nil
		}
		key, first, ok := parseFileName(name)
		if !ok {
			return nil
		}
		p := l.part(key)
		p.files = append(p.files, &fileRef{path: path, first: first, last: -1})
		return nil
	})
	if err != nil {
		return fmt.Errorf("lake: list files under %s: %w", root, err)
	}
	return nil
}

// staleTemp is how old a temporary file must be before a starting lake
// deletes it: far longer than any file takes to write.
const staleTemp = 10 * time.Minute

// ensureIndexed makes p.covered complete for offsets at or above offset by
// reading the offsets of every renamed file that may hold one; l.mu is held.
func (l *Lake) ensureIndexed(p *partState, offset int64) {
	if offset >= p.floor {
		return
	}
	if p.forgotFiles {
		l.relist(p)
	}
	for _, f := range p.files {
		if f.indexed {
			continue
		}
		if f.last < 0 && f.first < offset {
			last, _, err := fileOffsets(f.path, false)
			if err != nil {
				l.unreadable(p, f, err)
				continue
			}
			f.last = last
		}
		if f.first < offset && f.last < offset {
			continue
		}
		last, offsets, err := fileOffsets(f.path, true)
		if err != nil {
			l.unreadable(p, f, err)
			continue
		}
		f.last = last
		for _, o := range offsets {
			p.covered[o] = struct{}{}
		}
		f.indexed = true
		l.metrics.indexedFiles.Inc()
	}
	p.floor = offset
}

// unreadable gives up on a damaged file: blocking the partition on it would
// stop the whole lake, so it is logged and counted, and treated as holding
// no offset (its records may be written again). l.mu is held.
func (l *Lake) unreadable(p *partState, f *fileRef, err error) {
	l.log.Error("lake: cannot read the offsets of an existing file; its events may be written again",
		"partition", p.key.String(), "file", f.path, "err", err)
	l.metrics.indexErrors.Inc()
	f.indexed = true // never retried: the error would repeat for every record
	f.last = -1
}

// prune forgets covered offsets below the oldest pending one once there are
// many; ensureIndexed reads them back from disk if one is ever redelivered.
// l.mu is held.
func (l *Lake) prune(p *partState) {
	if len(p.covered) <= max(4*l.cfg.MaxBufferedRows, p.pruneAt) {
		return
	}
	// A quiet org's open file can pin the threshold for a while; pruning
	// again only once the set doubled keeps the cost amortized O(1).
	defer func() { p.pruneAt = 2 * len(p.covered) }()
	threshold := int64(math.MaxInt64)
	for o := range p.pending {
		threshold = min(threshold, o)
	}
	if len(p.pending) == 0 {
		threshold = 0
		for o := range p.covered {
			threshold = max(threshold, o+1)
		}
	}
	for o := range p.covered {
		if o < threshold {
			delete(p.covered, o)
		}
	}
	kept := p.files[:0]
	for _, f := range p.files {
		switch {
		case f.last >= 0 && f.last < threshold:
			// Wholly below the floor: forgotten, so memory stays bounded
			// on a long run; a redelivery that far back lists the disk.
			p.forgotFiles = true
			continue
		case f.first < threshold:
			f.indexed = false
		}
		kept = append(kept, f)
	}
	clear(p.files[len(kept):])
	p.files = kept
	p.floor = max(p.floor, threshold)
}

// relist reloads the list of a partition's files from disk, keeping what
// is known of those already listed; l.mu is held.
func (l *Lake) relist(p *partState) {
	known := make(map[string]*fileRef, len(p.files))
	for _, f := range p.files {
		known[f.path] = f
	}
	root := filepath.Join(l.cfg.Dir, tableDir)
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		key, first, ok := parseFileName(d.Name())
		if ok && key == p.key && known[path] == nil {
			p.files = append(p.files, &fileRef{path: path, first: first, last: -1})
		}
		return nil
	})
	if err != nil {
		l.log.Error("lake: list files again", "partition", p.key.String(), "err", err)
		return
	}
	p.forgotFiles = false
}
