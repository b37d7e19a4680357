package bench

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

// Usage is what a target process has consumed up to some instant. Fields a
// target cannot report are left zero with their Has flag false.
type Usage struct {
	CPU        time.Duration // utime + stime, all threads, dead ones included
	Mallocs    uint64        // runtime.MemStats.Mallocs, from /debug/vars
	HasMallocs bool
	Syscalls   uint64 // counted in the kernel (package kcount)
	Switches   uint64
	HasKernel  bool
	GuestCPU   time.Duration // the external echo guest's utime + stime
	HasGuest   bool
}

// Sub returns u - o. Mallocs saturates at zero: the cost of a /debug/vars
// request taken out by Target.End is a calibrated minimum and may exceed
// what a short window really allocated by a few.
func (u Usage) Sub(o Usage) Usage {
	var mallocs uint64
	if u.Mallocs > o.Mallocs {
		mallocs = u.Mallocs - o.Mallocs
	}
	return Usage{
		CPU:        u.CPU - o.CPU,
		Mallocs:    mallocs,
		HasMallocs: u.HasMallocs && o.HasMallocs,
		Syscalls:   u.Syscalls - o.Syscalls,
		Switches:   u.Switches - o.Switches,
		HasKernel:  u.HasKernel && o.HasKernel,
		GuestCPU:   u.GuestCPU - o.GuestCPU,
		HasGuest:   u.HasGuest && o.HasGuest,
	}
}

// clockTick is USER_HZ, the unit of /proc/PID/stat's times: 100 on every
// Linux architecture Go runs on.
const clockTick = 10 * time.Millisecond

// ProcCPU returns the user plus system time process pid has used so far,
// from /proc/PID/stat (fields 14 and 15).
func ProcCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, fmt.Errorf("cpu: %w", err)
	}
	return parseStatCPU(b)
}

// parseStatCPU reads utime and stime from the text of /proc/PID/stat. The
// command name (field 2) may hold spaces and parentheses, so fields are
// counted from its closing parenthesis, the last one on the line.
func parseStatCPU(b []byte) (time.Duration, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("cpu: malformed /proc stat %q", b)
	}
	f := bytes.Fields(b[i+1:])
	// f[0] is field 3 (state): utime, field 14, is f[11].
	if len(f) < 13 {
		return 0, fmt.Errorf("cpu: short /proc stat %q", b)
	}
	utime, err1 := strconv.ParseUint(string(f[11]), 10, 64)
	stime, err2 := strconv.ParseUint(string(f[12]), 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("cpu: malformed times in /proc stat %q", b)
	}
	return time.Duration(utime+stime) * clockTick, nil
}

var debugClient = &http.Client{Timeout: 5 * time.Second}

// Mallocs fetches the cumulative count of heap allocations of the process
// serving expvar on addr (GET /debug/vars, memstats.Mallocs).
func Mallocs(addr string) (uint64, error) {
	resp, err := debugClient.Get("http://" + addr + "/debug/vars")
	if err != nil {
		return 0, fmt.Errorf("mallocs: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("mallocs: GET /debug/vars: %s", resp.Status)
	}
	var v struct {
		Memstats *struct{ Mallocs uint64 } `json:"memstats"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		return 0, fmt.Errorf("mallocs: /debug/vars: %w", err)
	}
	if v.Memstats == nil {
		return 0, fmt.Errorf("mallocs: /debug/vars has no memstats")
	}
	return v.Memstats.Mallocs, nil
}

// Counters fetches the relay's own counters (GET /stats, JSON), for the
// message of a failed run.
func Counters(addr string) (string, error) {
	resp, err := debugClient.Get("http://" + addr + "/stats")
	if err != nil {
		return "", fmt.Errorf("stats: %w", err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	if _, err := b.ReadFrom(resp.Body); err != nil {
		return "", fmt.Errorf("stats: %w", err)
	}
	return strings.TrimSpace(b.String()), nil
}
