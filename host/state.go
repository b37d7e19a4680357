package host

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
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

// persist writes every sandbox's spec to the state file. Writes are
// serialised and each takes its snapshot under the lock, so the last write
// holds the registry as the last change left it.
func (h *Host) persist() error {
	if h.opt.StatePath == "" {
		return nil
	}
	h.persistMu.Lock()
	defer h.persistMu.Unlock()
	s := stateFile{Version: stateVersion, Sandboxes: []savedSandbox{}}
	for _, sb := range h.sandboxes() {
		s.Sandboxes = append(s.Sandboxes, savedSandbox{Name: sb.name, Spec: sb.c.spec})
	}
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	if err := writeFileAtomic(h.opt.StatePath, append(b, '\n')); err != nil {
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
