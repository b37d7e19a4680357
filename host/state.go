package host

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
)

// stateVersion is the state file's format; a daemon refuses a file of
// another version rather than guess.
const stateVersion = 1

// stateFile is the state file's content.
type stateFile struct {
	Version   int            `json:"version"`
	Sandboxes []savedSandbox `json:"sandboxes"`
}

type savedSandbox struct {
	Name string `json:"name"`
	Spec
}

// readState reads the state file; a missing file is an empty state.
func readState(path string) ([]savedSandbox, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("state file: %w", err)
	}
	var s stateFile
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(&s); err != nil {
		return nil, fmt.Errorf("state file %s: %w (fix or move it; the daemon will not overwrite it)", path, err)
	}
	if s.Version != stateVersion {
		return nil, fmt.Errorf("state file %s: version %d, want %d", path, s.Version, stateVersion)
	}
	return s.Sandboxes, nil
}

// persister batches state file writes: a change is durable once a write
// that began after it has finished, so changes made while a write is under
// way share the next one (a group commit) instead of queueing a rewrite of
// the whole file each.
type persister struct {
	mu      sync.Mutex
	cond    *sync.Cond
	want    uint64 // changes made
	done    uint64 // changes the last finished write covers
	writing bool
	err     error // the last write's
}

// persist makes the registry as it is now durable in the state file and
// returns once it is.
func (h *Host) persist() error {
	if h.opt.StatePath == "" {
		return nil
	}
	p := &h.persister
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cond == nil {
		p.cond = sync.NewCond(&p.mu)
	}
	p.want++
	mine := p.want
	for p.done < mine {
		if p.writing {
			p.cond.Wait()
			continue
		}
		// Every change counted so far is in the registry: the snapshot
		// taken next covers them all.
		p.writing = true
		gen := p.want
		p.mu.Unlock()
		err := h.writeState()
		p.mu.Lock()
		p.writing, p.done, p.err = false, gen, err
		p.cond.Broadcast()
	}
	return p.err
}

// writeState writes every sandbox's spec to the state file, one sandbox a
// line.
func (h *Host) writeState() error {
	var b bytes.Buffer
	fmt.Fprintf(&b, "{\"version\": %d, \"sandboxes\": [", stateVersion)
	for i, sb := range h.sandboxes() {
		line, err := json.Marshal(savedSandbox{Name: sb.name, Spec: sb.c.spec})
		if err != nil {
			return err
		}
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString("\n  ")
		b.Write(line)
	}
	b.WriteString("\n]}\n")
	if err := writeFileAtomic(h.opt.StatePath, b.Bytes()); err != nil {
		return fmt.Errorf("state file not written: %w", err)
	}
	return nil
}

// writeFileAtomic replaces path with b, mode 0600: a temporary file beside
// it is written and synced, then renamed over it and the directory synced,
// so a crash leaves either the old file or the new one, never a part.
func writeFileAtomic(path string, b []byte) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return err
	}
	tmp := f.Name()
	fail := func(err error) error {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := f.Chmod(0o600); err != nil {
		return fail(err)
	}
	if _, err := f.Write(b); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}
