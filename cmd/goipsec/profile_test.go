package main

import (
	"os"
	"path/filepath"
	"testing"
)

// TestStartCPUProfile: the profile file is written when stopped, and a
// path that cannot be created is an error, not a silent no-op.
func TestStartCPUProfile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cpu.pprof")
	stop, err := startCPUProfile(path)
	if err != nil {
		t.Fatal(err)
	}
	x := 0
	for i := range 1_000_000 {
		x += i * i
	}
	_ = x
	stop()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Size() == 0 {
		t.Error("empty profile")
	}
	if _, err := startCPUProfile(filepath.Join(t.TempDir(), "no", "such", "dir", "cpu.pprof")); err == nil {
		t.Error("profile into a missing directory: no error")
	}
}
