package interop

import (
	"bytes"
	"crypto/ecdh"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"math/big"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/goipsec/goipsec/ike/ikecrypto"
	"github.com/goipsec/goipsec/ike/kex"
	"github.com/goipsec/goipsec/ike/message"
	"github.com/goipsec/goipsec/ike/proposal"
	"github.com/goipsec/goipsec/ike/ts"
)

// capture mirrors the JSON written by testdata/strongswan/capture.
type capture struct {
	Description  string            `json:"description"`
	Local        string            `json:"local"`
	Remote       string            `json:"remote"`
	PSK          string            `json:"psk"`
	IDi          string            `json:"idi"`
	IDr          string            `json:"idr"`
	IKEProposals []string          `json:"ike_proposals"`
	ESPProposals []string          `json:"esp_proposals"`
	KE           uint16            `json:"ke"`
	PrivateKey   string            `json:"private_key"`
	Ours         map[string]string `json:"goipsec"`
	StrongSwan   map[string]string `json:"strongswan"`
	Messages     []struct {
		Dir      string `json:"dir"`
		Exchange string `json:"exchange"`
		Port     int    `json:"port"`
		Hex      string `json:"hex"`
	} `json:"messages"`
}

const dir = "../testdata/strongswan"

func load(t *testing.T, name string) *capture {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	var c capture
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	return &c
}

func unhex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// charon returns a value charon logged, failing if it did not.
func (c *capture) charon(t *testing.T, key string) []byte {
	t.Helper()
	v, ok := c.StrongSwan[key]
	if !ok {
		t.Fatalf("charon did not log %q", key)
	}
	return unhex(t, v)
}

// raw returns the wire octets of message i.
func (c *capture) raw(t *testing.T, i int) []byte { return unhex(t, c.Messages[i].Hex) }

func get[T message.Payload](t *testing.T, m *message.Message, pt message.PayloadType) T {
	t.Helper()
	p, ok := m.Get(pt).(T)
	if !ok {
		t.Fatalf("%v %v: no %v payload in %v", m.Exchange, map[bool]string{true: "response", false: "request"}[m.IsResponse()], pt, m.Payloads)
	}
	return p
}

