// Package attachtest helps test code that stores or consumes attachments.
//
// TestStore is a conformance suite that any attach.Store implementation can
// run from its own tests; Wrap injects failures and delays into a Store;
// Sample and EqualState build and compare attachment states.
package attachtest
