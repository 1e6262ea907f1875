package bench

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/md5"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/binary"
	"fmt"
	"hash"
	"net/netip"

	"github.com/goipsec/goipsec/ah"
	"github.com/goipsec/goipsec/esp"
	"github.com/goipsec/goipsec/internal/dataplane"
	"github.com/goipsec/goipsec/internal/packet"
	"github.com/goipsec/goipsec/internal/replay"
	"github.com/goipsec/goipsec/internal/xform"
	"github.com/goipsec/goipsec/sad"
	"github.com/goipsec/goipsec/spd"
)

// worker is one goroutine's share of a measurement.
type worker interface {
	// n is the number of packets in the worker's ring.
	n() int
	// do processes ring packets [i, j) and returns the packets and inner
	// bytes processed successfully and the packets that failed.
	do(i, j int) (pkts, bytes, fails int)
	// restore makes the ring ready for another timed pass (untimed).
	restore()
}

// measurement is the set-up state of one point of the plan.
type measurement struct {
	workers []worker
	chunk   int    // packets per do call
	phased  bool   // restore between timed passes (open workloads)
	hook    func() // phased: runs once before the workers' restore
	cleanup func()
}

// maxMeasurementBytes bounds the packet bytes of one measurement's rings
// together, so that many goroutines get smaller rings.
const maxMeasurementBytes = 16 << 20

// pipelineBatch is the batch the pipeline hands to the dataplane: a TUN
// read's worth.
const pipelineBatch = 64

// chunkFor is the number of packets per do call between looks at the
// clock or the stop flag: about 16 KiB, at least 16 packets.
func chunkFor(s Size) int { return max(16, int(16384/s.Mean())) }

// tunOffset is where Engine.Decrypt puts the inner packet in the buffers
// it returns, as a TUN write with a virtio-net header would want it.
const tunOffset = 16

var (
	outerSrc = [4]byte{192, 0, 2, 1}
	outerDst = [4]byte{192, 0, 2, 2}
	peerA    = netip.AddrPortFrom(netip.AddrFrom4(outerSrc), 4500)
	peerB    = netip.AddrPortFrom(netip.AddrFrom4(outerDst), 4500)
)

// innerAddrs are the inner addresses of goroutine w's traffic.
func innerAddrs(w int) (src, dst [4]byte) {
	return [4]byte{10, 1, byte(w / 250), byte(w%250 + 1)}, [4]byte{10, 2, byte(w / 250), byte(w%250 + 1)}
}

func randBytes(n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on supported systems
	}
	return b
}

// setup builds the workers of point p.
func setup(p point, cfg *Config) (*measurement, error) {
	rb := cfg.RingBytes
	if rb <= 0 {
		rb = DefaultRingBytes
	}
	n := ringLen(p.size, min(rb, maxMeasurementBytes/p.g))
	switch {
	case p.isCeil:
		return setupCeiling(p, n)
	case p.op == OpPipeline:
		return setupPipeline(p, n, cfg.ESN)
	case p.t.AH:
		return setupAH(p, n, cfg.ESN)
	}
	return setupESP(p, n, cfg.ESN)
}

// sharedRingLen caps the ring of a shared-SA open workload so that the
// packets of all goroutines' rings fit in one replay window: however the
// goroutines are scheduled, none falls behind the window.
func sharedRingLen(n, g int, s Size) int {
	m := (replay.MaxSize - 64) / g
	if n <= m {
		return n
	}
	p := len(s.Pattern)
	return max(p, m/p*p)
}

func rings(p point, n int) []*ring {
	rs := make([]*ring, p.g)
	for w := range rs {
		src, dst := innerAddrs(w)
		if p.sa == Shared {
			src, dst = innerAddrs(0)
		}
		rs[w] = newRing(n, p.size, src, dst, uint64(w+1))
	}
	return rs
}

// sealOrder calls seal for every packet of every ring: ring by ring for
// own SAs, round robin across the rings for a shared SA, so that each
// goroutine's ring holds every g-th sequence number and the goroutines,
// opening in parallel, stay close together in the replay window.
func sealOrder(rs []*ring, shared bool, seal func(w, i int) error) error {
	if shared {
		for i := range rs[0].len() {
			for w := range rs {
				if err := seal(w, i); err != nil {
					return err
				}
			}
		}
		return nil
	}
	for w, r := range rs {
		for i := range r.len() {
			if err := seal(w, i); err != nil {
				return err
			}
		}
	}
	return nil
}