// sharedSecret recomputes g^ir from our recorded private key, with the
// standard library rather than package kex.
func sharedSecret(t *testing.T, method uint16, priv, peer []byte) []byte {
	t.Helper()
	var curve ecdh.Curve
	switch kex.ID(method) {
	case kex.Curve25519:
		curve = ecdh.X25519()
	case kex.ECP256:
		curve = ecdh.P256()
	case kex.ECP384:
		curve = ecdh.P384()
	case kex.ECP521:
		curve = ecdh.P521()
	case kex.MODP2048:
		p, _ := new(big.Int).SetString("FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7EDEE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF0598DA48361C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3BE39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF6955817183995497CEA956AE515D2261898FA051015728E5A8AACAA68FFFFFFFFFFFFFFFF", 16)
		s := new(big.Int).Exp(new(big.Int).SetBytes(peer), new(big.Int).SetBytes(priv), p)
		return s.FillBytes(make([]byte, 256))
	default:
		t.Fatalf("no key exchange %d", method)
	}
	k, err := curve.NewPrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	if method != uint16(kex.Curve25519) {
		peer = append([]byte{4}, peer...)
	}
	pk, err := curve.NewPublicKey(peer)
	if err != nil {
		t.Fatal(err)
	}
	s, err := k.ECDH(pk)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

var initiatorCaptures = []string{
	"x25519-aes128gcm16.json",
	"ecp384-aes256-sha384.json",
	"modp2048-chacha20poly1305.json",
	"ecp256-aes256gcm16-prfsha512.json",
}

// TestStrongSwanInitiator replays goipsec-initiated exchanges with charon:
// IKE_SA_INIT (with INVALID_KE_PAYLOAD where charon wanted another group),
// IKE_AUTH with PSK and the first Child SA, INFORMATIONAL deleting the IKE
// SA. Everything is recomputed here and compared with what charon sent and
// logged.
func TestStrongSwanInitiator(t *testing.T) {
	for _, name := range initiatorCaptures {
		t.Run(name, func(t *testing.T) { replayInitiator(t, load(t, name)) })
	}
}

func replayInitiator(t *testing.T, c *capture) {
	local, remote := netip.MustParseAddr(c.Local), netip.MustParseAddr(c.Remote)
	// Every message parses, and re-encodes to the octets sent: our encoder
	// reproduces charon's encoding exactly.
	msgs := make([]*message.Message, len(c.Messages))
	for i := range c.Messages {
		m, err := message.ParseMessage(c.raw(t, i))
		if err != nil {
			t.Fatalf("message %d (%s %s): %v", i, c.Messages[i].Dir, c.Messages[i].Exchange, err)
		}
		out, err := m.Marshal()
		if err != nil || !bytes.Equal(out, c.raw(t, i)) {
			t.Errorf("message %d (%s %s) does not re-encode to the same octets", i, c.Messages[i].Dir, c.Messages[i].Exchange)
		}
		msgs[i] = m
	}
	// The last IKE_SA_INIT pair counts; an earlier one is an
	// INVALID_KE_PAYLOAD round trip.
	n := len(msgs)
	if n < 6 {
		t.Fatalf("%d messages", n)
	}
	initReq, initResp := msgs[n-6], msgs[n-5]
	authReq, authResp := n-4, n-3
	infoReq, infoResp := n-2, n-1
	if n == 8 {
		want, err := msgs[1].Notify(message.InvalidKEPayload).InvalidKEMethod()
		if err != nil || want != c.KE || get[*message.KE](t, msgs[0], message.PayloadKE).Method == want {
			t.Errorf("INVALID_KE_PAYLOAD round trip: charon wants %d (%v), final %d", want, err, c.KE)
		}
		if msgs[2].SPIi != msgs[0].SPIi || msgs[2].MessageID != 0 {
			t.Error("retried IKE_SA_INIT changed SPIi or message ID")
		}
	}
	spii, spir := initResp.SPIi, initResp.SPIr
	if spii != initReq.SPIi || spir == 0 || initReq.SPIr != 0 || !initResp.IsResponse() || initResp.IsInitiator() || !initReq.IsInitiator() {
		t.Fatalf("IKE_SA_INIT headers %+v %+v", initReq, initResp)
	}

	// Proposals: charon's choice is one of ours, resolved to algorithms.
	ours, err := proposal.ParseList(message.ProtoIKE, c.IKEProposals)
	if err != nil {
		t.Fatal(err)
	}
	offered := get[*message.SA](t, initReq, message.PayloadSA).Proposals
	if !reflect.DeepEqual(offered, ours) {
		t.Errorf("offered proposals %v, configured %v", offered, ours)
	}
	chosen := &get[*message.SA](t, initResp, message.PayloadSA).Proposals[0]
	if err := proposal.CheckSelection(offered, chosen, proposal.Options{}); err != nil {
		t.Fatal(err)
	}
	suite, err := proposal.ResolveIKE(chosen)
	if err != nil {
		t.Fatal(err)
	}
	if got := proposal.Format(chosen); got != c.Ours["selected_ike"] {
		t.Errorf("selected %s", got)
	}

	// NAT detection: our hashes are what charon expected (it logs them);
	// its destination hash is ours. (Its source hash is faked by
	// kernel-libipsec to force UDP encapsulation.)
	if got := initReq.Notify(message.NATDetectionSourceIP).Data; !bytes.Equal(got, c.charon(t, "precalculated src_hash")) ||
		!bytes.Equal(got, message.NATDetectionHash(spii, 0, local, 500)) {
		t.Error("our NAT_DETECTION_SOURCE_IP is not what charon computed")
	}
	if got := initReq.Notify(message.NATDetectionDestinationIP).Data; !bytes.Equal(got, c.charon(t, "precalculated dst_hash")) {
		t.Error("our NAT_DETECTION_DESTINATION_IP is not what charon computed")
	}
	if got := initResp.Notify(message.NATDetectionDestinationIP).Data; !bytes.Equal(got, message.NATDetectionHash(spii, spir, local, 500)) {
		t.Error("charon's NAT_DETECTION_DESTINATION_IP differs from ours")
	}
	if got := initResp.Notify(message.NATDetectionSourceIP).Data; bytes.Equal(got, message.NATDetectionHash(spii, spir, remote, 500)) {
		t.Error("charon's NAT_DETECTION_SOURCE_IP is genuine; kernel-libipsec should have faked it")
	}

	// Key exchange and key derivation.
	kei, ker := get[*message.KE](t, initReq, message.PayloadKE), get[*message.KE](t, initResp, message.PayloadKE)
	if kei.Method != c.KE || ker.Method != c.KE || uint16(suite.KE) != c.KE {
		t.Fatalf("KE methods %d %d, suite %d, recorded %d", kei.Method, ker.Method, suite.KE, c.KE)
	}
	gir := sharedSecret(t, c.KE, unhex(t, c.PrivateKey), ker.Data)
	if !bytes.Equal(gir, c.charon(t, "shared Diffie Hellman secret")) {
		t.Fatal("g^ir differs from charon's")
	}
	ni, nr := get[*message.Nonce](t, initReq, message.PayloadNonce).Data, get[*message.Nonce](t, initResp, message.PayloadNonce).Data
	prf := suite.PRF
	skeyseed := ikecrypto.SKEYSEED(prf, ni, nr, gir)
	if !bytes.Equal(skeyseed, c.charon(t, "SKEYSEED")) {
		t.Error("SKEYSEED differs from charon's")
	}
	keys, err := ikecrypto.DeriveIKEKeys(&suite.Suite, skeyseed, ni, nr, spii, spir)
	if err != nil {
		t.Fatal(err)
	}
	for name, k := range map[string][]byte{"Sk_d secret": keys.D, "Sk_ei secret": keys.Ei, "Sk_er secret": keys.Er,
		"Sk_pi secret": keys.Pi, "Sk_pr secret": keys.Pr, "Sk_ai secret": keys.Ai, "Sk_ar secret": keys.Ar} {
		if len(k) == 0 {
			continue // AEAD: no SK_a, which charon does not log
		}
		if !bytes.Equal(k, c.charon(t, name)) {
			t.Errorf("%s differs from charon's", name)
		}
	}
	ci, cr, err := ikecrypto.NewIKECiphers(&suite.Suite, keys)
	if err != nil {
		t.Fatal(err)
	}

	// IKE_AUTH: both directions decrypt; the AUTH payloads are what both
	// sides compute.
	areq, err := ikecrypto.Decrypt(c.raw(t, authReq), ci)
	if err != nil {
		t.Fatalf("our IKE_AUTH request: %v", err)
	}
	aresp, err := ikecrypto.Decrypt(c.raw(t, authResp), cr)
	if err != nil {
		t.Fatalf("charon's IKE_AUTH response: %v", err)
	}
	if _, err := ikecrypto.Decrypt(c.raw(t, authResp), ci); err == nil {
		t.Error("charon's response opened with the initiator's key")
	}
	idi := get[*message.IDi](t, areq, message.PayloadIDi)
	idr := get[*message.IDr](t, aresp, message.PayloadIDr)
	if idi.String() != c.IDi || idr.String() != c.IDr || idi.IDType != message.IDFQDN || idr.IDType != message.IDFQDN {
		t.Errorf("identities %v %v", idi, idr)
	}
	psk := []byte(c.PSK)
	octI := ikecrypto.SignedOctets(prf, keys.Pi, c.raw(t, n-6), nr, &idi.Identity, nil)
	octR := ikecrypto.SignedOctets(prf, keys.Pr, c.raw(t, n-5), ni, &idr.Identity, nil)
	if !bytes.Equal(octI, c.charon(t, "octets = message + nonce + prf(Sk_px, IDx')")) ||
		!bytes.Equal(octR, c.charon(t, "octets = message + nonce + prf(Sk_px, IDx') (2)")) {
		t.Error("signed octets differ from charon's")
	}
	authI, authR := get[*message.Auth](t, areq, message.PayloadAUTH), get[*message.Auth](t, aresp, message.PayloadAUTH)
	if authI.Method != message.AuthSharedKey || authR.Method != message.AuthSharedKey {
		t.Errorf("AUTH methods %v %v", authI.Method, authR.Method)
	}
	if !bytes.Equal(ikecrypto.SharedKeyAuth(prf, psk, octI), authI.Data) || !bytes.Equal(authI.Data, c.charon(t, "AUTH = prf(prf(secret, keypad), octets)")) {
		t.Error("our AUTH is not what charon computed")
	}
	if !ikecrypto.VerifySharedKeyAuth(prf, psk, octR, authR.Data) {
		t.Error("charon's AUTH does not verify")
	}
	if ikecrypto.VerifySharedKeyAuth(prf, []byte("another secret"), octR, authR.Data) {
		t.Error("charon's AUTH verifies with the wrong secret")
	}

	// The Child SA: charon's choice, narrowed selectors, keys.
	espOffered := get[*message.SA](t, areq, message.PayloadSA).Proposals
	espChosen := &get[*message.SA](t, aresp, message.PayloadSA).Proposals[0]
	if err := proposal.CheckSelection(espOffered, espChosen, proposal.Options{SkipKE: true}); err != nil {
		t.Fatal(err)
	}
	cs, err := proposal.ResolveChild(espChosen)
	if err != nil {
		t.Fatal(err)
	}
	if got := proposal.Format(espChosen); got != c.Ours["selected_esp"] {
		t.Errorf("ESP selected %s", got)
	}
	tsi, tsr := get[*message.TSi](t, aresp, message.PayloadTSi), get[*message.TSr](t, aresp, message.PayloadTSr)
	if !ts.Subset(tsi.Selectors, get[*message.TSi](t, areq, message.PayloadTSi).Selectors) ||
		!ts.Subset(tsr.Selectors, get[*message.TSr](t, areq, message.PayloadTSr).Selectors) {
		t.Errorf("charon's selectors %v %v are not within ours", tsi.Selectors, tsr.Selectors)
	}
	if !bytes.Equal(append(bytes.Clone(ni), nr...), c.charon(t, "seed")) {
		t.Error("Child SA seed differs")
	}
	ck, err := ikecrypto.DeriveChildKeys(prf, keys.D, cs.Enc, cs.Integ, ni, nr)
	if err != nil {
		t.Fatal(err)
	}
	for name, k := range map[string][]byte{"encryption initiator key": ck.EncI, "encryption responder key": ck.EncR,
		"integrity initiator key": ck.IntegI, "integrity responder key": ck.IntegR} {
		if len(k) == 0 {
			continue
		}
		if !bytes.Equal(k, c.charon(t, name)) {
			t.Errorf("Child SA %s differs from charon's", name)
		}
	}

	// INFORMATIONAL: our DELETE and charon's empty answer.
	ireq, err := ikecrypto.Decrypt(c.raw(t, infoReq), ci)
	if err != nil {
		t.Fatal(err)
	}
	if d := get[*message.Delete](t, ireq, message.PayloadDelete); d.Protocol != message.ProtoIKE {
		t.Errorf("delete %+v", d)
	}
	iresp, err := ikecrypto.Decrypt(c.raw(t, infoResp), cr)
	if err != nil || len(iresp.Payloads) != 0 || iresp.MessageID != 2 || !iresp.IsResponse() {
		t.Errorf("INFORMATIONAL response %+v %v", iresp, err)
	}
}

// TestStrongSwanIKESAInit is the hand-checked decode of the IKE_SA_INIT
// request charon sent as initiator (connection "to-goipsec" of
// swanctl.conf: proposals aes256gcm16-prfsha384-x25519-ecp256 and
// aes128-sha256-modp3072). Regenerating the captures changes SPIs, nonces
// and key exchange data: update the constants below then.
func TestStrongSwanIKESAInit(t *testing.T) {
	c := load(t, "charon-initiator.json")
	raw := c.raw(t, 0)
	// Checked by hand against RFC 7296 section 3:
	// 0x00 SPIi dd5ee66119f3cc62, SPIr 0; 0x10 next 0x21 (SA), version 0x20,
	// exchange 0x22 (IKE_SA_INIT), flags 0x08 (I), message ID 0, length 284.
	// 0x1c SA: next 0x22 (KE), length 0x5c. Proposal 1 "02 00 00 2c 01 01 00
	// 04": more follow, 44 octets, #1, IKE, no SPI, 4 transforms; "03 00 00
	// 0c 01 00 00 14 80 0e 01 00": ENCR 20 (AES-GCM-16) with TV attribute 14
	// (Key Length) 256; PRF 6; KE 31; KE 19. Proposal 2: ENCR 12 Key Length
	// 128, INTEG 12, PRF 5, KE 15 - strongSwan orders ENCR, INTEG, PRF, KE.
	// 0x78 KE "28 00 00 28 00 1f 00 00": next Nonce, 40 octets, group 31.
	// 0xa0 Nonce, 36 octets. Then N(16388), N(16389) with 20-octet hashes,
	// N(16430), N(16431) "00 02 00 03 00 04 00 05", N(16406) last.
	if len(raw) != 284 || !bytes.Equal(raw[:20], unhex(t, "dd5ee66119f3cc62000000000000000021202208")) {
		t.Fatalf("not the recorded message")
	}
	m, err := message.ParseMessage(raw)
	if err != nil {
		t.Fatal(err)
	}
	if m.SPIi != 0xdd5ee66119f3cc62 || m.SPIr != 0 || m.Exchange != message.IKESAInit || m.Flags != message.FlagInitiator || m.MessageID != 0 {
		t.Errorf("header %+v", m)
	}
	var types []string
	for _, p := range m.Payloads {
		s := p.Type().String()
		if n, ok := p.(*message.Notify); ok {
			s += "(" + n.NotifyType.String() + ")"
		}
		types = append(types, s)
	}
	want := []string{"SA", "KE", "No", "N(NAT_DETECTION_SOURCE_IP)", "N(NAT_DETECTION_DESTINATION_IP)",
		"N(IKEV2_FRAGMENTATION_SUPPORTED)", "N(SIGNATURE_HASH_ALGORITHMS)", "N(REDIRECT_SUPPORTED)"}
	if !reflect.DeepEqual(types, want) {
		t.Errorf("payloads %v", types)
	}
	sa := get[*message.SA](t, m, message.PayloadSA)
	wantSA := []message.Proposal{
		{Number: 1, Protocol: message.ProtoIKE, Transforms: []message.Transform{
			{Type: message.TransformEncr, ID: 20, KeyLength: 256}, {Type: message.TransformPRF, ID: 6},
			{Type: message.TransformKE, ID: 31}, {Type: message.TransformKE, ID: 19}}},
		{Number: 2, Protocol: message.ProtoIKE, Transforms: []message.Transform{
			{Type: message.TransformEncr, ID: 12, KeyLength: 128}, {Type: message.TransformInteg, ID: 12},
			{Type: message.TransformPRF, ID: 5}, {Type: message.TransformKE, ID: 15}}},
	}
	if !reflect.DeepEqual(sa.Proposals, wantSA) {
		t.Errorf("proposals %v", sa.Proposals)
	}
	// The configured strings, parsed by us, give the same proposals.
	if ps := proposal.MustParseList(message.ProtoIKE, "aes256gcm16-prfsha384-x25519-ecp256", "aes128-sha256-modp3072"); !reflect.DeepEqual(ps, wantSA) {
		t.Errorf("our parse of charon's configuration: %v", ps)
	}
	if f := proposal.FormatList(sa.Proposals); f != "aes256gcm16-prfsha384-x25519-ecp256, aes128-sha256-prfsha256-modp3072" {
		t.Errorf("format %s", f)
	}
	ke := get[*message.KE](t, m, message.PayloadKE)
	if ke.Method != 31 || len(ke.Data) != 32 || len(get[*message.Nonce](t, m, message.PayloadNonce).Data) != 32 {
		t.Errorf("KE %d/%d", ke.Method, len(ke.Data))
	}
	if hs, err := m.Notify(message.SignatureHashAlgorithms).HashAlgorithms(); err != nil || !reflect.DeepEqual(hs, []uint16{2, 3, 4, 5}) {
		t.Errorf("hash algorithms %v %v", hs, err)
	}
	// charon hashed the destination it sent to: our address and port 500.
	if got := m.Notify(message.NATDetectionDestinationIP).Data; !bytes.Equal(got, message.NATDetectionHash(m.SPIi, 0, netip.MustParseAddr(c.Local), 500)) {
		t.Error("NAT_DETECTION_DESTINATION_IP differs from ours")
	}
	if out, _ := m.Marshal(); !bytes.Equal(out, raw) {
		t.Error("re-encoding differs")
	}

	// As responder with our defaults we would choose AES-256-GCM, PRF
	// SHA-384 and Curve25519: the KE charon sent, so no INVALID_KE_PAYLOAD.
	sel, err := proposal.Select(proposal.Default(message.ProtoIKE), sa.Proposals, proposal.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if f := proposal.Format(sel); f != "aes256gcm16-prfsha384-x25519" || sel.Number != 1 {
		t.Errorf("selected #%d %s", sel.Number, f)
	}
	if uint16(proposal.KEMethod(sel)) != ke.Method {
		t.Error("would need INVALID_KE_PAYLOAD")
	}
	if _, secret, err := kex.Respond(kex.ID(ke.Method), ke.Data); err != nil || len(secret) != 32 {
		t.Errorf("responding to charon's KE: %v", err)
	}

	// Our NO_PROPOSAL_CHOSEN answer.
	resp, err := message.ParseMessage(c.raw(t, 1))
	if err != nil || resp.Notify(message.NoProposalChosen) == nil || !resp.IsResponse() || resp.SPIi != m.SPIi {
		t.Errorf("answer %+v %v", resp, err)
	}
}

// TestCapturesAsSeeds checks that every recorded message is a valid seed
// shape for the fuzzers (a whole IKE message with a consistent length).
func TestCapturesAsSeeds(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join(dir, "*.json"))
	if len(files) < 5 {
		t.Fatalf("%d captures", len(files))
	}
	for _, f := range files {
		c := load(t, filepath.Base(f))
		for i := range c.Messages {
			raw := c.raw(t, i)
			if int(binary.BigEndian.Uint32(raw[24:28])) != len(raw) {
				t.Errorf("%s message %d: length field", f, i)
			}
		}
	}
}

// TestStrongSwanResponder replays charon initiating to goipsec: we chose
// with our default proposals, answered IKE_AUTH on port 4500 (charon floats
// because kernel-libipsec fakes a NAT) with narrowed selectors, then sent
// our own INFORMATIONAL request as the original responder.
func TestStrongSwanResponder(t *testing.T) {
	c := load(t, "goipsec-responder.json")
	msgs := make([]*message.Message, len(c.Messages))
	for i := range c.Messages {
		m, err := message.ParseMessage(c.raw(t, i))
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if out, _ := m.Marshal(); !bytes.Equal(out, c.raw(t, i)) {
			t.Errorf("message %d does not re-encode to the same octets", i)
		}
		msgs[i] = m
	}
	if len(msgs) != 6 || c.Messages[2].Port != 4500 {
		t.Fatalf("%d messages", len(msgs))
	}
	req, resp := msgs[0], msgs[1]
	spii, spir := resp.SPIi, resp.SPIr

	// Our choice is what Select gives with the defaults, and charon's
	// request carried the matching key exchange.
	offered := get[*message.SA](t, req, message.PayloadSA).Proposals
	sel, err := proposal.Select(proposal.Default(message.ProtoIKE), offered, proposal.Options{})
	if err != nil {
		t.Fatal(err)
	}
	sent := get[*message.SA](t, resp, message.PayloadSA).Proposals
	if len(sent) != 1 || !reflect.DeepEqual(&sent[0], sel) {
		t.Errorf("sent %v, Select gives %v", sent, sel)
	}
	if err := proposal.CheckSelection(offered, sel, proposal.Options{}); err != nil {
		t.Error(err)
	}
	suite, err := proposal.ResolveIKE(sel)
	if err != nil {
		t.Fatal(err)
	}
	kei := get[*message.KE](t, req, message.PayloadKE)
	gir := sharedSecret(t, c.KE, unhex(t, c.PrivateKey), kei.Data)
	if !bytes.Equal(gir, c.charon(t, "shared Diffie Hellman secret")) {
		t.Fatal("g^ir differs from charon's")
	}
	ni, nr := get[*message.Nonce](t, req, message.PayloadNonce).Data, get[*message.Nonce](t, resp, message.PayloadNonce).Data
	prf := suite.PRF
	skeyseed := ikecrypto.SKEYSEED(prf, ni, nr, gir)
	keys, err := ikecrypto.DeriveIKEKeys(&suite.Suite, skeyseed, ni, nr, spii, spir)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(skeyseed, c.charon(t, "SKEYSEED")) || !bytes.Equal(keys.D, c.charon(t, "Sk_d secret")) ||
		!bytes.Equal(keys.Ei, c.charon(t, "Sk_ei secret")) || !bytes.Equal(keys.Er, c.charon(t, "Sk_er secret")) ||
		!bytes.Equal(keys.Pi, c.charon(t, "Sk_pi secret")) || !bytes.Equal(keys.Pr, c.charon(t, "Sk_pr secret")) {
		t.Error("IKE SA keys differ from charon's")
	}
	ci, cr, _ := ikecrypto.NewIKECiphers(&suite.Suite, keys)

	// IKE_AUTH: charon's request and our answer.
	areq, err := ikecrypto.Decrypt(c.raw(t, 2), ci)
	if err != nil {
		t.Fatal(err)
	}
	aresp, err := ikecrypto.Decrypt(c.raw(t, 3), cr)
	if err != nil {
		t.Fatal(err)
	}
	psk := []byte(c.PSK)
	idi, idr := get[*message.IDi](t, areq, message.PayloadIDi), get[*message.IDr](t, aresp, message.PayloadIDr)
	octI := ikecrypto.SignedOctets(prf, keys.Pi, c.raw(t, 0), nr, &idi.Identity, nil)
	octR := ikecrypto.SignedOctets(prf, keys.Pr, c.raw(t, 1), ni, &idr.Identity, nil)
	// charon logs its own octets first, then ours when it verifies them.
	if !bytes.Equal(octI, c.charon(t, "octets = message + nonce + prf(Sk_px, IDx')")) ||
		!bytes.Equal(octR, c.charon(t, "octets = message + nonce + prf(Sk_px, IDx') (2)")) {
		t.Error("signed octets differ from charon's")
	}
	if !ikecrypto.VerifySharedKeyAuth(prf, psk, octI, get[*message.Auth](t, areq, message.PayloadAUTH).Data) {
		t.Error("charon's AUTH does not verify")
	}
	if !bytes.Equal(get[*message.Auth](t, aresp, message.PayloadAUTH).Data, ikecrypto.SharedKeyAuth(prf, psk, octR)) {
		t.Error("our AUTH is not recomputed")
	}
	// Narrowing reproduces the selectors we sent: charon's side is
	// 10.99.2.0/24, ours 10.99.1.0/24.
	remote, _ := ts.ParseList([]string{"10.99.2.0/24"})
	local, _ := ts.ParseList([]string{"10.99.1.0/24"})
	ntsi, ntsr, err := ts.NarrowResponder(get[*message.TSi](t, areq, message.PayloadTSi).Selectors,
		get[*message.TSr](t, areq, message.PayloadTSr).Selectors, remote, local)
	if err != nil || !reflect.DeepEqual(ntsi, get[*message.TSi](t, aresp, message.PayloadTSi).Selectors) ||
		!reflect.DeepEqual(ntsr, get[*message.TSr](t, aresp, message.PayloadTSr).Selectors) {
		t.Errorf("narrowing: %v %v %v", ntsi, ntsr, err)
	}
	espSel, err := proposal.Select(proposal.MustParseList(message.ProtoESP, "aes256gcm16", "aes128gcm16"),
		get[*message.SA](t, areq, message.PayloadSA).Proposals, proposal.Options{SkipKE: true})
	if err != nil {
		t.Fatal(err)
	}
	espSent := get[*message.SA](t, aresp, message.PayloadSA).Proposals[0]
	espSel.SPI = espSent.SPI
	if !reflect.DeepEqual(espSel, &espSent) {
		t.Errorf("ESP: sent %v, Select gives %v", espSent, espSel)
	}
	cs, _ := proposal.ResolveChild(&espSent)
	ck, err := ikecrypto.DeriveChildKeys(prf, keys.D, cs.Enc, cs.Integ, ni, nr)
	if err != nil || !bytes.Equal(ck.EncI, c.charon(t, "encryption initiator key")) || !bytes.Equal(ck.EncR, c.charon(t, "encryption responder key")) {
		t.Errorf("Child SA keys differ from charon's: %v", err)
	}

	// Our INFORMATIONAL request as the original responder, and charon's
	// answer with the Initiator and Response flags.
	ireq, err := ikecrypto.Decrypt(c.raw(t, 4), cr)
	if err != nil || ireq.Flags != 0 || ireq.MessageID != 0 {
		t.Errorf("our request %+v %v", ireq, err)
	}
	iresp, err := ikecrypto.Decrypt(c.raw(t, 5), ci)
	if err != nil || iresp.Flags != message.FlagInitiator|message.FlagResponse || iresp.MessageID != 0 || len(iresp.Payloads) != 0 {
		t.Errorf("charon's response %+v %v", iresp, err)
	}
}
