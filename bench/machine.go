package bench

import (
	"bufio"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// Machine describes where a run took place, so that figures are never read
// without the hardware they came from.
type Machine struct {
	CPU   string `json:"cpu"`
	Cores int    `json:"cores"`
	// Procs is GOMAXPROCS: how many of the cores run Go code at once.
	Procs     int       `json:"procs"`
	MemBytes  int64     `json:"mem_bytes"`
	GoVersion string    `json:"go_version"`
	OS        string    `json:"os"`
	Kernel    string    `json:"kernel,omitempty"`
	Date      time.Time `json:"date"`
}

// Describe returns the machine this process runs on: the CPU model from
// /proc/cpuinfo, its cores and how many of them Go may use, the memory from /proc/meminfo, the
// Go version, the OS and kernel, and the date. What cannot be read stays
// empty.
func Describe() Machine {
	m := Machine{
		Cores:     runtime.NumCPU(),
		Procs:     runtime.GOMAXPROCS(0),
		GoVersion: runtime.Version(),
		OS:        runtime.GOOS + "/" + runtime.GOARCH,
		Date:      time.Now().UTC().Truncate(time.Second),
	}
	m.CPU = procField("/proc/cpuinfo", "model name")
	if m.CPU == "" {
		m.CPU = procField("/proc/cpuinfo", "Model") // arm64
	}
	if kb := procField("/proc/meminfo", "MemTotal"); kb != "" {
		n, err := strconv.ParseInt(strings.TrimSuffix(kb, " kB"), 10, 64)
		if err == nil {
			m.MemBytes = n << 10
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	return m
}

// procField returns the value of the first "key : value" line of a /proc
// file, or "".
func procField(path, key string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == key {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// String is a one-line description.
func (m Machine) String() string {
	var b strings.Builder
	if m.CPU != "" {
		b.WriteString(m.CPU + ", ")
	}
	b.WriteString(strconv.Itoa(m.Cores) + " cores")
	if m.Procs != 0 && m.Procs != m.Cores {
		b.WriteString(" (GOMAXPROCS=" + strconv.Itoa(m.Procs) + ")")
	}
	if m.MemBytes > 0 {
		b.WriteString(", " + FormatBytes(m.MemBytes))
	}
	b.WriteString(", " + m.GoVersion + ", " + m.OS)
	if m.Kernel != "" {
		b.WriteString(" " + m.Kernel)
	}
	b.WriteString(", " + m.Date.Format("2006-01-02"))
	return b.String()
}
