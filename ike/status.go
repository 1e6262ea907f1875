package ike

import (
	"net/netip"
	"time"

	"github.com/goipsec/goipsec/ike/proposal"
	"github.com/goipsec/goipsec/sad"
)

// IKESAStatus describes one IKE SA for listings.
type IKESAStatus struct {
	// Connection names the configuration ("" for a responder SA not yet
	// authenticated); Serial numbers the IKE SAs of this Manager.
	Connection string
	Serial     uint64
	State      string
	Initiator  bool
	SPIi, SPIr uint64
	Remote     netip.AddrPort
	NATT       bool
	// LocalID and RemoteID are the authenticated identities.
	LocalID, RemoteID string
	// Proposal is the negotiated IKE proposal, strongSwan-style.
	Proposal    string
	Established time.Time
	// RekeyAt, ReauthAt and ExpireAt are when rekey_time, reauth_time and
	// the hard end (+ over_time) are up; zero when not scheduled.
	RekeyAt, ReauthAt, ExpireAt time.Time
	Children                    []ChildSAStatus
}

// ChildSAStatus describes one Child SA for listings.
type ChildSAStatus struct {
	Name          string // "connection.child"
	ID            sad.ChildID
	SPIIn, SPIOut uint32
	Mode          sad.Mode
	Proposal      string
	// LocalTS and RemoteTS are the negotiated traffic selectors.
	LocalTS, RemoteTS []string
	Established       time.Time
	// RekeyAt and ExpireAt are when rekey_time and life_time are up; zero
	// when not scheduled.
	RekeyAt, ExpireAt time.Time
}

// IKESAs lists the IKE SAs with their Child SAs, oldest first.
func (m *Manager) IKESAs() []IKESAStatus {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []IKESAStatus
	for _, sa := range m.sortedSAs() {
		st := IKESAStatus{Serial: sa.serial, State: sa.state.String(), Initiator: sa.initiator, SPIi: sa.spiI, SPIr: sa.spiR,
			Remote: sa.remote, NATT: sa.natt, Established: sa.estab, RekeyAt: sa.rekeyAt, ReauthAt: sa.reauthAt, ExpireAt: sa.expireAt}
		if sa.conn != nil {
			st.Connection = sa.conn.Name
		}
		if sa.chosen != nil {
			st.Proposal = proposal.Format(sa.chosen)
		}
		if sa.state == stateEstablished || sa.state == stateDeleting {
			st.LocalID, st.RemoteID = sa.localID.String(), sa.remoteID.String()
		}
		for _, c := range sa.children {
			cs := ChildSAStatus{Name: c.cfg.FullName(), ID: c.id, SPIIn: c.spiIn, SPIOut: c.spiOut, Mode: c.mode,
				Proposal: c.proposal, Established: c.established, RekeyAt: c.rekeyAt, ExpireAt: c.expireAt}
			for _, s := range c.local {
				cs.LocalTS = append(cs.LocalTS, s.String())
			}
			for _, s := range c.remote {
				cs.RemoteTS = append(cs.RemoteTS, s.String())
			}
			st.Children = append(st.Children, cs)
		}
		out = append(out, st)
	}
	return out
}

// ChildName returns the configured names of the child with the given ID
// (an installed Child SA or a trap policy).
func (m *Manager) ChildName(id sad.ChildID) (conn, child string, ok bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	switch v := m.children[id].(type) {
	case *childSA:
		return v.cfg.conn.Name, v.cfg.Name, true
	case trapMarker:
		return v.ch.conn.Name, v.ch.Name, true
	}
	return "", "", false
}
