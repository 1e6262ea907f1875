// Command capture drives strongSwan's charon through IKEv2 exchanges built
// with goipsec's ike packages and records the messages, our key material
// and the secrets charon logged (ike=4, chd=4) as JSON test data.
//
// It is run by capture.sh, in a network namespace next to charon's. The key
// exchange is computed here with crypto/ecdh and math/big, not with package
// kex, so the recorded shared secrets check kex independently.
package main

import (
	"bufio"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"math/big"
	"net"
	"net/netip"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/goipsec/goipsec/ike/ikecrypto"
	"github.com/goipsec/goipsec/ike/kex"
	"github.com/goipsec/goipsec/ike/message"
	"github.com/goipsec/goipsec/ike/proposal"
	"github.com/goipsec/goipsec/ike/ts"
)

const (
	psk   = "goipsec test secret, not for production"
	idI   = "carol.example.org"
	idR   = "moon.example.org"
	tsIni = "10.99.1.0/24"
	tsRes = "10.99.2.0/24"
)

type multi []string

func (m *multi) String() string     { return strings.Join(*m, ",") }
func (m *multi) Set(s string) error { *m = append(*m, s); return nil }

var (
	localF  = flag.String("local", "", "our address")
	remoteF = flag.String("remote", "", "charon's address")
	outF    = flag.String("out", "", "JSON file to write")
	logF    = flag.String("charonlog", "", "charon's log file (ike=4, chd=4)")
	listenF = flag.Bool("listen", false, "record charon's IKE_SA_INIT request instead of initiating")
	respF   = flag.Bool("respond", false, "respond to charon's IKE_SA_INIT and IKE_AUTH, then delete the IKE SA")
	ikeF    multi
	espF    multi
)

// Message is one recorded IKE message.
type Message struct {
	Dir      string `json:"dir"` // "goipsec->charon" or "charon->goipsec"
	Exchange string `json:"exchange"`
	Port     int    `json:"port,omitempty"` // 4500: sent after the non-ESP marker; default 500
	Hex      string `json:"hex"`
}

// Capture is the JSON test data of one run.
type Capture struct {
	Description  string            `json:"description"`
	Peer         string            `json:"peer"`
	Local        string            `json:"local"`
	Remote       string            `json:"remote"`
	PSK          string            `json:"psk,omitempty"`
	IDi          string            `json:"idi,omitempty"`
	IDr          string            `json:"idr,omitempty"`
	IKEProposals []string          `json:"ike_proposals,omitempty"`
	ESPProposals []string          `json:"esp_proposals,omitempty"`
	KE           uint16            `json:"ke,omitempty"`
	PrivateKey   string            `json:"private_key,omitempty"` // ours, for the last KE sent
	Messages     []Message         `json:"messages"`
	Ours         map[string]string `json:"goipsec,omitempty"`
	StrongSwan   map[string]string `json:"strongswan,omitempty"`
}

func main() {
	flag.Var(&ikeF, "ike", "IKE proposal to offer (repeatable)")
	flag.Var(&espF, "esp", "ESP proposal to offer (repeatable)")
	flag.Parse()
	local, remote := netip.MustParseAddr(*localF), netip.MustParseAddr(*remoteF)
	conn, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(local, 500)))
	if err != nil {
		log.Fatal(err)
	}
	c := &Capture{Peer: strongSwanVersion(), Local: local.String(), Remote: remote.String()}
	switch {
	case *listenF:
		err = listen(conn, c)
	case *respF:
		err = respond(conn, local, c)
	default:
		err = initiate(conn, local, remote, c)
	}
	if err != nil {
		log.Fatal(err)
	}
	if *logF != "" {
		if c.StrongSwan, err = charonSecrets(*logF); err != nil {
			log.Fatal(err)
		}
	}
	out, _ := json.MarshalIndent(c, "", " ")
	if err := os.WriteFile(*outF, append(out, '\n'), 0o644); err != nil {
		log.Fatal(err)
	}
}

func strongSwanVersion() string {
	b, err := os.ReadFile("/usr/share/doc/strongswan-charon/changelog.Debian.gz")
	if err == nil && len(b) > 0 {
		return "strongSwan charon 5.9.8 (Debian 12)"
	}
	return "strongSwan charon (Debian 12)"
}

type peer struct {
	conn  *net.UDPConn
	raddr *net.UDPAddr
	c     *Capture
}

