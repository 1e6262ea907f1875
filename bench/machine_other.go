//go:build !linux

package bench

func describeOS(m *Machine) {}
