// Package report is examples/report written with //kiln: annotations: there
// is no main, and kiln run ./examples/annotated/report keeps the same
// schedule.
package report

import (
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// EnvDir names the directory Summarize reports on; unset, it is the
// working directory.
const EnvDir = "REPORT_DIR"

// Summary is one run's report.
type Summary struct {
	At     time.Time `json:"at"`
	Dir    string    `json:"dir"`
	Files  int       `json:"files"`
	Bytes  int64     `json:"bytes"`
	Newest string    `json:"newest,omitempty"` // the file modified last
	// Skipped counts the entries the run may not read, or that went away
	// while it walked.
	Skipped int `json:"skipped,omitempty"`
}

// Summarize writes one JSON line to stdout: how many files the directory
// holds, their size, and which changed last. A run that takes longer than
// a minute is not overlapped by the next one (concurrency=forbid), and
// stops when its context ends.
//
//kiln:cron report schedule="@every 1m" concurrency=forbid
func Summarize(ctx context.Context) error {
	dir := os.Getenv(EnvDir)
	if dir == "" {
		dir = "."
	}
	s := Summary{At: time.Now().UTC().Truncate(time.Second), Dir: dir}
	var newest time.Time
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if unreadable(err) && path != dir {
			s.Skipped++
			return nil
		}
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		info, err := d.Info()
		if unreadable(err) {
			s.Skipped++
			return nil
		}
		if err != nil {
			return err
		}
		s.Files++
		s.Bytes += info.Size()
		if info.ModTime().After(newest) {
			newest, s.Newest = info.ModTime(), path
		}
		return nil
	})
	if err != nil {
		return err
	}
	return json.NewEncoder(os.Stdout).Encode(s)
}

// unreadable reports whether err is an entry not ours to read, or gone
// while the run walked: in a container whose working directory is the
// root, /proc and /sys hold such entries.
func unreadable(err error) bool {
	return errors.Is(err, fs.ErrPermission) || errors.Is(err, fs.ErrNotExist)
}