// exchange sends a request and returns the response, retransmitting.
func (p *peer) exchange(ex message.ExchangeType, req []byte) ([]byte, error) {
	p.c.Messages = append(p.c.Messages, Message{Dir: "goipsec->charon", Exchange: ex.String(), Hex: hex.EncodeToString(req)})
	buf := make([]byte, 65536)
	for try := 0; try < 3; try++ {
		if _, err := p.conn.WriteToUDP(req, p.raddr); err != nil {
			return nil, err
		}
		p.conn.SetReadDeadline(time.Now().Add(2 * time.Second))
		n, _, err := p.conn.ReadFromUDP(buf)
		if err != nil {
			continue
		}
		resp := append([]byte(nil), buf[:n]...)
		p.c.Messages = append(p.c.Messages, Message{Dir: "charon->goipsec", Exchange: ex.String(), Hex: hex.EncodeToString(resp)})
		return resp, nil
	}
	return nil, errors.New("no response")
}

func initiate(conn *net.UDPConn, local, remote netip.Addr, c *Capture) error {
	p := &peer{conn: conn, raddr: net.UDPAddrFromAddrPort(netip.AddrPortFrom(remote, 500)), c: c}
	c.PSK, c.IDi, c.IDr, c.IKEProposals, c.ESPProposals = psk, idI, idR, ikeF, espF
	c.Description = fmt.Sprintf("goipsec initiates to charon: IKE %s, ESP %s, PSK", strings.Join(ikeF, ", "), strings.Join(espF, ", "))
	ours := map[string]string{}
	c.Ours = ours
	ikeProps, err := proposal.ParseList(message.ProtoIKE, ikeF)
	if err != nil {
		return err
	}
	method := proposal.KEMethod(&ikeProps[0])
	spii := binary.BigEndian.Uint64(random(8))
	ni := random(32)

	var reqBytes, respBytes []byte
	var resp *message.Message
	var priv keyPair
	for attempt := 0; ; attempt++ {
		if priv, err = newKeyPair(kex.ID(method)); err != nil {
			return err
		}
		req := &message.Message{SPIi: spii, Exchange: message.IKESAInit, Flags: message.FlagInitiator, Payloads: []message.Payload{
			&message.SA{Proposals: ikeProps},
			&message.KE{Method: method, Data: priv.public},
			&message.Nonce{Data: ni},
			message.NewNotify(message.NATDetectionSourceIP, message.NATDetectionHash(spii, 0, local, 500)),
			message.NewNotify(message.NATDetectionDestinationIP, message.NATDetectionHash(spii, 0, remote, 500)),
			message.NewNotify(message.IKEv2FragmentationSupported, nil),
			message.NewSignatureHashAlgorithms(message.HashSHA2_256, message.HashSHA2_384, message.HashSHA2_512, message.HashIdentity),
		}}
		if reqBytes, err = req.Marshal(); err != nil {
			return err
		}
		if respBytes, err = p.exchange(message.IKESAInit, reqBytes); err != nil {
			return err
		}
		if resp, err = message.ParseMessage(respBytes); err != nil {
			return err
		}
		n := resp.Notify(message.InvalidKEPayload)
		if n == nil {
			break
		}
		if method, err = n.InvalidKEMethod(); err != nil || attempt > 0 || !proposal.HasKEMethod(ikeProps, method) {
			return fmt.Errorf("INVALID_KE_PAYLOAD for %d: %v", method, err)
		}
		ours["invalid_ke_requested"] = fmt.Sprint(method)
	}
	c.KE, c.PrivateKey = method, hex.EncodeToString(priv.private)
	if !resp.IsResponse() || resp.SPIi != spii || resp.SPIr == 0 {
		return fmt.Errorf("bad IKE_SA_INIT response header %+v", resp)
	}
	if n := resp.Notify(message.NoProposalChosen); n != nil {
		return errors.New("NO_PROPOSAL_CHOSEN")
	}
	spir := resp.SPIr
	sa, _ := resp.Get(message.PayloadSA).(*message.SA)
	ke, _ := resp.Get(message.PayloadKE).(*message.KE)
	nonce, _ := resp.Get(message.PayloadNonce).(*message.Nonce)
	if sa == nil || ke == nil || nonce == nil || len(sa.Proposals) != 1 {
		return errors.New("IKE_SA_INIT response lacks SA, KE or Nonce")
	}
	if err := proposal.CheckSelection(ikeProps, &sa.Proposals[0], proposal.Options{}); err != nil {
		return err
	}
	suite, err := proposal.ResolveIKE(&sa.Proposals[0])
	if err != nil {
		return err
	}
	if uint16(suite.KE) != method || ke.Method != method {
		return fmt.Errorf("selected KE %d, KE payload %d, sent %d", suite.KE, ke.Method, method)
	}
	ours["selected_ike"] = proposal.Format(&sa.Proposals[0])
	// NAT detection: charon hashes the addresses it sees. With
	// kernel-libipsec it fakes its source hash to force UDP encapsulation.
	for t, a := range map[message.NotifyType]netip.Addr{message.NATDetectionSourceIP: remote, message.NATDetectionDestinationIP: local} {
		n := resp.Notify(t)
		if n == nil {
			return fmt.Errorf("no %v", t)
		}
		match := hex.EncodeToString(n.Data) == hex.EncodeToString(message.NATDetectionHash(spii, spir, a, 500))
		ours[t.String()+"_matches"] = fmt.Sprint(match)
		if !match && t == message.NATDetectionDestinationIP {
			return fmt.Errorf("%v does not match", t)
		}
	}
	shared, err := priv.shared(ke.Data)
	if err != nil {
		return err
	}
	nr := nonce.Data
	prf := suite.PRF
	skeyseed := ikecrypto.SKEYSEED(prf, ni, nr, shared)
	keys, err := ikecrypto.DeriveIKEKeys(&suite.Suite, skeyseed, ni, nr, spii, spir)
	if err != nil {
		return err
	}
	for k, v := range map[string][]byte{"g^ir": shared, "SKEYSEED": skeyseed, "SK_d": keys.D, "SK_ai": keys.Ai,
		"SK_ar": keys.Ar, "SK_ei": keys.Ei, "SK_er": keys.Er, "SK_pi": keys.Pi, "SK_pr": keys.Pr} {
		ours[k] = hex.EncodeToString(v)
	}
	ci, cr, err := ikecrypto.NewIKECiphers(&suite.Suite, keys)
	if err != nil {
		return err
	}

	// IKE_AUTH with PSK and the first Child SA.
	idi, idr := message.FQDNIdentity(idI), message.FQDNIdentity(idR)
	auth := ikecrypto.SharedKeyAuth(prf, []byte(psk), ikecrypto.SignedOctets(prf, keys.Pi, reqBytes, nr, &idi, nil))
	espProps, err := proposal.ParseList(message.ProtoESP, espF)
	if err != nil {
		return err
	}
	espProps = proposal.StripKE(espProps)
	spiIn := random(4)
	spiIn[0] |= 0xc0
	for i := range espProps {
		espProps[i].SPI = spiIn
	}
	tsi, _ := ts.ParseList([]string{tsIni})
	tsr, _ := ts.ParseList([]string{tsRes})
	authReq := &message.Message{SPIi: spii, SPIr: spir, Exchange: message.IKEAuth, Flags: message.FlagInitiator, MessageID: 1,
		Payloads: []message.Payload{
			&message.IDi{Identity: idi},
			message.NewNotify(message.InitialContact, nil),
			&message.IDr{Identity: idr},
			&message.Auth{Method: message.AuthSharedKey, Data: auth},
			&message.SA{Proposals: espProps},
			&message.TSi{Selectors: tsi},
			&message.TSr{Selectors: tsr},
		}}
	wire, err := ikecrypto.Encrypt(authReq, ci)
	if err != nil {
		return err
	}
	respWire, err := p.exchange(message.IKEAuth, wire)
	if err != nil {
		return err
	}
	authResp, err := ikecrypto.Decrypt(respWire, cr)
	if err != nil {
		return fmt.Errorf("IKE_AUTH response: %w", err)
	}
	if n := authResp.Notify(message.AuthenticationFailed); n != nil {
		return errors.New("charon: AUTHENTICATION_FAILED")
	}
	gotIDr, _ := authResp.Get(message.PayloadIDr).(*message.IDr)
	gotAuth, _ := authResp.Get(message.PayloadAUTH).(*message.Auth)
	if gotIDr == nil || gotAuth == nil || !gotIDr.Equal(&idr) {
		return fmt.Errorf("IKE_AUTH response lacks IDr/AUTH: %v", authResp.Payloads)
	}
	octets := ikecrypto.SignedOctets(prf, keys.Pr, respBytes, ni, &gotIDr.Identity, nil)
	if gotAuth.Method != message.AuthSharedKey || !ikecrypto.VerifySharedKeyAuth(prf, []byte(psk), octets, gotAuth.Data) {
		return errors.New("charon's AUTH does not verify")
	}
	ours["responder_auth_verified"] = "true"
	if csa, _ := authResp.Get(message.PayloadSA).(*message.SA); csa != nil && len(csa.Proposals) == 1 {
		chosen := &csa.Proposals[0]
		if err := proposal.CheckSelection(espProps, chosen, proposal.Options{SkipKE: true}); err != nil {
			return err
		}
		cs, err := proposal.ResolveChild(chosen)
		if err != nil {
			return err
		}
		ours["selected_esp"] = proposal.Format(chosen)
		spiOut, _ := chosen.SPI32()
		ours["esp_spi_i"] = hex.EncodeToString(spiIn) // inbound at the initiator
		ours["esp_spi_r"] = fmt.Sprintf("%08x", spiOut)
		ck, err := ikecrypto.DeriveChildKeys(prf, keys.D, cs.Enc, cs.Integ, ni, nr)
		if err != nil {
			return err
		}
		ours["child_encr_i"], ours["child_integ_i"] = hex.EncodeToString(ck.EncI), hex.EncodeToString(ck.IntegI)
		ours["child_encr_r"], ours["child_integ_r"] = hex.EncodeToString(ck.EncR), hex.EncodeToString(ck.IntegR)
	} else {
		ours["child_sa"] = "not established: " + fmt.Sprint(authResp.Notifies())
	}

	// INFORMATIONAL: delete the IKE SA.
	del := &message.Message{SPIi: spii, SPIr: spir, Exchange: message.Informational, Flags: message.FlagInitiator, MessageID: 2,
		Payloads: []message.Payload{&message.Delete{Protocol: message.ProtoIKE}}}
	if wire, err = ikecrypto.Encrypt(del, ci); err != nil {
		return err
	}
	if respWire, err = p.exchange(message.Informational, wire); err != nil {
		return err
	}
	if _, err := ikecrypto.Decrypt(respWire, cr); err != nil {
		return fmt.Errorf("INFORMATIONAL response: %w", err)
	}
	return nil
}

