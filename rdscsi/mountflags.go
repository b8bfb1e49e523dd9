package rdscsi

import (
	"strings"
)

// refusedMountOptions are options mount(8) acts on as operations, not
// file system options: they would turn the mount of a volume into a bind
// mount of any host path, a remount of what is mounted there, or a move.
var refusedMountOptions = []string{"bind", "rbind", "remount", "move"}

// checkMountFlags refuses mount flags that are malformed or name a
// refused option. mount-utils joins all flags with commas into one -o
// argument, so a flag is a comma-separated list of options as mount(8)
// sees it ("noatime,bind" is two options): every option is checked
// whole, trimmed, with its value cut off and in any case.
func checkMountFlags(flags []string) error {
	for _, f := range flags {
		if f == "" || strings.ContainsAny(f, "\x00\n") {
			return errorf(ErrInvalidArgument, "mount flag %q is malformed", clipInput(f))
		}
		for opt := range strings.SplitSeq(f, ",") {
			opt = strings.TrimSpace(opt)
			if opt == "" {
				return errorf(ErrInvalidArgument, "mount flag %q has an empty option", clipInput(f))
			}
			name, _, _ := strings.Cut(opt, "=")
			for _, r := range refusedMountOptions {
				if strings.EqualFold(strings.TrimSpace(name), r) {
					return errorf(ErrInvalidArgument, "mount flag %q: option %q is not allowed", clipInput(f), r)
				}
			}
		}
	}
	return nil
}
