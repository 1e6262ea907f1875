//go:build linux

package e2e

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"
	"time"
)

// stream is a deterministic pseudo-random byte stream: a marker, then the
// AES-CTR keystream of a random key. Its bytes at any offset can be made
// again to check what tshark decrypted.
type stream struct {
	marker []byte
	key    []byte
}

func newStream() *stream {
	return &stream{marker: []byte("GOIPSEC-E2E-MARKER-" + randHex(8) + "|"), key: randBytes(16)}
}

// reader returns a reader of the stream from its start.
func (s *stream) reader() io.Reader {
	block, err := aes.NewCipher(s.key)
	if err != nil {
		panic(err)
	}
	ctr := cipher.NewCTR(block, make([]byte, aes.BlockSize))
	return io.MultiReader(bytes.NewReader(s.marker), &ctrReader{ctr})
}

// prefix returns the stream's first n bytes.
func (s *stream) prefix(n int) []byte {
	b := make([]byte, n)
	if _, err := io.ReadFull(s.reader(), b); err != nil {
		panic(err)
	}
	return b
}

type ctrReader struct{ s cipher.Stream }

func (r *ctrReader) Read(p []byte) (int, error) {
	clear(p)
	r.s.XORKeyStream(p, p)
	return len(p), nil
}

// transferResult is what a transfer moved and how fast.
type transferResult struct {
	bytes int64
	dur   time.Duration
}

func (r transferResult) String() string {
	return fmt.Sprintf("%d MB in %v: %.0f Mbit/s", r.bytes/1e6, r.dur.Round(time.Millisecond), float64(r.bytes)*8/r.dur.Seconds()/1e6)
}

// transfer sends the stream over TCP from a client in from to a server
// listening on addr in to: size bytes, or for duration if size is 0.
// The receiver hashes what it reads with SHA-256; the transfer fails
// unless the hash and the length match what was sent.
func transfer(t *testing.T, from, to *netns, addr string, s *stream, size int64, duration time.Duration) transferResult {
	t.Helper()
	ln, err := to.listen("tcp", addr)
	check(t, "listen in "+to.name, err)
	defer ln.Close()
	type result struct {
		n   int64
		sum []byte
		err error
	}
	done := make(chan result, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- result{err: err}
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(2 * time.Minute))
		h := sha256.New()
		n, err := io.Copy(h, c)
		done <- result{n, h.Sum(nil), err}
	}()
	c, err := from.dial("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatalf("TCP connect from %s to %s: %v", from.name, addr, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Minute))
	h := sha256.New()
	w := io.MultiWriter(c, h)
	begin := time.Now()
	var sent int64
	if size > 0 {
		sent, err = io.CopyN(w, s.reader(), size)
	} else {
		r := s.reader()
		buf := make([]byte, 64<<10)
		for time.Since(begin) < duration && err == nil {
			if _, err = io.ReadFull(r, buf); err == nil {
				var n int
				n, err = w.Write(buf)
				sent += int64(n)
			}
		}
	}
	if err != nil {
		t.Fatalf("sending after %d bytes, %v: %v", sent, time.Since(begin), err)
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatalf("close write: %v", err)
	}
	var res result
	select {
	case res = <-done:
	case <-time.After(2 * time.Minute):
		t.Fatal("receiver did not finish")
	}
	dur := time.Since(begin)
	if res.err != nil && !errors.Is(res.err, io.EOF) {
		t.Fatalf("receiving: %v (after %d bytes)", res.err, res.n)
	}
	if res.n != sent {
		t.Fatalf("received %d bytes, sent %d", res.n, sent)
	}
	if !bytes.Equal(res.sum, h.Sum(nil)) {
		t.Fatalf("received %d bytes whose SHA-256 %x is not that of what was sent, %x", res.n, res.sum, h.Sum(nil))
	}
	return transferResult{bytes: sent, dur: dur}
}