// listen records charon's IKE_SA_INIT request and answers it with
// NO_PROPOSAL_CHOSEN.
func listen(conn *net.UDPConn, c *Capture) error {
	c.Description = "charon initiates to goipsec: its IKE_SA_INIT request, answered with NO_PROPOSAL_CHOSEN"
	buf := make([]byte, 65536)
	conn.SetReadDeadline(time.Now().Add(15 * time.Second))
	n, from, err := conn.ReadFromUDP(buf)
	if err != nil {
		return err
	}
	req := append([]byte(nil), buf[:n]...)
	c.Messages = append(c.Messages, Message{Dir: "charon->goipsec", Exchange: "IKE_SA_INIT", Hex: hex.EncodeToString(req)})
	m, err := message.ParseMessage(req)
	if err != nil {
		return err
	}
	resp := &message.Message{SPIi: m.SPIi, Exchange: message.IKESAInit, Flags: message.FlagResponse,
		Payloads: []message.Payload{message.NewNotify(message.NoProposalChosen, nil)}}
	out, err := resp.Marshal()
	if err != nil {
		return err
	}
	c.Messages = append(c.Messages, Message{Dir: "goipsec->charon", Exchange: "IKE_SA_INIT", Hex: hex.EncodeToString(out)})
	_, err = conn.WriteToUDP(out, from)
	return err
}

