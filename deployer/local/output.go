package local

import (
	"slices"
	"strings"
	"sync"
	"time"
)

// Line is one line of a process's output, or a note of the deployer's
// about the process (it exited, it is ready again).
type Line struct {
	Time time.Time
	Text string
	// Note marks a line the deployer wrote, not the process.
	Note bool
}

// tailLines is how many lines of each process's output a deployment keeps;
// errors quote the last errorLines of them.
const (
	tailLines  = 200
	errorLines = 20
)

// tailWriter keeps a process's last lines, for Output and error messages.
type tailWriter struct {
	mu    sync.Mutex
	lines []Line
	part  string
}

func (t *tailWriter) Write(b []byte) (int, error) {
	now := time.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	parts := strings.Split(t.part+string(b), "\n")
	t.part = parts[len(parts)-1]
	for _, s := range parts[:len(parts)-1] {
		t.add(Line{Time: now, Text: s})
	}
	return len(b), nil
}

// note adds a line of the deployer's.
func (t *tailWriter) note(text string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.add(Line{Time: time.Now(), Text: text, Note: true})
}

func (t *tailWriter) add(l Line) {
	if len(t.lines) == tailLines {
		// Shift rather than reslice, so the array does not grow forever.
		copy(t.lines, t.lines[1:])
		t.lines = t.lines[:tailLines-1]
	}
	t.lines = append(t.lines, l)
}

// Lines returns the lines kept, oldest first.
func (t *tailWriter) Lines() []Line {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]Line(nil), t.lines...)
}

// String is the process's last output lines, indented, for errors.
func (t *tailWriter) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []string
	for i := len(t.lines) - 1; i >= 0 && len(out) < errorLines; i-- {
		if !t.lines[i].Note {
			out = append(out, t.lines[i].Text)
		}
	}
	if len(out) == 0 {
		return "  (no output)"
	}
	slices.Reverse(out)
	return "  " + strings.Join(out, "\n  ")
}