// ---- tunnel-mode SAs (ESP and AH) ----

// tunnelSA is what the open workload needs of an ESP or AH SA.
type tunnelSA interface {
	DecapTunnel(buf []byte, off, end int) (start, newEnd int, err error)
	Window() *replay.Window
	Zero()
}

// tunnelProto says how [setupTunnel] makes and uses one protocol's SAs.
type tunnelProto[S tunnelSA] struct {
	// pair makes an outbound SA and the inbound SA that opens what it
	// seals.
	pair func(t Transform, spi uint32, esn bool, window int) (out, in S, err error)
	// sealWorker is the seal workload of one ring.
	sealWorker func(r *ring, out S) worker
	// seal seals ring packet i (untimed, to fill the open workload's ring).
	seal func(out S, r *ring, i int) (start, end int, err error)
}

// opener is the open workload of one ring of sealed packets.
type opener struct {
	r        *ring
	sa       tunnelSA
	pristine []byte
	window   int // reset the SA's window in restore; 0 when shared
}

func (w *opener) n() int { return w.r.len() }

func (w *opener) restore() {
	copy(w.r.slab, w.pristine)
	if w.window > 0 {
		_ = w.sa.Window().Init(w.window)
	}
}

func (w *opener) do(i, j int) (pkts, bytes, fails int) {
	for k := i; k < j; k++ {
		if _, _, err := w.sa.DecapTunnel(w.r.buf(k), w.r.start[k], w.r.end[k]); err != nil {
			fails++
			continue
		}
		pkts++
		bytes += w.r.sizes[k]
	}
	return
}