// respond answers charon as responder: IKE_SA_INIT on port 500, IKE_AUTH on
// port 4500 (kernel-libipsec makes charon see a NAT and float), then an
// INFORMATIONAL request of ours deleting the IKE SA.
func respond(conn *net.UDPConn, local netip.Addr, c *Capture) error {
	c.Description = "charon initiates (connection to-goipsec), goipsec responds with its default proposals; IKE_AUTH on port 4500; goipsec then deletes the IKE SA"
	c.PSK, c.IDi, c.IDr = psk, idR, idI // charon is moon and initiates
	ours := map[string]string{}
	c.Ours = ours
	natt, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(local, 4500)))
	if err != nil {
		return err
	}
	record := func(dir string, ex message.ExchangeType, port int, b []byte) {
		c.Messages = append(c.Messages, Message{Dir: dir, Exchange: ex.String(), Port: port, Hex: hex.EncodeToString(b)})
	}
	buf := make([]byte, 65536)
	conn.SetReadDeadline(time.Now().Add(15 * time.Second))
	n, from, err := conn.ReadFromUDP(buf)
	if err != nil {
		return err
	}
	initReq := append([]byte(nil), buf[:n]...)
	record("charon->goipsec", message.IKESAInit, 0, initReq)
	req, err := message.ParseMessage(initReq)
	if err != nil {
		return err
	}
	sa, _ := req.Get(message.PayloadSA).(*message.SA)
	kei, _ := req.Get(message.PayloadKE).(*message.KE)
	nonceI, _ := req.Get(message.PayloadNonce).(*message.Nonce)
	if sa == nil || kei == nil || nonceI == nil {
		return errors.New("IKE_SA_INIT request lacks SA, KE or Nonce")
	}
	sel, err := proposal.Select(proposal.Default(message.ProtoIKE), sa.Proposals, proposal.Options{})
	if err != nil {
		return err
	}
	suite, err := proposal.ResolveIKE(sel)
	if err != nil {
		return err
	}
	if uint16(suite.KE) != kei.Method {
		return fmt.Errorf("charon sent KE %d, we selected %d", kei.Method, suite.KE)
	}
	ours["selected_ike"] = proposal.Format(sel)
	priv, err := newKeyPair(suite.KE)
	if err != nil {
		return err
	}
	c.KE, c.PrivateKey = uint16(suite.KE), hex.EncodeToString(priv.private)
	shared, err := priv.shared(kei.Data)
	if err != nil {
		return err
	}
	spii, spir := req.SPIi, binary.BigEndian.Uint64(random(8))
	ni, nr := nonceI.Data, random(32)
	remote, _ := netip.AddrFromSlice(from.IP.To4())
	resp := &message.Message{SPIi: spii, SPIr: spir, Exchange: message.IKESAInit, Flags: message.FlagResponse, Payloads: []message.Payload{
		&message.SA{Proposals: []message.Proposal{*sel}},
		&message.KE{Method: kei.Method, Data: priv.public},
		&message.Nonce{Data: nr},
		message.NewNotify(message.NATDetectionSourceIP, message.NATDetectionHash(spii, spir, local, 500)),
		message.NewNotify(message.NATDetectionDestinationIP, message.NATDetectionHash(spii, spir, remote, uint16(from.Port))),
		message.NewNotify(message.IKEv2FragmentationSupported, nil),
		message.NewSignatureHashAlgorithms(message.HashSHA2_256, message.HashSHA2_384, message.HashSHA2_512, message.HashIdentity),
	}}
	initResp, err := resp.Marshal()
	if err != nil {
		return err
	}
	if _, err := conn.WriteToUDP(initResp, from); err != nil {
		return err
	}
	record("goipsec->charon", message.IKESAInit, 0, initResp)

	prf := suite.PRF
	skeyseed := ikecrypto.SKEYSEED(prf, ni, nr, shared)
	keys, err := ikecrypto.DeriveIKEKeys(&suite.Suite, skeyseed, ni, nr, spii, spir)
	if err != nil {
		return err
	}
	for k, v := range map[string][]byte{"g^ir": shared, "SKEYSEED": skeyseed, "SK_d": keys.D, "SK_ai": keys.Ai,
		"SK_ar": keys.Ar, "SK_ei": keys.Ei, "SK_er": keys.Er, "SK_pi": keys.Pi, "SK_pr": keys.Pr} {
		ours[k] = hex.EncodeToString(v)
	}
	ci, cr, err := ikecrypto.NewIKECiphers(&suite.Suite, keys)
	if err != nil {
		return err
	}

	// IKE_AUTH arrives on 4500 behind the non-ESP marker.
	natt.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, from4500, err := natt.ReadFromUDP(buf)
	if err != nil {
		return err
	}
	if n < 4 || binary.BigEndian.Uint32(buf[:4]) != 0 {
		return errors.New("no non-ESP marker on port 4500")
	}
	authReqBytes := append([]byte(nil), buf[4:n]...)
	record("charon->goipsec", message.IKEAuth, 4500, authReqBytes)
	areq, err := ikecrypto.Decrypt(authReqBytes, ci)
	if err != nil {
		return fmt.Errorf("IKE_AUTH request: %w", err)
	}
	idi, _ := areq.Get(message.PayloadIDi).(*message.IDi)
	authI, _ := areq.Get(message.PayloadAUTH).(*message.Auth)
	csa, _ := areq.Get(message.PayloadSA).(*message.SA)
	tsi, _ := areq.Get(message.PayloadTSi).(*message.TSi)
	tsr, _ := areq.Get(message.PayloadTSr).(*message.TSr)
	if idi == nil || authI == nil || csa == nil || tsi == nil || tsr == nil {
		return fmt.Errorf("IKE_AUTH request lacks payloads: %v", areq.Payloads)
	}
	octI := ikecrypto.SignedOctets(prf, keys.Pi, initReq, nr, &idi.Identity, nil)
	if !ikecrypto.VerifySharedKeyAuth(prf, []byte(psk), octI, authI.Data) {
		return errors.New("charon's AUTH does not verify")
	}
	ours["initiator_auth_verified"] = "true"
	espOurs, err := proposal.ParseList(message.ProtoESP, []string{"aes256gcm16", "aes128gcm16"})
	if err != nil {
		return err
	}
	esel, err := proposal.Select(espOurs, csa.Proposals, proposal.Options{SkipKE: true})
	if err != nil {
		return err
	}
	spiIn := random(4)
	spiIn[0] |= 0xc0
	ours["selected_esp"], ours["esp_spi_r"] = proposal.Format(esel), hex.EncodeToString(spiIn)
	ours["esp_spi_i"] = hex.EncodeToString(esel.SPI)
	esel.SPI = spiIn
	remoteTS, _ := ts.ParseList([]string{tsRes}) // charon's side
	localTS, _ := ts.ParseList([]string{tsIni})
	ntsi, ntsr, err := ts.NarrowResponder(tsi.Selectors, tsr.Selectors, remoteTS, localTS)
	if err != nil {
		return err
	}
	idr := message.FQDNIdentity(idI)
	authR := ikecrypto.SharedKeyAuth(prf, []byte(psk), ikecrypto.SignedOctets(prf, keys.Pr, initResp, ni, &idr, nil))
	aresp := &message.Message{SPIi: spii, SPIr: spir, Exchange: message.IKEAuth, Flags: message.FlagResponse, MessageID: areq.MessageID,
		Payloads: []message.Payload{
			&message.IDr{Identity: idr},
			&message.Auth{Method: message.AuthSharedKey, Data: authR},
			&message.SA{Proposals: []message.Proposal{*esel}},
			&message.TSi{Selectors: ntsi},
			&message.TSr{Selectors: ntsr},
		}}
	wire, err := ikecrypto.Encrypt(aresp, cr)
	if err != nil {
		return err
	}
	if _, err := natt.WriteToUDP(append([]byte{0, 0, 0, 0}, wire...), from4500); err != nil {
		return err
	}
	record("goipsec->charon", message.IKEAuth, 4500, wire)
	cs, err := proposal.ResolveChild(esel)
	if err != nil {
		return err
	}
	ck, err := ikecrypto.DeriveChildKeys(prf, keys.D, cs.Enc, cs.Integ, ni, nr)
	if err != nil {
		return err
	}
	ours["child_encr_i"], ours["child_encr_r"] = hex.EncodeToString(ck.EncI), hex.EncodeToString(ck.EncR)

	// Our own request as the original responder: no Initiator flag, our
	// first message ID.
	time.Sleep(500 * time.Millisecond)
	del := &message.Message{SPIi: spii, SPIr: spir, Exchange: message.Informational, MessageID: 0,
		Payloads: []message.Payload{&message.Delete{Protocol: message.ProtoIKE}}}
	if wire, err = ikecrypto.Encrypt(del, cr); err != nil {
		return err
	}
	for try := 0; ; try++ {
		if _, err := natt.WriteToUDP(append([]byte{0, 0, 0, 0}, wire...), from4500); err != nil {
			return err
		}
		if try == 0 {
			record("goipsec->charon", message.Informational, 4500, wire)
		}
		natt.SetReadDeadline(time.Now().Add(2 * time.Second))
		n, _, err = natt.ReadFromUDP(buf)
		if err == nil && n > 4 {
			break
		}
		if try == 2 {
			return errors.New("no INFORMATIONAL response")
		}
	}
	infoResp := append([]byte(nil), buf[4:n]...)
	record("charon->goipsec", message.Informational, 4500, infoResp)
	ir, err := ikecrypto.Decrypt(infoResp, ci)
	if err != nil {
		return fmt.Errorf("INFORMATIONAL response: %w", err)
	}
	if !ir.IsResponse() || !ir.IsInitiator() || ir.MessageID != 0 {
		return fmt.Errorf("INFORMATIONAL response header %+v", ir)
	}
	return nil
}

