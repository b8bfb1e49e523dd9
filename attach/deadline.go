package attach

import (
	"container/heap"
	"slices"
	"time"
)

// expireLocked marks migrations whose deadline has come (now >= deadline)
// as timed out and appends one event for each. Each migration leaves the
// heap once, so the cost is amortised O(1) per call.
func (m *Manager) expireLocked(now time.Time, evs []Event) []Event {
	for len(m.deadlines) > 0 && !now.Before(m.deadlines[0].deadline) {
		v := heap.Pop(&m.deadlines).(*volume)
		v.timedOut = true
		m.counts.TimedOutMigrations++
		evs = append(evs, Event{Kind: EventMigrationTimedOut, VolumeID: v.a.VolumeID, NodeID: v.a.Nodes[1],
			Mode: v.a.Mode, Time: now, Elapsed: now.Sub(v.a.MigrationStarted)})
	}
	return evs
}

// deadlineHeap is a min-heap of running migrations by deadline.
type deadlineHeap []*volume

func (h deadlineHeap) Len() int           { return len(h) }
func (h deadlineHeap) Less(i, j int) bool { return h[i].deadline.Before(h[j].deadline) }
func (h deadlineHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].heapIdx = i
	h[j].heapIdx = j
}
func (h *deadlineHeap) Push(x any) {
	v := x.(*volume)
	v.heapIdx = len(*h)
	*h = append(*h, v)
}
func (h *deadlineHeap) Pop() any {
	old := *h
	v := old[len(old)-1]
	old[len(old)-1] = nil
	v.heapIdx = -1
	*h = old[:len(old)-1]
	return v
}

// ReportTimedOut fires EventMigrationTimedOut again for every running
// migration whose timeout passed after since, and returns how many. It is
// for an observer that was not listening when they passed: NewManager and
// Replace count a migration already past its timeout without an event,
// and a controller that starts, or takes over from a failed one, knows
// when the timeouts were last reported (the previous leader's last lease
// renewal, say). A zero since reports every timed-out migration. The
// events carry the time each timeout passed, not now. A migration whose
// timeout passes just now fires once, as Counts would have fired it.
func (m *Manager) ReportTimedOut(since time.Time) int {
	m.mu.Lock()
	evs := m.expireLocked(m.clock(), nil)
	n := len(evs)
	for _, v := range m.vols {
		if v.timedOut && v.deadline.After(since) && !slices.ContainsFunc(evs[:n], func(e Event) bool { return e.VolumeID == v.a.VolumeID }) {
			evs = append(evs, Event{Kind: EventMigrationTimedOut, VolumeID: v.a.VolumeID, NodeID: v.a.Nodes[1],
				Mode: v.a.Mode, Time: v.deadline, Elapsed: v.a.MigrationTimeout})
		}
	}
	m.mu.Unlock()
	slices.SortFunc(evs[n:], func(a, b Event) int { return a.Time.Compare(b.Time) })
	m.emit(evs)
	return len(evs)
}
