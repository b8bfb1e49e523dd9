package metrics

import (
	"context"

	"github.com/srvlab/rds-csi/attach"
)

// AttachObserver returns a function for attach.Manager.AddObserver (or
// attach.WithObserver) that reports attachment events to r: refusals as
// AttachmentConflict, migrations as Migration ("started", then exactly one
// of "success" or "timeout") and nodes cleared by reconciliation as
// Reconcile("cleared", 1). Attaches and detaches are not reported: gauges
// read them from the Manager. OTel.ObserveAttachments adds it for OTel;
// use it directly with a Recorder of your own.
func AttachObserver(r Recorder) func(attach.Event) {
	if r == nil {
		r = Noop{}
	}
	return func(ev attach.Event) {
		// attach invokes observers without a context; the OTel API
		// only reads baggage/span context from it.
		ctx := context.Background()
		switch ev.Kind {
		case attach.EventConflict:
			r.AttachmentConflict(ctx)
		case attach.EventMigrationStarted:
			r.Migration(ctx, "started")
		case attach.EventMigrationTimedOut:
			r.Migration(ctx, "timeout")
		case attach.EventMigrationCompleted:
			// A timed-out migration was already counted when it timed out.
			if !ev.TimedOut {
				r.Migration(ctx, "success")
			}
		case attach.EventReconciled:
			r.Reconcile(ctx, "cleared", 1)
		}
	}
}