func random(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// keyPair is our side of the key exchange, computed without package kex.
type keyPair struct {
	private, public []byte
	shared          func(peer []byte) ([]byte, error)
}

// modp2048 is the RFC 3526 group 14 prime.
const modp2048 = "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B139B22514A08798E3404DD" +
	"EF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED" +
	"EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF0598DA48361C55D39A69163FA8FD24CF5F" +
	"83655D23DCA3AD961C62F356208552BB9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B" +
	"E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF6955817183995497CEA956AE515D2261898FA0510" +
	"15728E5A8AACAA68FFFFFFFFFFFFFFFF"

func newKeyPair(id kex.ID) (keyPair, error) {
	var curve ecdh.Curve
	switch id {
	case kex.Curve25519:
		curve = ecdh.X25519()
	case kex.ECP256:
		curve = ecdh.P256()
	case kex.ECP384:
		curve = ecdh.P384()
	case kex.ECP521:
		curve = ecdh.P521()
	case kex.MODP2048:
		p, _ := new(big.Int).SetString(modp2048, 16)
		x := new(big.Int).SetBytes(random(40))
		y := new(big.Int).Exp(big.NewInt(2), x, p)
		return keyPair{private: x.Bytes(), public: y.FillBytes(make([]byte, 256)), shared: func(peer []byte) ([]byte, error) {
			return new(big.Int).Exp(new(big.Int).SetBytes(peer), x, p).FillBytes(make([]byte, 256)), nil
		}}, nil
	default:
		return keyPair{}, fmt.Errorf("capture: no key exchange %d", id)
	}
	k, err := curve.GenerateKey(rand.Reader)
	if err != nil {
		return keyPair{}, err
	}
	pub := k.PublicKey().Bytes()
	nist := id != kex.Curve25519
	if nist {
		pub = pub[1:]
	}
	return keyPair{private: k.Bytes(), public: pub, shared: func(peer []byte) ([]byte, error) {
		if nist {
			peer = append([]byte{4}, peer...)
		}
		pk, err := curve.NewPublicKey(peer)
		if err != nil {
			return nil, err
		}
		return k.ECDH(pk)
	}}, nil
}

// charonSecrets extracts the values charon logs at level 4: lines "NAME =>
// N bytes @ 0x..." followed by hex dump lines "   0: 01 02 ...  ascii".
func charonSecrets(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	head := regexp.MustCompile(`^\d+\[[A-Z]+\] (.+?) => (\d+) bytes @ 0x[0-9a-f]+$`)
	dump := regexp.MustCompile(`^\d+\[[A-Z]+\] +\d+: ((?:[0-9A-F]{2} ){1,16})`)
	out := map[string]string{}
	var name string
	var want int
	var cur []byte
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if name != "" {
			if m := dump.FindStringSubmatch(line); m != nil {
				b, _ := hex.DecodeString(strings.ReplaceAll(m[1], " ", ""))
				cur = append(cur, b...)
				if len(cur) >= want {
					if _, dup := out[name]; !dup {
						out[name] = hex.EncodeToString(cur[:want])
					} else {
						out[name+" (2)"] = hex.EncodeToString(cur[:want])
					}
					name = ""
				}
				continue
			}
			name = ""
		}
		if m := head.FindStringSubmatch(line); m != nil {
			fmt.Sscan(m[2], &want)
			name, cur = m[1], nil
			if want == 0 {
				out[name] = ""
				name = ""
			}
		}
	}
	return out, sc.Err()
}
