//go:build !unix

package aesgcm

func processCPU() int64 { return 0 }
