package bench

import (
	"bufio"
	"os"
	"slices"
	"strings"
	"syscall"
)

func describeOS(m *Machine) {
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		defer f.Close()
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			k, v, ok := strings.Cut(sc.Text(), ":")
			if !ok {
				continue
			}
			k, v = strings.TrimSpace(k), strings.TrimSpace(v)
			switch k {
			case "model name", "Model", "cpu model":
				if m.CPU == "unknown" && v != "" {
					m.CPU = v
				}
			case "flags", "Features":
				if m.CPUFlags == nil {
					have := strings.Fields(v)
					m.CPUFlags = []string{}
					for _, f := range cryptoFlags {
						if slices.Contains(have, f) {
							m.CPUFlags = append(m.CPUFlags, f)
						}
					}
				}
			}
		}
	}
	var u syscall.Utsname
	if syscall.Uname(&u) == nil {
		m.Kernel = utsString(u.Sysname[:]) + " " + utsString(u.Release[:]) + " " + utsString(u.Version[:])
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		if f := strings.Fields(string(b)); len(f) >= 3 {
			m.LoadAvg = strings.Join(f[:3], " ")
		}
	}
}

func utsString[T int8 | uint8](a []T) string {
	b := make([]byte, 0, len(a))
	for _, c := range a {
		if c == 0 {
			break
		}
		b = append(b, byte(c))
	}
	return string(b)
}
