package agent

import (
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// defaultPath is the PATH of DefaultEnv, the one login shells start with.
const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// DefaultEnv is the base environment the Agent gives a command when
// Options.Env is nil: PATH, HOME, USER, LOGNAME, SHELL and LANG for
// the user it runs as, TERM in tty mode. Nothing of the relay's own
// environment leaks into it.
func DefaultEnv(u *user.User, tty bool) []string {
	env := []string{"PATH=" + defaultPath, "LANG=C.UTF-8"}
	if u != nil {
		env = append(env, "HOME="+u.HomeDir, "USER="+u.Username, "LOGNAME="+u.Username)
	}
	env = append(env, "SHELL=/bin/sh")
	if tty {
		env = append(env, "TERM=xterm-256color")
	}
	return env
}

// mergeEnv lays over on top of base: a key in over replaces the same key in
// base in place, a new key is appended. Entries must be KEY=VALUE with a
// non-empty key and no NUL.
func mergeEnv(base, over []string) ([]string, error) {
	env := make([]string, 0, len(base)+len(over))
	index := make(map[string]int, len(base)+len(over))
	add := func(kv string) error {
		k, _, ok := strings.Cut(kv, "=")
		if !ok || k == "" || strings.IndexByte(kv, 0) >= 0 {
			return fmt.Errorf("env entry %q is not KEY=VALUE", kv)
		}
		if i, ok := index[k]; ok {
			env[i] = kv
			return nil
		}
		index[k] = len(env)
		env = append(env, kv)
		return nil
	}
	for _, kv := range base {
		if err := add(kv); err != nil {
			return nil, err
		}
	}
	for _, kv := range over {
		if err := add(kv); err != nil {
			return nil, err
		}
	}
	return env, nil
}

// envValue returns the last value of key in env.
func envValue(env []string, key string) (string, bool) {
	for i := len(env) - 1; i >= 0; i-- {
		if k, v, ok := strings.Cut(env[i], "="); ok && k == key {
			return v, true
		}
	}
	return "", false
}

// lookPath finds cmd the way execvp does, but in the command's own PATH
// rather than the relay's: a name with a slash is used as is (relative to
// the command's cwd); otherwise the first executable regular file in PATH
// wins, and if only non-executable ones exist the error is EACCES, not
// ENOENT.
func lookPath(cmd string, env []string, dir string) (string, error) {
	if strings.Contains(cmd, "/") {
		return cmd, nil
	}
	path, ok := envValue(env, "PATH")
	if !ok {
		path = defaultPath
	}
	denied := false
	for _, d := range filepath.SplitList(path) {
		if d == "" {
			d = "."
		}
		p := filepath.Join(d, cmd)
		if !filepath.IsAbs(p) && dir != "" {
			p = filepath.Join(dir, p)
		}
		fi, err := os.Stat(p)
		if err != nil || fi.IsDir() {
			continue
		}
		if unix.Access(p, unix.X_OK) != nil {
			denied = true
			continue
		}
		return p, nil
	}
	if denied {
		return "", unix.EACCES
	}
	return "", unix.ENOENT
}

// credential resolves an exec request's user: "name", "uid", "name:group"
// or "uid:gid". It returns nil when that is who the relay already runs as.
// Switching to anyone else needs root; without it the request fails with
// user_setup_failed. The *user.User is nil for a numeric uid without a
// passwd entry.
func credential(spec string) (*syscall.Credential, *user.User, error) {
	name, group, hasGroup := strings.Cut(spec, ":")
	if name == "" || (hasGroup && group == "") {
		return nil, nil, fmt.Errorf("user %q: want NAME, UID, NAME:GROUP or UID:GID", spec)
	}
	var (
		u        *user.User
		uid, gid uint64
		err      error
	)
	if n, perr := strconv.ParseUint(name, 10, 32); perr == nil {
		uid, gid = n, n
		if u, err = user.LookupId(name); err == nil {
			gid, _ = strconv.ParseUint(u.Gid, 10, 32)
		} else {
			u = nil
		}
	} else {
		if u, err = user.Lookup(name); err != nil {
			return nil, nil, fmt.Errorf("user %q: %w", spec, err)
		}
		uid, _ = strconv.ParseUint(u.Uid, 10, 32)
		gid, _ = strconv.ParseUint(u.Gid, 10, 32)
	}
	if hasGroup {
		if n, perr := strconv.ParseUint(group, 10, 32); perr == nil {
			gid = n
		} else {
			g, err := user.LookupGroup(group)
			if err != nil {
				return nil, nil, fmt.Errorf("user %q: %w", spec, err)
			}
			gid, _ = strconv.ParseUint(g.Gid, 10, 32)
		}
	}
	if int(uid) == os.Geteuid() && int(gid) == os.Getegid() {
		return nil, u, nil
	}
	if os.Geteuid() != 0 {
		return nil, nil, fmt.Errorf("user %q: switching users needs root: %w", spec, unix.EPERM)
	}
	cred := &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}
	if u != nil {
		if ids, err := u.GroupIds(); err == nil {
			for _, id := range ids {
				if n, err := strconv.ParseUint(id, 10, 32); err == nil {
					cred.Groups = append(cred.Groups, uint32(n))
				}
			}
		}
	}
	return cred, u, nil
}

// rlimitResources maps the protocol's resource names (Rust's rlimit crate
// and prlimit(1) spell them the same) to RLIMIT_ numbers.
var rlimitResources = map[string]int{
	"as": unix.RLIMIT_AS, "core": unix.RLIMIT_CORE, "cpu": unix.RLIMIT_CPU,
	"data": unix.RLIMIT_DATA, "fsize": unix.RLIMIT_FSIZE, "locks": unix.RLIMIT_LOCKS,
	"memlock": unix.RLIMIT_MEMLOCK, "msgqueue": unix.RLIMIT_MSGQUEUE,
	"nice": unix.RLIMIT_NICE, "nofile": unix.RLIMIT_NOFILE, "nproc": unix.RLIMIT_NPROC,
	"rss": unix.RLIMIT_RSS, "rtprio": unix.RLIMIT_RTPRIO, "rttime": unix.RLIMIT_RTTIME,
	"sigpending": unix.RLIMIT_SIGPENDING, "stack": unix.RLIMIT_STACK,
}

// rlimitResource accepts "nofile", "NOFILE" and "RLIMIT_NOFILE".
func rlimitResource(name string) (int, error) {
	n := strings.TrimPrefix(strings.ToLower(name), "rlimit_")
	if r, ok := rlimitResources[n]; ok {
		return r, nil
	}
	return 0, errors.New("unknown rlimit resource " + strconv.Quote(name))
}
