// Package routeros turns RouterOS console text into Go values and keeps
// hostile text away from the console.
//
// It parses the output of `print detail` (including lines wrapped at the
// console width), `print terse` and "key: value" listings, converts the
// value formats RouterOS prints (digit-grouped numbers, binary human
// sizes, bit rates, durations, timestamps, yes/no), classifies failure
// text into error classes, and validates and quotes every value before it
// is placed into a command.
//
// The package is internal: its behaviour follows the RouterOS 7 console
// behaviour written down in rdsclient/docs/device.md (wrapping, digit
// groups, units, error texts) and changes with it.
package routeros
