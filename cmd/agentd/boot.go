//go:build linux

package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"golang.org/x/sys/unix"
)

// mountAll mounts what a command expects to find: the kernel does not even
// mount devtmpfs on an initramfs (DEVTMPFS_MOUNT applies to a root device
// only), and /proc must be there before anything reads it.
func mountAll() error {
	for _, m := range []struct {
		fstype, target, data string
		flags                uintptr
	}{
		{"devtmpfs", "/dev", "mode=0755", unix.MS_NOSUID},
		{"proc", "/proc", "", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC},
		{"sysfs", "/sys", "", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC},
		{"devpts", "/dev/pts", "mode=0620,ptmxmode=0666,gid=5", unix.MS_NOSUID | unix.MS_NOEXEC},
		{"tmpfs", "/dev/shm", "mode=1777", unix.MS_NOSUID | unix.MS_NODEV},
		{"tmpfs", "/tmp", "mode=1777", unix.MS_NOSUID | unix.MS_NODEV},
		{"tmpfs", "/run", "mode=0755", unix.MS_NOSUID | unix.MS_NODEV},
	} {
		if err := os.MkdirAll(m.target, 0o755); err != nil {
			return fmt.Errorf("mount %s: %w", m.target, err)
		}
		err := unix.Mount(m.fstype, m.target, m.fstype, m.flags, m.data)
		if err != nil && !errors.Is(err, unix.EBUSY) {
			return fmt.Errorf("mount %s on %s: %w", m.fstype, m.target, err)
		}
	}
	// /dev/ptmx must be the devpts instance's, which serves /dev/pts.
	os.Remove("/dev/ptmx")
	if err := os.Symlink("pts/ptmx", "/dev/ptmx"); err != nil {
		return fmt.Errorf("/dev/ptmx: %w", err)
	}
	for _, l := range [][2]string{{"/proc/self/fd", "/dev/fd"}, {"/proc/self/fd/0", "/dev/stdin"}, {"/proc/self/fd/1", "/dev/stdout"}, {"/proc/self/fd/2", "/dev/stderr"}} {
		os.Symlink(l[0], l[1])
	}
	return nil
}

// loadModules loads every .ko in dir, in the dependency order the image
// lists in dir/modules.order (one name a line). There is no modules.dep in
// the initramfs, and no modprobe: a module not in the list, or listed too
// early, fails (ENOENT: unknown symbol) and is retried after the others,
// until a pass makes no progress.
func loadModules(log *slog.Logger, dir string) {
	paths, _ := filepath.Glob(filepath.Join(dir, "*.ko"))
	sort.Strings(paths)
	if b, err := os.ReadFile(filepath.Join(dir, "modules.order")); err == nil {
		rank := map[string]int{}
		for i, name := range strings.Fields(string(b)) {
			rank[filepath.Join(dir, name+".ko")] = i + 1
		}
		sort.SliceStable(paths, func(i, j int) bool {
			ri, rj := rank[paths[i]], rank[paths[j]]
			return ri != 0 && (rj == 0 || ri < rj)
		})
	}
	var errs map[string]error
	for len(paths) > 0 {
		var left []string
		errs = map[string]error{}
		for _, p := range paths {
			err := loadModule(p)
			switch {
			case err == nil:
				log.Debug("module loaded", "module", filepath.Base(p))
			case errors.Is(err, unix.EEXIST):
			default:
				errs[p] = err
				left = append(left, p)
			}
		}
		if len(left) == len(paths) {
			break
		}
		paths = left
	}
	for p, err := range errs {
		log.Warn("module not loaded", "module", filepath.Base(p), "err", err)
	}
}

func loadModule(path string) error {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return unix.FinitModule(fd, "", 0)
}
