package rdstest

import "fmt"

// ConnectInitiator records that one more host has connected over NVMe/TCP
// to the disk exported as nqn, as "nvme connect" would. While any host is
// connected, /disk remove of the disk fails with "failure: disk is in
// use". Each call is one connection: two nodes sharing a disk during a
// live migration are two calls. rdscsitest.LoopConnector calls it for the
// NQNs it attaches; tests without loop devices call it to simulate a host.
// It fails with ErrNotFound when no disk is exported as nqn (a real
// connect would fail too) and with ErrClosed after Close.
func (s *Server) ConnectInitiator(nqn string) error {
	st := &s.st
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.closed {
		return fmt.Errorf("%w: connect %s", ErrClosed, nqn)
	}
	for _, d := range st.disks {
		if d.export && d.nqn == nqn {
			if d.initiators == nil {
				d.initiators = map[string]int{}
			}
			d.initiators[nqn]++
			return nil
		}
	}
	return fmt.Errorf("%w: no disk exported with nqn %q", ErrNotFound, nqn)
}

// DisconnectInitiator drops one connection made with ConnectInitiator for
// nqn, as "nvme disconnect" on one host would. The connection belongs to
// the disk it was made to even if the disk's export was turned off or its
// NQN changed since. Without a connection to nqn it does nothing.
func (s *Server) DisconnectInitiator(nqn string) {
	st := &s.st
	st.mu.Lock()
	defer st.mu.Unlock()
	// Normally one disk holds connections to nqn. If an un-exported disk
	// kept some and another disk took the NQN, the exporting disk goes
	// first, then the table's order: deterministic either way.
	var pick *disk
	for _, d := range st.disks {
		if d.initiators[nqn] == 0 {
			continue
		}
		if d.export && d.nqn == nqn {
			pick = d
			break
		}
		if pick == nil {
			pick = d
		}
	}
	if pick == nil {
		return
	}
	if pick.initiators[nqn]--; pick.initiators[nqn] == 0 {
		delete(pick.initiators, nqn)
	}
}

// Initiators returns how many host connections to nqn are live.
func (s *Server) Initiators(nqn string) int {
	st := &s.st
	st.mu.Lock()
	defer st.mu.Unlock()
	n := 0
	for _, d := range st.disks {
		n += d.initiators[nqn]
	}
	return n
}

// dropInitiators forgets every connection: the device is gone.
func (st *state) dropInitiators() {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.closed = true
	for _, d := range st.disks {
		d.initiators = nil
	}
}
