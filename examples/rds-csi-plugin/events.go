package main

import (
	"sync/atomic"

	"github.com/srvlab/rds-csi/attach"
	"github.com/srvlab/rds-csi/metrics"
)

// eventForwarder passes attach.Manager events to metrics.AttachObserver.
// The Manager is created before the recorder (the recorder reads its
// counts), so the recorder is set afterwards; events before that are
// dropped, which only concerns loading the state at startup.
type eventForwarder struct {
	observe atomic.Pointer[func(attach.Event)]
}

func (f *eventForwarder) set(r metrics.Recorder) {
	obs := metrics.AttachObserver(r)
	f.observe.Store(&obs)
}

func (f *eventForwarder) event(e attach.Event) {
	if obs := f.observe.Load(); obs != nil {
		(*obs)(e)
	}
}
