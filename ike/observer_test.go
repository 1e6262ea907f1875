package ike

import (
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/goipsec/goipsec/ike/message"
)

// recorder is an Observer that counts its events as strings.
type recorder struct {
	mu sync.Mutex
	n  map[string]int
}

func role(initiator bool) string {
	if initiator {
		return "i"
	}
	return "r"
}

func (r *recorder) add(s string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.n == nil {
		r.n = map[string]int{}
	}
	r.n[s]++
}
func (r *recorder) HandshakeStarted(i bool)   { r.add("started/" + role(i)) }
func (r *recorder) HandshakeCompleted(i bool) { r.add("completed/" + role(i)) }
func (r *recorder) HandshakeFailed(i bool, reason string) {
	r.add("failed/" + role(i) + "/" + reason)
}
func (r *recorder) HandshakeRetried(reason string) { r.add("retried/" + reason) }
func (r *recorder) ChildSAFailed(i bool, reason string) {
	r.add("child_failed/" + role(i) + "/" + reason)
}
func (r *recorder) Rekeyed(kind string, i bool) { r.add("rekeyed/" + kind + "/" + role(i)) }
func (r *recorder) PeerDead()                   { r.add("dead") }

// events lists the counts as "event=n", sorted.
func (r *recorder) events() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for k, v := range r.n {
		out = append(out, fmt.Sprintf("%s=%d", k, v))
	}
	sort.Strings(out)
	return strings.Join(out, " ")
}

// observedPair is newPair with an Observer on each side.
func observedPair(t *testing.T, sa, sb side) (*pair, *recorder, *recorder) {
	t.Helper()
	ra, rb := &recorder{}, &recorder{}
	if sa.id == "" {
		sa.id, sa.peerID = "a.example.org", "b.example.org"
	}
	if sb.id == "" {
		sb.id, sb.peerID = "b.example.org", "a.example.org"
	}
	n := newFakeNet(t)
	clock := newFakeClock()
	p := &pair{t: t, net: n, clock: clock}
	p.a = newPeer(t, n, clock, sa.config(t, addrA, addrB), addrA, "a", Options{Observer: ra})
	p.b = newPeer(t, n, clock, sb.config(t, addrB, addrA), addrB, "b", Options{Observer: rb})
	t.Cleanup(func() {
		p.a.m.Close()
		p.b.m.Close()
	})
	return p, ra, rb
}

func TestObserver(t *testing.T) {
	for _, tc := range []struct {
		name   string
		a, b   side
		run    func(t *testing.T, p *pair)
		wa, wb string
	}{
		{"established", side{}, side{}, nil,
			"completed/i=1 started/i=1", "completed/r=1 started/r=1"},
		{"wrong psk", side{psk: "one"}, side{psk: "two"}, nil,
			"failed/i/authentication_failed=1 started/i=1", "failed/r/authentication_failed=1 started/r=1"},
		{"no proposal", side{proposals: []string{"aes128gcm16-prfsha256-x25519"}}, side{proposals: []string{"aes256-sha384-ecp384"}}, nil,
			"failed/i/no_proposal_chosen=1 started/i=1", "failed/r/no_proposal_chosen=1 started/r=1"},
		{"invalid ke", side{proposals: []string{"aes128gcm16-prfsha256-x25519-ecp256"}}, side{proposals: []string{"aes128gcm16-prfsha256-ecp256"}}, nil,
			"completed/i=1 retried/invalid_ke_payload=1 started/i=1", "completed/r=1 started/r=1"},
		{"ts unacceptable",
			side{localTS: []string{"10.1.0.0/16"}, remoteTS: []string{"10.2.0.0/16"}},
			side{localTS: []string{"10.2.0.0/16"}, remoteTS: []string{"10.9.0.0/16"}}, nil,
			"child_failed/i/ts_unacceptable=1 completed/i=1 started/i=1", "child_failed/r/ts_unacceptable=1 completed/r=1 started/r=1"},
		{"timeout", side{}, side{}, func(t *testing.T, p *pair) {
			p.net.drop = func(packet) bool { return true }
			if _, err := p.a.m.Initiate("conn"); err != nil {
				t.Fatal(err)
			}
			p.net.Pump()
			p.clock.Advance(10*time.Minute, p.net)
		}, "failed/i/timeout=1 started/i=1", ""},
		{"rekeys and a dead peer", side{dpd: 10 * time.Second}, side{}, func(t *testing.T, p *pair) {
			if err := p.initiate("conn"); err != nil {
				t.Fatal(err)
			}
			p.a.m.Rekey("conn")
			p.net.Pump()
			p.b.m.Rekey("conn")
			p.net.Pump()
			p.b.m.RekeyIKE("conn")
			p.net.Pump()
			p.net.drop = func(packet) bool { return true }
			p.clock.Advance(10*time.Minute, p.net)
		}, "completed/i=1 dead=1 rekeyed/child/i=1 rekeyed/child/r=1 rekeyed/ike/r=1 started/i=1",
			"completed/r=1 rekeyed/child/i=1 rekeyed/child/r=1 rekeyed/ike/i=1 started/r=1"}, // b runs no DPD
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, ra, rb := observedPair(t, tc.a, tc.b)
			if tc.run != nil {
				tc.run(t, p)
			} else {
				p.initiate("conn")
			}
			if got := ra.events(); got != tc.wa {
				t.Errorf("initiator's events\n got %s\nwant %s", got, tc.wa)
			}
			if got := rb.events(); got != tc.wb {
				t.Errorf("responder's events\n got %s\nwant %s", got, tc.wb)
			}
		})
	}
}

func TestFailureReason(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{&AuthError{Detail: "x"}, ReasonAuthFailed},
		{fmt.Errorf("IKE_AUTH: %w", &AuthError{}), ReasonAuthFailed},
		{&NotifyError{Notify: message.NoProposalChosen}, ReasonNoProposal},
		{fmt.Errorf("the peer answered IKE_SA_INIT with %w", &NotifyError{Notify: message.InvalidKEPayload}), ReasonInvalidKE},
		{&ChildError{Notify: message.TSUnacceptable}, ReasonTSUnacceptable},
		{&ChildError{Notify: message.InvalidSyntax}, ReasonInvalidSyntax},
		{&NotifyError{Notify: message.TemporaryFailure}, ReasonPeerError},
		{fmt.Errorf("IKE_SA_INIT: %w", ErrTimeout), ReasonTimeout},
		{errPeerDeleted, ReasonAborted},
		{fmt.Errorf("x: %w", errReconfigured), ReasonAborted},
		{errClosed, ReasonAborted},
		{errors.New("INVALID_SYNTAX: the IKE_AUTH response lacks IDr or AUTH"), ReasonInvalidSyntax},
		{&message.Error{Err: errors.New("short")}, ReasonInvalidSyntax},
		{errors.New("no pre-shared key"), ReasonOther},
		{nil, ReasonOther},
	} {
		if got := FailureReason(tc.err); got != tc.want {
			t.Errorf("FailureReason(%v) = %s, want %s", tc.err, got, tc.want)
		}
	}
	var _ Observer = nopObserver{}
	if reflect.TypeFor[Observer]().NumMethod() != 7 {
		t.Error("update nopObserver and the recorder with the Observer interface")
	}
}
