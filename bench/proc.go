package bench

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// ProcMem is what /proc/PID/status says of a process's memory and threads.
type ProcMem struct {
	RSS     uint64 // VmRSS, KiB
	HWM     uint64 // VmHWM, the peak RSS, KiB
	Threads int
	// RssAnon and RssFile split RSS: the heap and stacks, and the pages of
	// the binary (and other files) touched so far.
	RssAnon, RssFile uint64
}

// ReadProcMem reads process pid's ProcMem.
func ReadProcMem(pid int) (ProcMem, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return ProcMem{}, fmt.Errorf("memory of process %d: %w", pid, err)
	}
	m, err := parseStatus(b)
	if err != nil {
		return m, fmt.Errorf("memory of process %d: %w", pid, err)
	}
	return m, nil
}

// parseStatus reads VmRSS, VmHWM and Threads out of the text of
// /proc/PID/status ("VmRSS:\t  12345 kB").
func parseStatus(b []byte) (ProcMem, error) {
	var m ProcMem
	seen := 0
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		key, val, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		f := strings.Fields(val)
		if len(f) == 0 {
			continue
		}
		var dst *uint64
		switch key {
		case "RssAnon", "RssFile":
			if n, err := strconv.ParseUint(f[0], 10, 64); err == nil && len(f) == 2 && f[1] == "kB" {
				if key == "RssAnon" {
					m.RssAnon = n
				} else {
					m.RssFile = n
				}
			}
			continue
		case "VmRSS":
			dst = &m.RSS
		case "VmHWM":
			dst = &m.HWM
		case "Threads":
			n, err := strconv.Atoi(f[0])
			if err != nil {
				return m, fmt.Errorf("status: Threads %q", val)
			}
			m.Threads = n
			seen++
			continue
		default:
			continue
		}
		if len(f) != 2 || f[1] != "kB" {
			return m, fmt.Errorf("status: %s %q, want a size in kB", key, val)
		}
		n, err := strconv.ParseUint(f[0], 10, 64)
		if err != nil {
			return m, fmt.Errorf("status: %s %q", key, val)
		}
		*dst = n
		seen++
	}
	if seen != 3 {
		return m, fmt.Errorf("status: no VmRSS, VmHWM or Threads line (a zombie?)")
	}
	return m, nil
}

// CountFDs returns how many file descriptors process pid has open.
func CountFDs(pid int) (int, error) {
	es, err := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/fd")
	if err != nil {
		return 0, fmt.Errorf("descriptors of process %d: %w", pid, err)
	}
	return len(es), nil
}

// FileLimit returns process pid's RLIMIT_NOFILE as /proc/PID/limits shows
// it ("Max open files  20000  20000  files"), for messages about running
// out of descriptors.
func FileLimit(pid int) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/limits")
	if err != nil {
		return "unknown"
	}
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, "Max open files"); ok {
			f := strings.Fields(rest)
			if len(f) >= 2 {
				return "soft " + f[0] + ", hard " + f[1]
			}
		}
	}
	return "unknown"
}

// ReadPSS returns process pid's proportional set size in KiB (Pss of
// /proc/PID/smaps_rollup): its RSS with each shared page divided among the
// processes mapping it, so that the RSS of many processes running one
// binary is not summed with the binary's pages counted once each.
func ReadPSS(pid int) (uint64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/smaps_rollup")
	if err != nil {
		return 0, fmt.Errorf("memory of process %d: %w", pid, err)
	}
	n, err := parsePSS(b)
	if err != nil {
		return 0, fmt.Errorf("memory of process %d: %w", pid, err)
	}
	return n, nil
}

func parsePSS(b []byte) (uint64, error) {
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, "Pss:"); ok {
			f := strings.Fields(rest)
			if len(f) == 2 && f[1] == "kB" {
				if n, err := strconv.ParseUint(f[0], 10, 64); err == nil {
					return n, nil
				}
			}
			return 0, fmt.Errorf("smaps_rollup: Pss %q", strings.TrimSpace(rest))
		}
	}
	return 0, fmt.Errorf("smaps_rollup: no Pss line")
}

// sumMem adds up the ProcMem of several processes.
func sumMem(pids []int) (ProcMem, error) {
	var total ProcMem
	for _, pid := range pids {
		m, err := ReadProcMem(pid)
		if err != nil {
			return total, err
		}
		total.RSS += m.RSS
		total.HWM += m.HWM
		total.Threads += m.Threads
	}
	return total, nil
}

// sumPSS adds up the PSS of several processes, in KiB.
func sumPSS(pids []int) (uint64, error) {
	var total uint64
	for _, pid := range pids {
		n, err := ReadPSS(pid)
		if err != nil {
			return 0, err
		}
		total += n
	}
	return total, nil
}
