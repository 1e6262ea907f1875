//go:build !amd64 || purego

package aesgcm

import "crypto/cipher"

const hasVector = false

func newVector([]byte) cipher.AEAD { return nil }

// gcmVectorType stands for the vector AEAD, which this build lacks.
type gcmVectorType struct{ cipher.AEAD }
