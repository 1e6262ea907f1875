package aesgcm

import (
	"crypto/cipher"
	"fmt"
	"testing"
)

// BenchmarkSeal and BenchmarkOpen compare this package (impl=vector, or
// the stdlib fallback where the CPU lacks it) with crypto/cipher's GCM in
// one binary: ESP's shape, in place with an 8-byte AAD.
func BenchmarkSeal(b *testing.B) { benchAEAD(b, false) }

// BenchmarkOpen is BenchmarkSeal's counterpart for Open.
func BenchmarkOpen(b *testing.B) { benchAEAD(b, true) }

// BenchmarkGMAC is RFC 4543's shape: the packet as AAD, nothing encrypted.
func BenchmarkGMAC(b *testing.B) {
	for _, size := range []int{64, 512, 1400, 8192} {
		for _, impl := range []string{"aesgcm", "stdlib"} {
			b.Run(fmt.Sprintf("%d/%s", size, impl), func(b *testing.B) {
				a := benchImpl(b, impl, 16)
				nonce := make([]byte, NonceSize)
				buf := make([]byte, size+TagSize)
				b.SetBytes(int64(size))
				b.ReportAllocs()
				defer reportCPU(b)()
				for b.Loop() {
					a.Seal(buf[size:size], nonce, nil, buf[:size])
				}
			})
		}
	}
}

func benchImpl(b *testing.B, impl string, keyLen int) cipher.AEAD {
	key := make([]byte, keyLen)
	for i := range key {
		key[i] = byte(i)
	}
	if impl == "stdlib" {
		return stdGCM(b, key)
	}
	a, err := New(key)
	if err != nil {
		b.Fatal(err)
	}
	return a
}

func benchAEAD(b *testing.B, open bool) {
	for _, keyLen := range []int{16, 32} {
		for _, size := range []int{64, 512, 1400, 8192} {
			for _, impl := range []string{"aesgcm", "stdlib"} {
				b.Run(fmt.Sprintf("aes%d/%d/%s", keyLen*8, size, impl), func(b *testing.B) {
					a := benchImpl(b, impl, keyLen)
					nonce := make([]byte, NonceSize)
					aad := make([]byte, 8)
					buf := make([]byte, size+TagSize)
					sealed := a.Seal(nil, nonce, buf[:size], aad)
					b.SetBytes(int64(size))
					b.ReportAllocs()
					defer reportCPU(b)()
					for b.Loop() {
						if open {
							copy(buf, sealed)
							if _, err := a.Open(buf[:0], nonce, buf, aad); err != nil {
								b.Fatal(err)
							}
						} else {
							a.Seal(buf[:0], nonce, buf[:size], aad)
						}
					}
				})
			}
		}
	}
}

// reportCPU adds the process CPU time per operation (cpu-ns/op) to a
// benchmark: on a shared machine, steadier than the wall-clock ns/op.
func reportCPU(b *testing.B) func() {
	start := processCPU()
	return func() {
		if d := processCPU() - start; d > 0 && b.N > 0 {
			b.ReportMetric(float64(d)/float64(b.N), "cpu-ns/op")
		}
	}
}

// BenchmarkNew is the key setup: the key schedule and the hash key powers.
func BenchmarkNew(b *testing.B) {
	key := make([]byte, 16)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := New(key); err != nil {
			b.Fatal(err)
		}
	}
}