// setupTunnel builds the seal or open workers of an ESP or AH point: an SA
// pair per goroutine (own) or one for all (shared, whose open workload
// shares the largest replay window).
func setupTunnel[S tunnelSA](p point, n int, esn bool, proto tunnelProto[S]) (*measurement, error) {
	m := &measurement{chunk: chunkFor(p.size), phased: p.op == OpOpen}
	shared := p.sa == Shared
	window := replay.DefaultSize
	if shared && p.op == OpOpen {
		window = replay.MaxSize
		n = sharedRingLen(n, p.g, p.size)
	}
	rs := rings(p, n)
	outs, ins := make([]S, p.g), make([]S, p.g)
	for w := range p.g {
		if shared && w > 0 {
			outs[w], ins[w] = outs[0], ins[0]
			continue
		}
		var err error
		if outs[w], ins[w], err = proto.pair(p.t, uint32(0x1000+w), esn, window); err != nil {
			return nil, err
		}
	}
	m.cleanup = func() {
		for w := range outs {
			outs[w].Zero()
			ins[w].Zero()
		}
	}
	if p.op == OpSeal {
		for w, r := range rs {
			m.workers = append(m.workers, proto.sealWorker(r, outs[w]))
		}
		return m, nil
	}
	err := sealOrder(rs, shared, func(w, i int) error {
		r := rs[w]
		s, e, err := proto.seal(outs[w], r, i)
		r.start[i], r.end[i] = s, e
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("%s: sealing the ring: %w", p, err)
	}
	for w, r := range rs {
		ow := &opener{r: r, sa: ins[w], pristine: bytes.Clone(r.slab), window: window}
		if shared {
			ow.window = 0
		}
		m.workers = append(m.workers, ow)
	}
	if shared {
		in := ins[0]
		m.hook = func() { _ = in.Window().Init(window) }
	}
	// Check that the first packet of each ring opens, where it was, to
	// what was sealed.
	for w, r := range rs {
		s, e, err := ins[w].DecapTunnel(r.buf(0), r.start[0], r.end[0])
		if err != nil {
			return nil, fmt.Errorf("%s: self-check: %w", p, err)
		}
		if s != headroom || e-s != r.sizes[0] || packet.IPv4(r.buf(0)[s:e]).TotalLength() != uint16(r.sizes[0]) {
			return nil, fmt.Errorf("%s: self-check: opened [%d:%d], sealed [%d:%d]", p, s, e, headroom, headroom+r.sizes[0])
		}
	}
	if m.hook != nil {
		m.hook()
	}
	for _, w := range m.workers {
		w.restore()
	}
	return m, nil
}

// ---- ESP ----

func espConfig(t Transform, spi uint32, esn bool, window int) *esp.Config {
	cfg := &esp.Config{SPI: spi, Enc: t.enc, ESN: esn, ReplayWindow: window}
	if t.enc.Kind != xform.KindNull {
		cfg.EncKey = randBytes(t.enc.KeyLen())
	}
	if t.integ != nil {
		cfg.Integ = t.integ
		cfg.IntegKey = randBytes(t.integ.KeyLen)
	}
	return cfg
}

func espPair(t Transform, spi uint32, esn bool, window int) (out, in *esp.SA, err error) {
	cfg := espConfig(t, spi, esn, window)
	if out, err = esp.NewSA(cfg); err != nil {
		return nil, nil, err
	}
	if in, err = esp.NewSA(cfg); err != nil {
		return nil, nil, err
	}
	return out, in, nil
}

type espSeal struct {
	r  *ring
	sa *esp.SA
}

func (w *espSeal) n() int   { return w.r.len() }
func (w *espSeal) restore() {}

func (w *espSeal) do(i, j int) (pkts, bytes, fails int) {
	for k := i; k < j; k++ {
		buf, l := w.r.buf(k), w.r.sizes[k]
		// The ring is sealed again and again: what was the packet is now
		// ciphertext, which costs the same to encrypt. EncapTunnel checks
		// the inner IP version, so put that byte back.
		buf[headroom] = 0x45
		if _, _, err := w.sa.EncapTunnel(buf, headroom, headroom+l); err != nil {
			fails++
			continue
		}
		pkts++
		bytes += l
	}
	return
}

func setupESP(p point, n int, esn bool) (*measurement, error) {
	return setupTunnel(p, n, esn, tunnelProto[*esp.SA]{
		pair:       espPair,
		sealWorker: func(r *ring, out *esp.SA) worker { return &espSeal{r: r, sa: out} },
		seal: func(out *esp.SA, r *ring, i int) (int, int, error) {
			return out.EncapTunnel(r.buf(i), headroom, headroom+r.sizes[i])
		},
	})
}

// ---- AH ----

// outerHeader is the outer IPv4 header template of AH tunnel mode.
func outerHeader() []byte {
	h := make([]byte, packet.IPv4MinHeaderLen+8)
	writeHeaders(h, outerSrc, outerDst, 0) // AH sets the protocol, length and checksum
	return h[:packet.IPv4MinHeaderLen]
}

func ahPair(t Transform, spi uint32, esn bool, window int) (out, in *ah.SA, err error) {
	cfg := &ah.Config{SPI: spi, Integ: t.integ, IntegKey: randBytes(t.integ.KeyLen), ESN: esn, ReplayWindow: window}
	if out, err = ah.NewSA(cfg); err != nil {
		return nil, nil, err
	}
	if in, err = ah.NewSA(cfg); err != nil {
		return nil, nil, err
	}
	return out, in, nil
}

type ahSeal struct {
	r     *ring
	sa    *ah.SA
	outer []byte
}

func (w *ahSeal) n() int   { return w.r.len() }
func (w *ahSeal) restore() {}

func (w *ahSeal) do(i, j int) (pkts, bytes, fails int) {
	for k := i; k < j; k++ {
		l := w.r.sizes[k]
		// AH leaves the inner packet as it is: sealing it again is the
		// same work.
		if _, _, err := w.sa.EncapTunnel(w.r.buf(k), headroom, headroom+l, w.outer); err != nil {
			fails++
			continue
		}
		pkts++
		bytes += l
	}
	return
}

func setupAH(p point, n int, esn bool) (*measurement, error) {
	outer := outerHeader()
	return setupTunnel(p, n, esn, tunnelProto[*ah.SA]{
		pair:       ahPair,
		sealWorker: func(r *ring, out *ah.SA) worker { return &ahSeal{r: r, sa: out, outer: outer} },
		seal: func(out *ah.SA, r *ring, i int) (int, int, error) {
			return out.EncapTunnel(r.buf(i), headroom, headroom+r.sizes[i], outer)
		},
	})
}

// ---- the dataplane pipeline ----

type pipeline struct {
	r        *ring
	a, b     *dataplane.Engine
	bufs     [][]byte
	pristine []byte
	ds       []dataplane.Datagram
	tun      [][]byte
}

func (w *pipeline) n() int   { return w.r.len() }
func (w *pipeline) restore() {}

// do encrypts packets [i, j) with engine a and decrypts the datagrams
// with engine b, in place: the inner packets end where they started, so
// the ring needs no restoring (except after a drop).
func (w *pipeline) do(i, j int) (pkts, bytes, fails int) {
	ds := w.a.Encrypt(w.bufs[i:j], w.r.sizes[i:j], headroom, w.ds[:0])
	for k := range ds {
		ds[k].Addr = peerA
	}
	tun := w.b.Decrypt(ds, w.tun[:0], tunOffset)
	for _, t := range tun {
		bytes += len(t) - tunOffset
	}
	pkts = len(tun)
	fails = j - i - pkts
	if fails > 0 {
		s := w.r.stride
		copy(w.r.slab[i*s:j*s], w.pristine[i*s:j*s])
	}
	w.ds, w.tun = ds, tun
	return
}

// setupPipeline builds two engines, a and b, each with one static child
// per goroutine (own) or one child for all (shared); goroutine w sends
// its ring's packets from a to b through its child's SAs.
func setupPipeline(p point, n int, esn bool) (*measurement, error) {
	if p.t.AH {
		// Hook: the dataplane engine has no AH path yet; when it has,
		// install AH children here.
		return nil, fmt.Errorf("%s: the dataplane has no AH path", p)
	}
	shared := p.sa == Shared
	window := 0
	if shared {
		window = replay.MaxSize // goroutines' batches interleave
	}
	sadA, sadB := sad.New(sad.Options{}), sad.New(sad.Options{})
	a := dataplane.New(spd.New(spd.Discard), sadA, nil)
	b := dataplane.New(spd.New(spd.Discard), sadB, nil)
	children := p.g
	if shared {
		children = 1
	}
	pfx := func(a [4]byte) []netip.Prefix { return []netip.Prefix{netip.PrefixFrom(netip.AddrFrom4(a), 32)} }
	for c := range children {
		src, dst := innerAddrs(c)
		ab := espConfig(p.t, uint32(0x1000+c), esn, window)
		ba := espConfig(p.t, uint32(0x2000+c), esn, window)
		id := sad.ChildID(c + 1)
		if err := a.InstallStatic(&dataplane.StaticChild{ID: id, Mode: sad.Tunnel, Local: pfx(src), Remote: pfx(dst), Peer: peerB, In: ba, Out: ab}); err != nil {
			return nil, err
		}
		if err := b.InstallStatic(&dataplane.StaticChild{ID: id, Mode: sad.Tunnel, Local: pfx(dst), Remote: pfx(src), Peer: peerA, In: ab, Out: ba}); err != nil {
			return nil, err
		}
	}
	m := &measurement{chunk: pipelineBatch, cleanup: func() { sadA.Close(); sadB.Close() }}
	for _, r := range rings(p, n) {
		w := &pipeline{r: r, a: a, b: b, pristine: bytes.Clone(r.slab),
			ds: make([]dataplane.Datagram, 0, pipelineBatch), tun: make([][]byte, 0, pipelineBatch)}
		for i := range r.len() {
			w.bufs = append(w.bufs, r.buf(i))
		}
		// Self-check: one batch makes the round trip intact.
		k := min(pipelineBatch, r.len())
		if got, _, fails := w.do(0, k); fails != 0 || got != k {
			return nil, fmt.Errorf("%s: self-check: %d of %d packets delivered (a: %d no SA, %d discarded; b: %d drops, %d unknown SPI)",
				p, got, k, a.Stats.NoSA.Load(), a.Stats.Discarded.Load(), b.Stats.InboundDrops.Load(), b.Stats.UnknownSPI.Load())
		}
		if !bytes.Equal(r.slab[:k*r.stride], w.pristine[:k*r.stride]) {
			for i := range k {
				s := i * r.stride
				if !bytes.Equal(r.slab[s+headroom:s+headroom+r.sizes[i]], w.pristine[s+headroom:s+headroom+r.sizes[i]]) {
					return nil, fmt.Errorf("%s: self-check: packet %d changed in the round trip", p, i)
				}
			}
		}
		m.workers = append(m.workers, w)
	}
	return m, nil
}

// ---- ceilings: the bare primitives ----

// aeadCeiling seals or opens with a bare AEAD, in place: AES-GCM or
// ChaCha20-Poly1305 over the packet with an 8-byte AAD (as ESP's SPI and
// sequence number), or GMAC (nothing encrypted, the packet as AAD).
type aeadCeiling struct {
	r        *ring
	a        cipher.AEAD
	gmac     bool
	open     bool
	nonce    [12]byte
	ctr      uint64
	pristine []byte
}

func (w *aeadCeiling) n() int { return w.r.len() }

func (w *aeadCeiling) restore() {
	if w.open {
		copy(w.r.slab, w.pristine)
	}
}

func (w *aeadCeiling) do(i, j int) (pkts, bytes, fails int) {
	h := headroom
	for k := i; k < j; k++ {
		buf, l := w.r.buf(k), w.r.sizes[k]
		if !w.open {
			w.ctr++
			binary.BigEndian.PutUint64(w.nonce[4:], w.ctr)
			if w.gmac {
				w.a.Seal(buf[h+l:h+l], w.nonce[:], nil, buf[h:h+l])
			} else {
				w.a.Seal(buf[h:h], w.nonce[:], buf[h:h+l], buf[h-8:h])
			}
			pkts++
			bytes += l
			continue
		}
		binary.BigEndian.PutUint64(w.nonce[4:], uint64(k))
		var err error
		if w.gmac {
			_, err = w.a.Open(nil, w.nonce[:], buf[h+l:h+l+16], buf[h:h+l])
		} else {
			_, err = w.a.Open(buf[h:h], w.nonce[:], buf[h:h+l+16], buf[h-8:h])
		}
		if err != nil {
			fails++
			continue
		}
		pkts++
		bytes += l
	}
	return
}

// sealForOpen seals slot k with the nonce an open pass expects.
func (w *aeadCeiling) sealForOpen(k int) {
	h, buf, l := headroom, w.r.buf(k), w.r.sizes[k]
	binary.BigEndian.PutUint64(w.nonce[4:], uint64(k))
	if w.gmac {
		w.a.Seal(buf[h+l:h+l], w.nonce[:], nil, buf[h:h+l])
	} else {
		w.a.Seal(buf[h:h], w.nonce[:], buf[h:h+l], buf[h-8:h])
	}
}

// ivSetter is the IV reset of crypto/cipher's CBC modes.
type ivSetter interface{ SetIV([]byte) }

// macCeiling computes (seal) or verifies (open) a truncated HMAC over the
// packet and, with a block cipher, encrypts (seal) or decrypts after
// verifying (open) it in CBC mode first: the cipher and HMAC alone.
type macCeiling struct {
	r        *ring
	mac      hash.Hash
	icvLen   int
	enc, dec cipher.BlockMode // nil for HMAC alone
	iv       []byte
	bs       int
	open     bool
	sum      [64]byte
	pristine []byte
}

func (w *macCeiling) n() int { return w.r.len() }

func (w *macCeiling) restore() {
	if w.open {
		copy(w.r.slab, w.pristine)
	}
}

func (w *macCeiling) do(i, j int) (pkts, bytes, fails int) {
	for k := i; k < j; k++ {
		if w.one(k, w.open) {
			pkts++
			bytes += w.r.sizes[k]
		} else {
			fails++
		}
	}
	return
}

func (w *macCeiling) one(k int, open bool) bool {
	buf, l := w.r.buf(k), w.r.sizes[k]
	if w.enc != nil {
		l = (l + w.bs - 1) / w.bs * w.bs // CBC works on whole blocks
	}
	p := buf[headroom : headroom+l]
	icv := buf[headroom+l : headroom+l+w.icvLen]
	if !open && w.enc != nil {
		w.enc.(ivSetter).SetIV(w.iv)
		w.enc.CryptBlocks(p, p)
	}
	w.mac.Reset()
	w.mac.Write(p)
	sum := w.mac.Sum(w.sum[:0])[:w.icvLen]
	if !open {
		copy(icv, sum)
		return true
	}
	if subtle.ConstantTimeCompare(sum, icv) != 1 {
		return false
	}
	if w.dec != nil {
		w.dec.(ivSetter).SetIV(w.iv)
		w.dec.CryptBlocks(p, p)
	}
	return true
}

var hashes = map[string]func() hash.Hash{
	"sha256": sha256.New, "sha384": sha512.New384, "sha512": sha512.New,
	"sha1": sha1.New, "md5": md5.New,
}

// stdlibGCM is crypto/cipher's AES-GCM, the reference ceiling.
func stdlibGCM(key []byte) (cipher.AEAD, error) {
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}

func setupCeiling(p point, n int) (*measurement, error) {
	open := p.op == OpOpen
	m := &measurement{chunk: chunkFor(p.size), phased: open}
	t := p.t
	for w, r := range rings(point{size: p.size, g: p.g}, n) {
		var wk worker
		switch {
		case !t.AH && t.enc.Kind == xform.KindAEAD, !t.AH && t.enc.Kind == xform.KindGMAC, t.AH && t.integ.GMAC:
			// The AEAD ESP and AH use (xform's), so that a row's ratio to its
			// ceiling compares like with like; a reference ceiling is
			// crypto/cipher's GCM.
			var a cipher.AEAD
			var err error
			switch {
			case p.ref && t.AH:
				a, err = stdlibGCM(randBytes(t.integ.KeyLen - 4))
			case p.ref:
				a, err = stdlibGCM(randBytes(t.enc.KeyBits / 8))
			case t.AH:
				a, _, err = xform.NewGMAC(t.integ, randBytes(t.integ.KeyLen))
			default:
				a, _, err = xform.NewAEAD(t.enc, randBytes(t.enc.KeyLen()))
			}
			if err != nil {
				return nil, err
			}
			ac := &aeadCeiling{r: r, a: a, gmac: t.AH || t.enc.Kind == xform.KindGMAC, open: open}
			if open {
				for k := range r.len() {
					ac.sealForOpen(k)
				}
				ac.pristine = bytes.Clone(r.slab)
			}
			wk = ac
		default:
			newHash := hashes[t.integ.Name]
			if newHash == nil {
				return nil, fmt.Errorf("%s: no HMAC for %s", p, t.integ.Name)
			}
			mc := &macCeiling{r: r, mac: hmac.New(newHash, randBytes(t.integ.KeyLen)), icvLen: t.integ.ICVLen, open: open}
			if !t.AH && t.enc.Kind == xform.KindCBC {
				blk, err := xform.NewBlock(t.enc, randBytes(t.enc.KeyLen()))
				if err != nil {
					return nil, err
				}
				mc.bs = blk.BlockSize()
				mc.iv = randBytes(mc.bs)
				mc.enc, mc.dec = cipher.NewCBCEncrypter(blk, mc.iv), cipher.NewCBCDecrypter(blk, mc.iv)
				_, ok1 := mc.enc.(ivSetter)
				_, ok2 := mc.dec.(ivSetter)
				if !ok1 || !ok2 {
					return nil, fmt.Errorf("%s: CBC mode without SetIV", p)
				}
				if mc.bs > tailroom-mc.icvLen {
					return nil, fmt.Errorf("%s: block size %d", p, mc.bs)
				}
			}
			if open {
				for k := range r.len() {
					mc.one(k, false)
				}
				mc.pristine = bytes.Clone(r.slab)
			}
			wk = mc
		}
		if open {
			if _, _, fails := wk.do(0, 1); fails != 0 {
				return nil, fmt.Errorf("%s: self-check failed (worker %d)", p, w)
			}
			wk.restore()
		}
		m.workers = append(m.workers, wk)
	}
	return m, nil
}
